"""Report: every stage's records gathered into the results tables and their Markdown (pandas).

Every record names its own variant (``dataset``, ``model``, ``seed``,
``scheme``), so the tables are joined on those keys, never on the order of
file lists. Accuracies carry Wilson intervals and each change against fp32 an
exact McNemar test, corrected over the study with Holm's method
(``statistics``).
"""

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from . import cortex_m
from .datasets import load_prepared
from .devices import KB
from .files import read_json, write_csv, write_text
from .micro import RUNS, WRONG_OUTPUT
from .npu import COMPILED
from .schemes import FULL_INTEGER, REFERENCE_SCHEME, SCHEMES
from .statistics import (
    ALPHA,
    AT_CHANCE,
    clearly_above_chance,
    discordant_counts,
    holm,
    is_at_chance,
    mcnemar_exact,
    wilson_interval,
)
from .variants import CONVERTED, NOT_CONVERTED
from .weight_ranges import run_ranges

logger = logging.getLogger(__name__)

VARIANT = ["dataset", "model", "seed", "scheme"]
INSTANCE = ["dataset", "model", "seed"]
# Within this many points of fp32 a variant counts as keeping its accuracy ("What to choose").
KEEPS_ACCURACY_POINTS = 1.0
COLUMNS = [
    *("dataset", "dataset_name", "model", "model_source", "model_warning", "seed", "scheme", "status", "reason"),
    *("file_bytes", "size_kb", "compression_vs_fp32", "accuracy", "accuracy_ci_low", "accuracy_ci_high"),
    *("accuracy_change_vs_fp32", "fp32_only_right", "variant_only_right", "mcnemar_p", "holm_p", "significant"),
    *("agreement_with_fp32", "keras_test_accuracy", "above_chance", "parameters", "test_images", "input_type"),
    *("host_ms_per_image", "threads", "macs", "tflite_parameters", "operator_total", "operators"),
    *("tflm_status", "arena_bytes", "tflm_unsupported_operator", "tflm_sample_images", "tflm_top1_agreement"),
    *("tflm_sample_accuracy", "litert_sample_accuracy", "tflm_max_difference_steps"),
    *("host_latency_median_ms", "host_latency_p90_ms", "host_latency_threads"),
    *("training_precision", "training_backend", "tensorflow_version", "jax_version", "keras_version"),
    *("litert_version", "workflow_version"),
]


def _normalized(record):
    """A record with its seed as an integer (wildcards give strings, settings integers)."""
    if record.get("seed") is not None:
        record["seed"] = int(record["seed"])
    return record


def keyed(paths, keys=VARIANT):
    records = {}
    for path in paths:
        record = _normalized(read_json(path))
        key = tuple(record[name] for name in keys)
        if key in records:
            raise ValueError(f"{path}: a second record for {dict(zip(keys, key))}")
        records[key] = record
    return records


def _operator_list(counts):
    """``{"CONV_2D": 8, "ADD": 3}`` as ``"ADD x3, CONV_2D x8"``: one CSV cell, readable."""
    return ", ".join(f"{name} x{count}" for name, count in sorted(counts.items()))


def device_columns(graph, micro, latency):
    """The columns one variant gets from its graph analysis, TFLite Micro measurement and host latency."""
    agreement = micro.get("agreement") or {}
    return {
        "file_bytes": graph.get("file_bytes"),
        "macs": graph.get("macs"),
        "tflite_parameters": graph.get("parameters"),
        "operator_total": graph.get("operator_total"),
        "operators": _operator_list(graph.get("operators") or {}),
        "tflm_status": micro["status"],
        "arena_bytes": micro.get("arena_bytes"),
        "tflm_unsupported_operator": micro.get("unsupported_operator"),
        "tflm_sample_images": agreement.get("images"),
        "tflm_top1_agreement": agreement.get("top1_agreement"),
        "tflm_sample_accuracy": agreement.get("tflm_accuracy"),
        "litert_sample_accuracy": agreement.get("litert_accuracy"),
        "tflm_max_difference_steps": agreement.get("max_difference_steps"),
        "host_latency_median_ms": latency.get("median_ms"),
        "host_latency_p90_ms": latency.get("p90_ms"),
        "host_latency_threads": latency.get("threads"),
    }


def variant_status(*records):
    """``(status, reason)`` of a variant from the records of its stages: not converted if any stage found it so.

    The LUT variant is evaluated on its binned model but measured on its
    compressed file: the compressor can fail after the binning did not.
    """
    for record in records:
        if record.get("status") == NOT_CONVERTED:
            return NOT_CONVERTED, record.get("reason")
    return CONVERTED, None


