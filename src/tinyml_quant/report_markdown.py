"""results.md's sections: pure functions from the results tables (``results_table``) and records to Markdown.

Nothing here reads a file or computes a statistic: the intervals and paired
tests are the tables' (``results_table``), and each section shows them.
"""

import numpy as np
import pandas as pd

from . import cortex_m
from .devices import KB
from .micro import RUNS, WRONG_OUTPUT
from .npu import COMPILED
from .results_table import VARIANT, worst_layer_errors
from .schemes import REFERENCE_SCHEME
from .statistics import ALPHA, AT_CHANCE, is_at_chance
from .variants import CONVERTED

# Within this many points of fp32 a variant counts as keeping its accuracy ("What to choose").
KEEPS_ACCURACY_POINTS = 1.0


def percent(value, digits=2):
    """A share in percent with ``digits`` decimals, ``-`` where there is none."""
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
    return f"{percent(row.accuracy)} [{percent(row.accuracy_ci_low)}, {percent(row.accuracy_ci_high)}]"


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
            "agreement with fp32 (%)": part.agreement_with_fp32.map(lambda value: percent(value, 1)),
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
            "-" if pd.isna(value) else f"{percent(value)} [{percent(low)}, {percent(high)}]"
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


def npu_markdown(npu, table):
    if npu.empty:
        return ""
    accuracy = table.set_index(VARIANT).accuracy
    shown = npu.assign(
        accuracy=[percent(accuracy.get(tuple(row[name] for name in VARIANT))) for _, row in npu.iterrows()],
        time=[
            f"{row.inference_ms_estimate:.3f}"
            if row.vela_status == COMPILED
            else f"{row.vela_status} ({row.vela_reason})"
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


def training_markdown(training_records):
    """The last epoch of every model trained here: epochs, accuracies, and the median epoch time.

    ``training_records``: the training stage's records by ``(dataset, model, seed)``.
    """
    rows = []
    records = training_records.values()
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


def layer_error_markdown(layers, count=3):
    """Per variant, its ``count`` layers of largest error, of every layer's (``results_table.layer_errors``)."""
    if layers.empty:
        return ""
    worst = worst_layer_errors(layers, count)
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


def recovery_markdown(recovery_records, threshold_points):
    """The recovery stage's variants, its worst layers one step up; ``recovery_records``: its records by key."""
    if not recovery_records:
        return ""
    rows = []
    for record in recovery_records.values():
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
                "fp32 (%)": percent(record["reference_accuracy"]),
                "scheme (%)": percent(record["quantized_accuracy"]),
                "mixed (%)": percent(record["accuracy"]) if made else "-",
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


def tests_caption(table):
    """How the results tables' accuracies and changes are tested: the intervals, McNemar and Holm over the study."""
    tested = int(table.mcnemar_p.notna().sum())
    significant = int(table.significant.fillna(False).astype(bool).sum())
    return (
        "Accuracies are on the whole test set with their 95 % Wilson score interval. Each change against fp32 is "
        f"tested with an exact McNemar test on the images the two classify differently; the p-values are corrected "
        f"over the study's {tested} tests with Holm's method, and `*` marks the {significant} changes significant "
        f"at {ALPHA:g} after it.\n"
    )


def dataset_sections(table):
    """Per dataset: its results table, then the same variants on a microcontroller."""
    sections = []
    for dataset_name, part in table.groupby("dataset_name", sort=True):
        sections.append(f"## {dataset_name}, {int(part.test_images.dropna().iloc[0])} test images\n")
        sections.append(results_markdown(part) + "\n")
        sections.append(f"### {dataset_name} on a microcontroller\n")
        sections.append(device_markdown(part) + "\n")
    return sections
