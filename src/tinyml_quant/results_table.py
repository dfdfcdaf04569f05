"""The results tables: every stage's records joined into one row per variant, with their statistics (pandas).

Every record names its own variant (``dataset``, ``model``, ``seed``,
``scheme``), so the tables are joined on those keys, never on the order of
file lists. Accuracies carry Wilson intervals (``add_intervals``) and each
change against fp32 an exact McNemar test, Holm-corrected over its family
(``add_paired_tests``): the one place every table of the report, the
recovery ladder's included, computes them (``statistics``).
"""

from pathlib import Path

import numpy as np
import pandas as pd

from .datasets import load_prepared
from .devices import KB
from .files import read_json
from .schemes import FULL_INTEGER, REFERENCE_SCHEME, SCHEMES
from .statistics import (
    clearly_above_chance,
    discordant_counts,
    holm_columns,
    is_at_chance,
    mcnemar_exact,
    wilson_interval,
)
from .variants import CONVERTED, NOT_CONVERTED

VARIANT = ["dataset", "model", "seed", "scheme"]
INSTANCE = ["dataset", "model", "seed"]
# A variant of the calibration sweep: int8 of one model calibrated on this many images.
SWEEP = [*INSTANCE, "calibration_images"]
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


def keyed_with_paths(paths, keys=VARIANT):
    """``{key: (path, record)}``: each record by the ``keys`` it names, with the file it was read from."""
    records = {}
    for path in paths:
        record = _normalized(read_json(path))
        key = tuple(record[name] for name in keys)
        if key in records:
            raise ValueError(f"{path}: a second record for {dict(zip(keys, key))}")
        records[key] = (path, record)
    return records


def keyed(paths, keys=VARIANT):
    """``{key: record}``: each record by the ``keys`` it names; a second record of a key is an error."""
    return {key: record for key, (_, record) in keyed_with_paths(paths, keys).items()}


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


def add_paired_tests(frame, pairs, labels):
    """Exact McNemar tests, Holm-corrected over ``pairs`` (one family), into ``frame``'s test columns.

    ``pairs``: ``{row index: (dataset, reference predictions, own predictions)}``
    for each row that has both; the one statistics path of every table.
    """
    for column in ("fp32_only_right", "variant_only_right", "mcnemar_p", "holm_p", "significant"):
        frame[column] = pd.NA
    for index, (dataset, reference, own) in pairs.items():
        b, c = discordant_counts(reference, own, labels[dataset])
        frame.loc[index, ["fp32_only_right", "variant_only_right", "mcnemar_p"]] = [b, c, mcnemar_exact(b, c)]
    holm_columns(frame)
    for column in ("fp32_only_right", "variant_only_right"):
        frame[column] = frame[column].astype("Int64")
    return frame


def paired_tests(table, predictions, labels):
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
    return add_paired_tests(table.copy(), pairs, labels)


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
        changes=("accuracy_change_vs_fp32", lambda values: ", ".join(f"{value:+.2f}" for value in values)),
    ).reset_index()
    return summary


def calibration_table(metric_paths, table, study_calibration_images, tests=None):
    """One row per int8 variant of the calibration sweep, with the study's own int8 variant, against fp32.

    With ``tests`` = ``(predictions, labels)``: every variant's per-image
    predictions by key, and each dataset's labels; each sweep variant's change
    (its predictions are the file its record names) is then tested with the
    exact McNemar test against its fp32, Holm-corrected over the sweep (its
    own family: the sweep is a diagnostic of int8).
    """
    sweep = keyed_with_paths(metric_paths, SWEEP)
    own = table[(table.scheme == FULL_INTEGER) & (table.status == CONVERTED)]
    reference = table[table.scheme == REFERENCE_SCHEME].set_index(INSTANCE).accuracy
    records = [
        {name: row.get(name) for name in ("dataset", "dataset_name", "model", "seed", "calibration_images", "accuracy")}
        | {"test_images": row.get("test_images"), "study_variant": False}
        for _, row in sweep.values()
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
    predictions, labels = tests if tests is not None else ({}, {})
    for index, row in frame[~frame.study_variant].iterrows():
        path, record = sweep[tuple(row[name] for name in SWEEP)]
        reference_predictions = predictions.get((*(record[name] for name in INSTANCE), REFERENCE_SCHEME))
        if reference_predictions is not None and record.get("accuracy") is not None:
            pairs[index] = (record["dataset"], reference_predictions, record_predictions(path, record))
    add_paired_tests(frame, pairs, labels)
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


def npu_table(npu_paths, board_labels):
    """One row per variant and NPU board: Vela's status, cycles, time, SRAM, flash and CPU operators.

    ``board_labels``: ``{board name: label}``.
    """
    rows = []
    # By variant and board: a second record of one is an error, not a second row.
    for _, record in keyed_with_paths(npu_paths, [*VARIANT, "board"]).values():
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
        # Counts stay integers where a variant Vela could not compile has none (pandas would make them floats).
        table = table.astype({"cycles": "Int64", "cpu_operators": "Int64"})
        table["scheme"] = pd.Categorical(table.scheme, categories=SCHEMES, ordered=True)
        table = table.sort_values([*VARIANT, "board"]).reset_index(drop=True)
    return table


def layer_errors(layer_error_paths):
    """Every variant's per-layer errors in one table (the layer-error stage's CSVs), empty when none has a layer."""
    tables = [table for table in (pd.read_csv(path) for path in layer_error_paths) if not table.empty]
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def worst_layer_errors(layers, count=3):
    """Per variant, the ``count`` layers with the largest error in their own quantization steps."""
    ranked = layers.sort_values("rmse_in_steps", ascending=False)
    return (
        ranked.groupby(VARIANT, sort=True, observed=True)
        .head(count)
        .sort_values([*VARIANT, "rmse_in_steps"], ascending=[True] * len(VARIANT) + [False])
    )