def gather(evaluation_paths, training_metric_paths, graph_paths, micro_paths, latency_paths):
    """One row per variant: its size, accuracy and interval, its change against its own fp32, the measurements."""
    evaluations = keyed(evaluation_paths)
    graphs, micro, latencies = keyed(graph_paths), keyed(micro_paths), keyed(latency_paths)
    training = keyed(training_metric_paths, INSTANCE)
    for name, records in (("graph", graphs), ("micro", micro), ("latency", latencies)):
        if set(records) != set(evaluations):
            raise ValueError(f"{name} records cover {sorted(set(records) ^ set(evaluations))} differently")
    rows = []
    for key, record in sorted(evaluations.items()):
        trained = training[key[:3]]
        versions = trained.get("versions", {})
        status, reason = variant_status(record, graphs[key], micro[key])
        rows.append(
            {
                **{name: record.get(name) for name in ("dataset", "dataset_name", "model", "seed", "scheme")},
                "status": status,
                "reason": reason,
                **{name: record.get(name) for name in ("accuracy", "agreement_with_fp32", "input_type", "threads")},
                "test_images": record.get("test_images"),
                "host_ms_per_image": record.get("mean_inference_ms"),
                "litert_version": record.get("litert_version"),
                "model_source": trained["source"],
                "model_warning": trained.get("warning"),
                "keras_test_accuracy": trained["test_accuracy"],
                "parameters": trained["parameters"],
                "training_precision": (trained.get("settings") or {}).get("precision"),
                # Imported models and trainings from before the backend setting ran on TensorFlow.
                "training_backend": trained.get("backend", "tensorflow"),
                **{
                    f"{library}_version": versions.get(library)
                    for library in ("tensorflow", "jax", "keras", "workflow")
                },
                **device_columns(graphs[key], micro[key], latencies[key]),
            }
        )
    table = pd.DataFrame(rows)
    # A variant some stage could not make has no accuracy of its own (the LUT variant's binned model was
    # evaluated before its compression failed): no change, no interval, no test.
    table.loc[table.status != CONVERTED, ["accuracy", "agreement_with_fp32"]] = np.nan
    reference = table[table.scheme == REFERENCE_SCHEME].set_index(INSTANCE)
    keys = list(zip(table.dataset, table.model, table.seed))
    reference_bytes = np.array([reference.file_bytes.get(key, np.nan) for key in keys], dtype=float)
    reference_accuracy = np.array([reference.accuracy.get(key, np.nan) for key in keys], dtype=float)
    file_bytes = table.file_bytes.astype(float)
    accuracy = table.accuracy.astype(float)
    table["size_kb"] = file_bytes / KB
    table["compression_vs_fp32"] = reference_bytes / file_bytes
    table["accuracy_change_vs_fp32"] = 100 * (accuracy - reference_accuracy)
    add_intervals(table)
    for column in ("arena_bytes", "tflm_max_difference_steps", "file_bytes", "macs"):
        table[column] = table[column].astype("Int64")
    table["scheme"] = pd.Categorical(table.scheme, categories=SCHEMES, ordered=True)
    for column in ("fp32_only_right", "variant_only_right", "mcnemar_p", "holm_p", "significant", "above_chance"):
        table[column] = pd.NA
    return table[COLUMNS].sort_values(VARIANT).reset_index(drop=True)


def add_intervals(frame):
    """``frame`` given ``accuracy_ci_low`` and ``_high``: each accuracy's 95 % Wilson interval over its test images."""
    intervals = [
        wilson_interval(round(value * images), images) if pd.notna(value) else (np.nan, np.nan)
        for value, images in zip(frame.accuracy.astype(float), frame.test_images.fillna(0).astype(int))
    ]
    frame["accuracy_ci_low"] = [low for low, _ in intervals]
    frame["accuracy_ci_high"] = [high for _, high in intervals]
    return frame


def add_paired_tests(frame, pairs, labels, alpha=ALPHA):
    """Exact McNemar tests, Holm-corrected over ``pairs`` (one family), into ``frame``'s test columns.

    ``pairs``: ``{row index: (dataset, reference predictions, own predictions)}``
    for each row that has both; the one statistics path of every table.
    """
    for column in ("fp32_only_right", "variant_only_right", "mcnemar_p", "holm_p", "significant"):
        frame[column] = pd.NA
    for index, (dataset, reference, own) in pairs.items():
        b, c = discordant_counts(reference, own, labels[dataset])
        frame.loc[index, ["fp32_only_right", "variant_only_right", "mcnemar_p"]] = [b, c, mcnemar_exact(b, c)]
    if pairs:
        tested = list(pairs)
        adjusted, rejected = holm(frame.loc[tested, "mcnemar_p"].astype(float).to_numpy(), alpha)
        frame.loc[tested, "holm_p"] = adjusted
        frame.loc[tested, "significant"] = rejected
    for column in ("fp32_only_right", "variant_only_right"):
        frame[column] = frame[column].astype("Int64")
    return frame


def paired_tests(table, predictions, labels, alpha=ALPHA):
    """``table`` with each converted variant's exact McNemar test against its own fp32, Holm-corrected over all.

    ``predictions`` maps a variant's key to its per-image predictions,
    ``labels`` a dataset to its test labels.
    """
    pairs = {}
    for index, row in table.iterrows():
        reference = predictions.get((row.dataset, row.model, int(row.seed), REFERENCE_SCHEME))
        own = predictions.get((row.dataset, row.model, int(row.seed), row.scheme))
        if row.scheme == REFERENCE_SCHEME or row.status != CONVERTED or own is None or reference is None:
            continue
        if own.size and reference.size:
            pairs[index] = (row.dataset, reference, own)
    return add_paired_tests(table.copy(), pairs, labels, alpha)


def chance_flags(table, datasets):
    """``table`` with ``above_chance``: whether each row's model scores clearly above chance on its dataset.

    ``datasets`` maps a dataset to ``(classes, test images)``. The model's own
    (Keras) test accuracy on the whole test set is judged, so that a model none
    of whose variants converts is judged too (``statistics.clearly_above_chance``).
    """
    table = table.copy()
    flags = []
    for row in table.itertuples():
        classes, images = datasets[row.dataset]
        flags.append(clearly_above_chance(round(row.keras_test_accuracy * images), images, classes))
    table["above_chance"] = pd.array(flags, dtype="boolean")
    return table


def seed_summary(table):
    """Per dataset, model and scheme: the seeds, mean and standard deviation of accuracy and of its change."""
    converted = table[table.status == CONVERTED]
    grouped = converted.groupby(["dataset", "dataset_name", "model", "scheme"], observed=True, sort=True)
    summary = grouped.agg(
        seeds=("seed", "nunique"),
        accuracy_mean=("accuracy", "mean"),
        accuracy_std=("accuracy", "std"),
        change_mean=("accuracy_change_vs_fp32", "mean"),
        change_std=("accuracy_change_vs_fp32", "std"),
        size_kb=("size_kb", "mean"),
        significant_seeds=("significant", lambda values: int(sum(bool(value) for value in values if pd.notna(value)))),
        at_chance=("above_chance", lambda values: any(is_at_chance(value) for value in values)),
    ).reset_index()
    changes = grouped.accuracy_change_vs_fp32.apply(lambda values: ", ".join(f"{value:+.2f}" for value in values))
    summary["changes"] = changes.to_numpy()
    return summary


# --------------------------------------------------------------------------- Markdown


def _percent(value, digits=2):
    return "-" if pd.isna(value) else f"{100 * value:.{digits}f}"


def at_chance_models(table):
    """The ``(dataset, model)`` pairs of which some seed's model is not clearly above chance."""
    return {(row.dataset, row.model) for row in table.itertuples() if is_at_chance(row.above_chance)}


def marked_models(frame, table):
    """``frame``'s model column with the models at chance in ``table`` marked, for a table of another stage."""
    flagged = at_chance_models(table)
    return [
        f"{model} ({AT_CHANCE})" if (dataset, model) in flagged else model
        for dataset, model in zip(frame.dataset, frame.model)
    ]


def model_labels(part):
    """Each row's model, marked when it was imported rather than trained here, and when it scores at chance."""
    labels = []
    for model, source, above in zip(part.model, part.model_source, part.above_chance):
        marks = [
            *(["imported"] if str(source).startswith("imported") else []),
            *([AT_CHANCE] if is_at_chance(above) else []),
        ]
        labels.append(f"{model} ({', '.join(marks)})" if marks else model)
    return labels


def warnings_markdown(table):
    """The warnings the stages left about a model (a declared preprocessing that does not fit it), first."""
    warnings = table.dropna(subset=["model_warning"]).drop_duplicates(["dataset", "model"])
    if warnings.empty:
        return ""
    lines = [f"- **{row.model}** on {row.dataset_name}: {row.model_warning}" for row in warnings.itertuples()]
    return "## Warnings\n\n" + "\n".join(lines) + "\n"


def _not_converted(row):
    return f"not converted ({row.reason})"


def accuracy_cell(row):
    """``"77.32 [76.49, 78.13]"``: the accuracy and its 95 % Wilson interval, in percent."""
    if row.status != CONVERTED:
        return _not_converted(row)
    return f"{_percent(row.accuracy)} [{_percent(row.accuracy_ci_low)}, {_percent(row.accuracy_ci_high)}]"


def test_cell(row):
    """``"12 / 9, p 0.66"``: fp32-only and variant-only right images, Holm-corrected p; ``*`` when significant."""
    if pd.isna(row.mcnemar_p):
        return "-"
    mark = " *" if row.significant is True else ""
    return f"{row.fp32_only_right} / {row.variant_only_right}, p {row.holm_p:.2g}{mark}"


def results_markdown(part):
    """One dataset's table: size, accuracy with its interval, change and its paired test, agreement with fp32."""
    several_seeds = part.seed.nunique() > 1
    shown = pd.DataFrame(
        {
            "model": model_labels(part),
            **({"seed": part.seed} if several_seeds else {}),
            "scheme": part.scheme,
            "size (KB)": part.size_kb.map(lambda value: "-" if pd.isna(value) else f"{value:.1f}"),
            "compression vs fp32": part.compression_vs_fp32.map(
                lambda value: "-" if pd.isna(value) else f"{value:.2f}x"
            ),
            "accuracy (%) [95% CI]": [accuracy_cell(row) for row in part.itertuples()],
            "change vs fp32 (points)": part.accuracy_change_vs_fp32.map(
                lambda value: "-" if pd.isna(value) else f"{value:+.2f}"
            ),
            "fp32 only / variant only right, Holm p": [test_cell(row) for row in part.itertuples()],
            "agreement with fp32 (%)": part.agreement_with_fp32.map(lambda value: _percent(value, 1)),
        }
    )
    return shown.to_markdown(index=False, disable_numparse=True)


def device_markdown(part):
    """Model x scheme: MACs, flash, TFLite Micro arena (or why not), TFLM against LiteRT, host-CPU latency."""
    several_seeds = part.seed.nunique() > 1

    def tflm(row):
        if row.tflm_status == RUNS:
            return f"{row.arena_bytes / KB:.1f}"
        if row.tflm_status == WRONG_OUTPUT:
            return f"{row.arena_bytes / KB:.1f}, wrong output"
        if row.status != CONVERTED:
            return "not converted"
        return f"unsupported ({row.tflm_unsupported_operator})"

    def agreement(row):
        if pd.isna(row.tflm_sample_images):
            return "-"
        steps = "-" if pd.isna(row.tflm_max_difference_steps) else int(row.tflm_max_difference_steps)
        return f"{100 * row.tflm_top1_agreement:.1f} / {100 * row.tflm_sample_accuracy:.1f} / {steps}"

    images = part.tflm_sample_images.dropna()
    sample = f" on {int(images.iloc[0])} test images" if len(images) else ""
    shown = pd.DataFrame(
        {
            "model": model_labels(part),
            **({"seed": part.seed} if several_seeds else {}),
            "scheme": part.scheme,
            "MACs (M)": part.macs.map(lambda value: "-" if pd.isna(value) else f"{value / 1e6:.2f}"),
            "flash (KB)": part.size_kb.map(lambda value: "-" if pd.isna(value) else f"{value:.1f}"),
            "TFLM arena (KB)": [tflm(row) for row in part.itertuples()],
            f"TFLM vs LiteRT{sample}: top-1 agreement (%) / TFLM accuracy (%) / max difference (steps)": [
                agreement(row) for row in part.itertuples()
            ],
            "host-CPU latency, not a board's: median / p90 (ms)": [
                "-"
                if pd.isna(row.host_latency_median_ms)
                else f"{row.host_latency_median_ms:.3f} / {row.host_latency_p90_ms:.3f}"
                for row in part.itertuples()
            ],
        }
    )
    return shown.to_markdown(index=False, disable_numparse=True)


def choice_markdown(table, summary):
    """Per dataset and model: the smallest variant TFLite Micro runs within a point of fp32, and where it cost most.

    ``table`` may hold the mixed-precision variants too (``ladder.with_mixed``): a variant is a candidate only
    where it exists, and passes the gate, for every seed of its model.
    """
    lines = [
        "## What to choose\n",
        f"Per model, the smallest variant (flash) that TensorFlow Lite Micro runs with LiteRT's outputs (the "
        "correctness gate: a variant that runs with wrong output is never chosen) and that stays within "
        f"{KEEPS_ACCURACY_POINTS:g} point of its fp32 model{' (mean over seeds)' if table.seed.nunique() > 1 else ''}, "
        "among the grid's variants and the mixed-precision ones (`<scheme>_mixed`, the recovery ladder's: "
        "where made for every seed), and its least accurate quantized "
        f"variant. A model whose test accuracy is not clearly above chance ({AT_CHANCE}: the 95 % Wilson interval "
        "of its Keras test accuracy reaches 1 / classes, what guessing scores) is recommended nothing.\n",
    ]
    # A scheme TFLite Micro runs for every seed of the model.
    runs = table.assign(runs=(table.tflm_status == RUNS) & (table.status == CONVERTED))
    every_seed = runs.groupby(["dataset", "model", "scheme"], observed=True).runs.all()
    runnable = set(every_seed[every_seed].index)
    # A mixed variant exists only where a seed's plan asked for it: a mean over some seeds is no model's.
    seeds = table.groupby(["dataset", "model"]).seed.nunique()
    rows = []
    for (dataset_name, model), part in summary.groupby(["dataset_name", "model"], sort=True):
        at_chance = bool(part.at_chance.any())
        runs_there = np.array(
            [
                (row.dataset, row.model, row.scheme) in runnable and row.seeds == seeds[row.dataset, row.model]
                for row in part.itertuples()
            ]
        )
        # Rounded so that a loss of exactly the limit is not "more" by a float's last bit.
        keeps = (part.change_mean.round(6) >= -KEEPS_ACCURACY_POINTS).to_numpy()
        candidates = part[runs_there & keeps]
        quantized = part[part.scheme != REFERENCE_SCHEME]
        worst = quantized.loc[quantized.change_mean.idxmin()] if len(quantized) else part.iloc[0]
        best = candidates.loc[candidates.size_kb.idxmin()] if len(candidates) else None
        if at_chance:
            recommended = f"none: the model is {AT_CHANCE}"
        elif best is None:
            recommended = "-"
        else:
            recommended = f"{best.scheme} ({best.size_kb:.1f} KB, {best.change_mean:+.2f} points)"
        rows.append(
            {
                "dataset": dataset_name,
                "model": f"{model} ({AT_CHANCE})" if at_chance else model,
                f"smallest variant within {KEEPS_ACCURACY_POINTS:g} point": recommended,
                "least accurate variant": f"{worst.scheme} ({worst.change_mean:+.2f} points)",
            }
        )
    return "\n".join(lines) + "\n" + pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True) + "\n"


def seeds_markdown(summary):
    if summary.seeds.max() <= 1:
        return ""
    shown = pd.DataFrame(
        {
            "dataset": summary.dataset_name,
            "model": [
                f"{model} ({AT_CHANCE})" if low else model for model, low in zip(summary.model, summary.at_chance)
            ],
            "scheme": summary.scheme,
            "seeds": summary.seeds,
            "accuracy (%) mean ± sd": [
                f"{100 * mean:.2f} ± {100 * std:.2f}" for mean, std in zip(summary.accuracy_mean, summary.accuracy_std)
            ],
            "change vs fp32 (points) mean ± sd": [
                f"{mean:+.2f} ± {std:.2f}" for mean, std in zip(summary.change_mean, summary.change_std)
            ],
            "change per seed (points)": summary.changes,
            "seeds with a significant change": summary.significant_seeds,
        }
    )
    return (
        "## Across trainings: every model trained once per seed\n\n"
        "The same recipe with each seed of `seeds` (weights, shuffling, validation split, augmentation); each "
        "quantized variant is compared with the fp32 model of its own seed.\n\n"
        + shown.to_markdown(index=False, disable_numparse=True)
        + "\n"
    )


def calibration_markdown(calibration, table):
    """The int8 variant with each number of calibration images, against fp32: accuracy and change."""
    if calibration.empty:
        return ""
    shown = calibration.assign(
        accuracy_text=[
            "-" if pd.isna(value) else f"{_percent(value)} [{_percent(low)}, {_percent(high)}]"
            for value, low, high in zip(calibration.accuracy, calibration.accuracy_ci_low, calibration.accuracy_ci_high)
        ],
        change_text=calibration.accuracy_change_vs_fp32.map(lambda value: "-" if pd.isna(value) else f"{value:+.2f}"),
        test_text=[test_cell(row) for row in calibration.itertuples()],
    )
    shown["model"] = marked_models(shown, table)
    several_seeds = shown.seed.nunique() > 1
    columns = ["dataset_name", "model", *(["seed"] if several_seeds else []), "calibration_images"]
    columns += ["accuracy_text", "change_text", "test_text"]
    shown = shown[columns].rename(
        columns={
            "dataset_name": "dataset",
            "calibration_images": "calibration images",
            "accuracy_text": "int8 accuracy (%) [95% CI]",
            "change_text": "change vs fp32 (points)",
            "test_text": "fp32 only / variant only right, Holm p",
        }
    )
    tested = int(calibration.mcnemar_p.notna().sum())
    return (
        "## Calibration size: int8 calibrated on fewer images\n\n"
        "The int8 variant converted again with each number of calibration images of "
        "`conversion.calibration_sweep` (seeded training images, the same seed), evaluated on the whole test set; "
        "the last row of each model is the study's own int8 variant (tested in its own table). Each sweep "
        f"variant's change is tested with the exact McNemar test, Holm-corrected over the sweep's {tested} tests. "
        "Figure: `figures/calibration_sweep`.\n\n" + shown.to_markdown(index=False, disable_numparse=True) + "\n"
    )


def npu_table(npu_paths, board_labels):
    """One row per variant and NPU board: Vela's status, cycles, time, SRAM, flash and CPU operators.

    ``board_labels``: ``{board name: label}``.
    """
    rows = []
    for path in npu_paths:
        record = _normalized(read_json(path))
        rows.append(
            {
                **{name: record[name] for name in VARIANT},
                "board": board_labels.get(record["board"], record["board"]),
                "board_name": record["board"],
                "accelerator": record["npu"]["accelerator"],
                "system_config": record["npu"]["system_config"],
                "memory_mode": record["npu"]["memory_mode"],
                "vela_status": record["status"],
                "vela_reason": record.get("reason"),
                "cycles": record.get("cycles"),
                "npu_clock_mhz": record["clock_hz"] / 1e6 if record.get("clock_hz") else None,
                "inference_ms_estimate": record.get("inference_ms"),
                "vela_clock_mhz": record["vela_clock_hz"] / 1e6 if record.get("vela_clock_hz") else None,
                "vela_inference_ms": record.get("vela_inference_ms"),
                "sram_kb": record.get("sram_kb"),
                "flash_kb": record.get("flash_kb"),
                "cpu_operators": record.get("cpu_operators"),
                "cpu_operator_names": ", ".join(record.get("cpu_operator_names") or []),
            }
        )
    table = pd.DataFrame(rows)
    if not table.empty:
        table["scheme"] = pd.Categorical(table.scheme, categories=SCHEMES, ordered=True)
        table = table.sort_values([*VARIANT, "board"]).reset_index(drop=True)
    return table


def npu_markdown(npu, table):
    if npu.empty:
        return ""
    accuracy = table.set_index(VARIANT).accuracy
    shown = npu.assign(
        accuracy=[_percent(accuracy.get(tuple(row[name] for name in VARIANT))) for _, row in npu.iterrows()],
        time=[
            f"{row.inference_ms_estimate:.3f}" if row.vela_status == COMPILED else f"unsupported ({row.vela_reason})"
            for row in npu.itertuples()
        ],
        memory=[
            f"{row.sram_kb:.1f} / {row.flash_kb:.1f}" if row.vela_status == COMPILED else "-"
            for row in npu.itertuples()
        ],
        cpu=[
            "-" if row.vela_status != COMPILED else f"{row.cpu_operators} ({row.cpu_operator_names or 'none'})"
            for row in npu.itertuples()
        ],
    )
    shown["model"] = marked_models(shown, table)
    several_seeds = shown.seed.nunique() > 1
    columns = ["dataset", "model", *(["seed"] if several_seeds else []), "scheme", "board", "accelerator"]
    shown = shown[[*columns, "accuracy", "time", "memory", "cpu"]].rename(
        columns={
            "accuracy": "accuracy (%)",
            "time": "inference (ms, Vela estimate)",
            "memory": "SRAM / flash (KB, Vela)",
            "cpu": "operators on the CPU",
        }
    )
    return (
        "## On an Ethos-U NPU: Arm Vela's estimates\n\n"
        "Every integer variant compiled by Arm's Vela for each board's NPU configuration (accelerator, system "
        "configuration and memory mode of Vela's `vela.ini`). **Every figure is Vela's own estimate**; the time "
        "is Vela's cycles at the board's NPU clock (`npu.clock_mhz`; `npu.csv` also has Vela's time at its "
        "system configuration's reference clock); operators left on the CPU are not in the time. Per-layer "
        "tables: `npu/` of the study; figure: `figures/npu_latency`.\n\n"
        + shown.to_markdown(index=False, disable_numparse=True)
        + "\n"
    )


def cortex_m_check_markdown(cortex_reference):
    """The Cortex-M range's leave-one-out check over MLPerf Tiny's published measurements (``cortex_m_latency``)."""
    check = cortex_m.leave_one_out(cortex_reference)
    count = len(cortex_reference["measurements"])
    calibrated = cortex_m.calibrated_range(cortex_reference["measurements"], cortex_reference["clock_mhz"])
    shown = pd.DataFrame(
        {
            "left-out model": [row["model"] for row in check],
            "MACs (M)": [f"{row['macs'] / 1e6:.2f}" for row in check],
            "fastest: published / estimated (ms), error": [
                f"{row['fastest_published_ms']:.1f} / {row['fastest_estimate_ms']:.1f}, "
                f"{row['fastest_error_pct']:+.0f} %"
                for row in check
            ],
            "TFLM + CMSIS-NN: published / estimated (ms), error": [
                f"{row['reference_published_ms']:.1f} / {row['reference_estimate_ms']:.1f}, "
                f"{row['reference_error_pct']:+.0f} %"
                for row in check
            ],
        }
    )
    return (
        "## How far to trust the Cortex-M range: each published model left out in turn\n\n"
        f"The range is {calibrated['fastest']:.2f} (fastest stack) to {calibrated['reference']:.2f} (TFLite Micro "
        f"with CMSIS-NN) cycles per MAC, the mean over the {count} published models of `cortex_m_latency` on the "
        f"{cortex_reference['board']} ({cortex_reference['clock_mhz']:g} MHz). Calibrated on the other {count - 1}, "
        "it estimates each model's published latency with these errors (an estimate, labelled so in every table)."
        "\n\n" + shown.to_markdown(index=False, disable_numparse=True) + "\n"
    )


def training_markdown(training_metric_paths):
    """The last epoch of every model trained here: epochs, accuracies, and the median epoch time."""
    rows = []
    records = keyed(training_metric_paths, INSTANCE).values()
    several_seeds = len({record["seed"] for record in records}) > 1
    for record in sorted(records, key=lambda r: (r["dataset"], r["model"], r["seed"] or 0)):
        final = record.get("final_epoch")
        if not final:
            continue
        rows.append(
            {
                "dataset": record["dataset_name"],
                "model": record["model"],
                **({"seed": record["seed"]} if several_seeds else {}),
                "epochs": final["epoch"],
                "precision": (record.get("settings") or {}).get("precision", "float32"),
                "training accuracy (%)": f"{100 * final['accuracy']:.2f}",
                "validation accuracy (%)": "-"
                if final.get("val_accuracy") is None
                else f"{100 * final['val_accuracy']:.2f}",
                "test accuracy, Keras (%)": f"{100 * record['test_accuracy']:.2f}",
                "median epoch (s)": f"{record['epoch_seconds_median']:.3g}",
            }
        )
    if not rows:
        return ""
    return (
        "## Training: the last epoch of each model\n\n"
        "Training accuracy is measured on augmented batches while the weights change; validation accuracy on the "
        "held-out training images (`training.validation_split`) after the epoch. Curves: `figures/learning_curves`.\n\n"
        + pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)
        + "\n"
    )


def worst_layers(layer_errors, count=3):
    """Per variant, the ``count`` layers with the largest error in their own quantization steps."""
    ranked = layer_errors.sort_values("rmse_in_steps", ascending=False)
    return (
        ranked.groupby(VARIANT, sort=True, observed=True)
        .head(count)
        .sort_values([*VARIANT, "rmse_in_steps"], ascending=[True] * len(VARIANT) + [False])
    )


def layer_error_markdown(layer_error_paths, count=3):
    tables = [pd.read_csv(path) for path in layer_error_paths]
    tables = [table for table in tables if not table.empty]
    if not tables:
        return ""
    layers = pd.concat(tables, ignore_index=True)
    worst = worst_layers(layers, count)
    shown = pd.DataFrame(
        {
            "dataset": worst.dataset,
            "model": worst.model,
            "seed": worst.seed,
            "scheme": worst.scheme,
            "layer (operator, output tensor)": [
                f"{index}: {operator} `{name if len(name) <= 60 else name[:57] + '...'}`"
                for index, operator, name in zip(worst.layer, worst.operator, worst.tensor)
            ],
            "RMSE": worst.rmse.map("{:.3g}".format),
            "RMSE / scale (steps)": worst.rmse_in_steps.map("{:.2f}".format),
            "cosine": worst.cosine_similarity.map("{:.4f}".format),
            "SNR (dB)": worst.snr_db.map("{:.1f}".format),
        }
    )
    if shown.seed.nunique() <= 1:
        shown = shown.drop(columns="seed")
    images = int(layers.images.iloc[0])
    return (
        f"## Where the quantization error is: the {count} layers with the largest error\n\n"
        f"Each quantized layer's output against the same tensor of the fp32 variant, on {images} seeded test images "
        "(both runtimes LiteRT; the error accumulates from the input on). RMSE / scale is the error in the layer's "
        "own quantization steps (rounding alone gives about 0.29). Every layer: `layer_error/` of the study; "
        "figure: `figures/layer_error`.\n\n" + shown.to_markdown(index=False, disable_numparse=True) + "\n"
    )


def recovery_markdown(recovery_paths, threshold_points):
    if not recovery_paths:
        return ""
    rows = []
    for path in recovery_paths:
        record = _normalized(read_json(path))
        made = record.get("status", CONVERTED) == CONVERTED
        micro = record.get("micro") or {}
        if not made:
            tflm = f"not made: {record['reason_not_made']}"
        elif micro["status"] == RUNS:
            tflm = f"runs, arena {micro['arena_bytes'] / KB:.1f} KB"
        elif micro["status"] == WRONG_OUTPUT:
            tflm = f"runs, wrong output ({100 * micro['agreement']['top1_agreement']:.1f}% agreement)"
        else:
            tflm = f"unsupported ({micro['unsupported_operator']})"
        rows.append(
            {
                "dataset": record["dataset"],
                "model": record["model"],
                "seed": record["seed"],
                "scheme": record["scheme"],
                "why": record["reason"],
                "mixed precision": f"{len(record['layers'])} {record['method']}" if made else record["method"],
                "fp32 (%)": _percent(record["reference_accuracy"]),
                "scheme (%)": _percent(record["quantized_accuracy"]),
                "mixed (%)": _percent(record["accuracy"]) if made else "-",
                "size: scheme / mixed (KB)": " / ".join(
                    "-" if size is None else f"{size / KB:.1f}"
                    for size in (record["quantized_file_bytes"], record.get("file_bytes"))
                ),
                "TFLite Micro": tflm,
            }
        )
    shown = pd.DataFrame(rows).sort_values(["dataset", "model", "seed", "scheme"])
    if shown.seed.nunique() <= 1:
        shown = shown.drop(columns="seed")
    return (
        "## What buys the accuracy back: the worst layers one step up in precision\n\n"
        f"Each scheme's variant that loses more than {threshold_points:g} point (`diagnostics."
        "recovery_threshold_points`) against fp32, and those listed in `diagnostics.always_recover`, made again with "
        "its worst layers at higher precision (int8: kept in float; int4: 8-bit weights; int8_per_tensor: per-channel "
        "weights; int8_lut: neither binned nor compressed); evaluated on the whole test set and measured on "
        "TensorFlow Lite Micro.\n\n" + shown.to_markdown(index=False, disable_numparse=True) + "\n"
    )


def calibration_table(metric_paths, table, study_calibration_images, tests=None):
    """One row per int8 variant of the calibration sweep, with the study's own int8 variant, against fp32.

    With ``tests`` = ``(predictions, labels)``: every variant's per-image
    predictions by key, and each dataset's labels; each sweep variant's change
    (its predictions are the file its record names) is then tested with the
    exact McNemar test against its fp32, Holm-corrected over the sweep (its
    own family: the sweep is a diagnostic of int8).
    """
    rows = [(path, _normalized(read_json(path))) for path in metric_paths]
    own = table[(table.scheme == FULL_INTEGER) & (table.status == CONVERTED)]
    reference = table[table.scheme == REFERENCE_SCHEME].set_index(INSTANCE).accuracy
    records = [
        {name: row.get(name) for name in ("dataset", "dataset_name", "model", "seed", "calibration_images", "accuracy")}
        | {"test_images": row.get("test_images"), "study_variant": False}
        for _, row in rows
    ]
    records += [
        {
            "dataset": row.dataset,
            "dataset_name": row.dataset_name,
            "model": row.model,
            "seed": int(row.seed),
            "calibration_images": study_calibration_images,
            "accuracy": row.accuracy,
            "test_images": row.test_images,
            "study_variant": True,
        }
        for row in own.itertuples()
    ]
    frame = pd.DataFrame(records)
    if frame.empty:
        return frame
    frame["accuracy_change_vs_fp32"] = [
        100 * (accuracy - reference.get((dataset, model, seed), np.nan))
        for accuracy, dataset, model, seed in zip(frame.accuracy, frame.dataset, frame.model, frame.seed)
    ]
    add_intervals(frame)
    pairs = {}
    if tests is not None:
        predictions, labels = tests
        # The sweep's records are the frame's first rows, one each, in the order read.
        for index, (path, row) in enumerate(rows):
            reference_predictions = predictions.get((row["dataset"], row["model"], row["seed"], REFERENCE_SCHEME))
            if reference_predictions is not None and row.get("accuracy") is not None:
                pairs[index] = (row["dataset"], reference_predictions, record_predictions(path, row))
    add_paired_tests(frame, pairs, labels if tests is not None else {})
    return frame.sort_values(["dataset", "model", "seed", "study_variant", "calibration_images"]).reset_index(drop=True)


def record_predictions(path, record):
    """The per-image predictions an evaluation record names (its ``predictions_file``, beside it)."""
    if "predictions_file" not in record:
        raise ValueError(f"{path}: names no predictions_file; rerun its evaluation")
    return np.load(Path(path).parent / record["predictions_file"], allow_pickle=False)


def load_predictions(evaluation_paths):
    """Every variant's per-image predictions, keyed by the ``(dataset, model, seed, scheme)`` its record names."""
    predictions = {}
    for path in evaluation_paths:
        record = _normalized(read_json(path))
        predictions[tuple(record[name] for name in VARIANT)] = record_predictions(path, record)
    return predictions


def load_labels(dataset_paths):
    """``(labels, classes)``: each prepared dataset's test labels, and its ``(classes, test images)``, by dataset."""
    labels, classes = {}, {}
    for path in dataset_paths:
        dataset = load_prepared(path)
        labels[dataset.provenance["dataset"]] = dataset.y_test
        classes[dataset.provenance["dataset"]] = (len(dataset.class_names), len(dataset.y_test))
    return labels, classes


def run_gather(inputs, parameters, outputs):
    """Snakemake entry point: the results, calibration and NPU CSVs and the Markdown of them all.

    MLPerf Tiny's reference table is ``mlperf``'s, which builds on this module (so it is imported here).

    ``inputs`` holds the record paths of every stage (``evaluations``, with
    their ``predictions`` beside them, ``datasets``, ``training_metrics``, ``published_int8``, ``graphs``,
    ``micro_measurements``, ``latencies``, ``layer_errors``, ``recoveries``, ``qat_records``,
    ``calibrations``, ``npu_estimates``; each evaluation record names its predictions file); ``parameters``
    ``board_labels`` ({name: label}),
    ``cortex_m_latency``, ``mlperf_reference``, ``recovery_threshold_points``, the study's int8
    ``calibration_images`` and ``int4_weight_algorithm``; ``outputs``
    ``csv``, ``markdown``, ``calibration_csv``, ``npu_csv``, ``int4_ranges_csv``, ``ladder_csv`` (``ladder``).
    """
    from . import mlperf

    table = gather(
        inputs["evaluations"],
        inputs["training_metrics"],
        inputs["graphs"],
        inputs["micro_measurements"],
        inputs["latencies"],
    )
    predictions = load_predictions(inputs["evaluations"])
    labels, classes = load_labels(inputs["datasets"])
    table = chance_flags(paired_tests(table, predictions, labels), classes)
    summary = seed_summary(table)
    calibration = calibration_table(
        inputs["calibrations"],
        table,
        parameters["calibration_images"],
        (predictions, labels),
    )
    npu = npu_table(inputs["npu_estimates"], parameters["board_labels"])
    # The ladder builds on this module's tables: imported here, not at the top, where it would be circular.
    from .ladder import gather_ladder, with_mixed

    mixed, ladder_section = gather_ladder(inputs, parameters, outputs, table, predictions, labels)
    choices = with_mixed(table, mixed)
    write_csv(outputs["csv"], table)
    write_csv(outputs["calibration_csv"], calibration)
    write_csv(outputs["npu_csv"], npu)
    sections = [
        "# Size and accuracy of every TFLite variant\n",
        warnings_markdown(table),
        choice_markdown(choices, seed_summary(choices)),
    ]
    tested = int(table.mcnemar_p.notna().sum())
    significant = int(table.significant.fillna(False).astype(bool).sum())
    sections.append(
        "Accuracies are on the whole test set with their 95 % Wilson score interval. Each change against fp32 is "
        f"tested with an exact McNemar test on the images the two classify differently; the p-values are corrected "
        f"over the study's {tested} tests with Holm's method, and `*` marks the {significant} changes significant "
        f"at {ALPHA:g} after it.\n"
    )
    for dataset_name, part in table.groupby("dataset_name", sort=True):
        sections.append(f"## {dataset_name}, {int(part.test_images.dropna().iloc[0])} test images\n")
        sections.append(results_markdown(part) + "\n")
        sections.append(f"### {dataset_name} on a microcontroller\n")
        sections.append(device_markdown(part) + "\n")
    sections += [
        seeds_markdown(summary),
        run_ranges(table, predictions, labels, parameters["int4_weight_algorithm"], outputs["int4_ranges_csv"]),
        calibration_markdown(calibration, table),
        npu_markdown(npu, table),
        mlperf.reference_markdown(
            table,
            keyed(inputs["training_metrics"], INSTANCE),
            keyed(inputs["published_int8"], INSTANCE),
            parameters["mlperf_reference"],
        ),
        cortex_m_check_markdown(parameters["cortex_m_latency"]),
        recovery_markdown(inputs["recoveries"], parameters["recovery_threshold_points"]),
        ladder_section,
        training_markdown(inputs["training_metrics"]),
        layer_error_markdown(inputs["layer_errors"]),
    ]
    write_text(outputs["markdown"], "\n".join(section for section in sections if section))
    return table
