"""Report: gather every stage's records into the results table and its Markdown tables (pandas).

Every record names its own variant (``dataset``, ``model``, ``scheme``), so
the tables are joined on those keys, never on the order of file lists.
"""

import logging

import numpy as np
import pandas as pd

from .conversion import REFERENCE_SCHEME, SCHEMES
from .devices import KB
from .files import read_json, write_csv, write_text
from .micro import RUNS

logger = logging.getLogger(__name__)

VARIANT = ["dataset", "model", "scheme"]
COLUMNS = [
    *("dataset", "dataset_name", "model", "model_source", "model_warning", "scheme", "file_bytes", "size_kb"),
    "compression_vs_fp32",
    *("accuracy", "accuracy_change_vs_fp32", "agreement_with_fp32", "keras_test_accuracy", "parameters"),
    *("test_images", "input_type", "mean_inference_ms", "threads", "macs", "tflite_parameters", "operator_total"),
    *("operators", "tflm_status", "arena_bytes", "tflm_unsupported_operator", "tflm_sample_images"),
    *("tflm_top1_agreement", "tflm_sample_accuracy", "litert_sample_accuracy", "tflm_max_difference_steps"),
    *("latency_median_ms", "latency_p90_ms", "latency_threads", "seed"),
    *("tensorflow_version", "keras_version", "litert_version", "workflow_version"),
]


def _operator_list(counts):
    """``{"CONV_2D": 8, "ADD": 3}`` as ``"ADD x3, CONV_2D x8"``: one CSV cell, readable."""
    return ", ".join(f"{name} x{count}" for name, count in sorted(counts.items()))


def _keyed(paths, keys=VARIANT):
    records = {}
    for path in paths:
        record = read_json(path)
        key = tuple(record[name] for name in keys)
        if key in records:
            raise ValueError(f"{path}: a second record for {dict(zip(keys, key))}")
        records[key] = record
    return records


def device_columns(graph, micro, latency):
    """The columns one variant gets from its graph analysis, TFLite Micro measurement and latency."""
    agreement = micro.get("agreement") or {}
    return {
        "macs": graph["macs"],
        "tflite_parameters": graph["parameters"],
        "operator_total": graph["operator_total"],
        "operators": _operator_list(graph["operators"]),
        "tflm_status": micro["status"],
        "arena_bytes": micro["arena_bytes"],
        "tflm_unsupported_operator": micro["unsupported_operator"],
        "tflm_sample_images": agreement.get("images"),
        "tflm_top1_agreement": agreement.get("top1_agreement"),
        "tflm_sample_accuracy": agreement.get("tflm_accuracy"),
        "litert_sample_accuracy": agreement.get("litert_accuracy"),
        "tflm_max_difference_steps": agreement.get("max_difference_steps"),
        "latency_median_ms": latency["median_ms"],
        "latency_p90_ms": latency["p90_ms"],
        "latency_threads": latency["threads"],
    }


def gather(evaluation_paths, training_metric_paths, graph_paths, micro_paths, latency_paths):
    """One row per variant: size, compression and accuracy change versus fp32, the Keras accuracy,
    and the device measurements."""
    evaluations = _keyed(evaluation_paths)
    graphs, micro, latencies = _keyed(graph_paths), _keyed(micro_paths), _keyed(latency_paths)
    training = _keyed(training_metric_paths, ["dataset", "model"])
    for name, records in (("graph", graphs), ("micro", micro), ("latency", latencies)):
        if set(records) != set(evaluations):
            raise ValueError(f"{name} records cover {sorted(set(records) ^ set(evaluations))} differently")
    rows = []
    for key, record in sorted(evaluations.items()):
        dataset, model, scheme = key
        trained = training[(dataset, model)]
        rows.append(
            {
                **{name: record[name] for name in ("dataset", "dataset_name", "model", "scheme", "file_bytes")},
                **{name: record[name] for name in ("accuracy", "agreement_with_fp32", "test_images", "input_type")},
                **{name: record[name] for name in ("mean_inference_ms", "threads", "litert_version")},
                "model_source": trained["source"],
                "model_warning": trained.get("warning"),
                "keras_test_accuracy": trained["test_accuracy"],
                "parameters": trained["parameters"],
                "seed": trained.get("seed"),
                **{
                    f"{library}_version": trained["versions"][library]
                    for library in ("tensorflow", "keras", "workflow")
                },
                **device_columns(graphs[key], micro[key], latencies[key]),
            }
        )
    table = pd.DataFrame(rows)
    reference = table[table.scheme == REFERENCE_SCHEME].set_index(["dataset", "model"])
    keys = list(zip(table.dataset, table.model))
    table["size_kb"] = table.file_bytes / KB
    table["compression_vs_fp32"] = np.asarray([reference.file_bytes[key] for key in keys]) / table.file_bytes
    table["accuracy_change_vs_fp32"] = 100 * (table.accuracy - np.asarray([reference.accuracy[key] for key in keys]))
    table["arena_bytes"] = table.arena_bytes.astype("Int64")
    table["tflm_max_difference_steps"] = table.tflm_max_difference_steps.astype("Int64")
    table["scheme"] = pd.Categorical(table.scheme, categories=SCHEMES, ordered=True)
    return table[COLUMNS].sort_values(VARIANT).reset_index(drop=True)


def _percent(values, digits=2):
    return (100 * values).map(lambda value: "-" if pd.isna(value) else f"{value:.{digits}f}")


def model_labels(part):
    """Each row's model, marked when it was imported rather than trained here."""
    return [
        f"{model} (imported)" if source.startswith("imported") else model
        for model, source in zip(part.model, part.model_source)
    ]


def warnings_markdown(table):
    """The warnings the stages left about a model (a declared preprocessing that does not fit it), first."""
    warnings = table.dropna(subset=["model_warning"]).drop_duplicates(["dataset", "model"])
    if warnings.empty:
        return ""
    lines = [f"- **{row.model}** on {row.dataset_name}: {row.model_warning}" for row in warnings.itertuples()]
    return "## Warnings\n\n" + "\n".join(lines) + "\n"


def markdown_tables(table):
    """Per dataset, the paper's table (model x scheme: size, compression, accuracy, change versus fp32),
    then the microcontroller table."""
    sections = []
    for dataset_name, part in table.groupby("dataset_name", sort=True):
        shown = pd.DataFrame(
            {
                "model": model_labels(part),
                "scheme": part.scheme,
                "size (KB)": part.size_kb.map("{:.1f}".format),
                "compression vs fp32": part.compression_vs_fp32.map("{:.2f}x".format),
                "accuracy (%)": _percent(part.accuracy),
                "change vs fp32 (points)": part.accuracy_change_vs_fp32.map("{:+.2f}".format),
                "agreement with fp32 (%)": _percent(part.agreement_with_fp32, 1),
            }
        )
        sections.append(f"## {dataset_name}, {int(part.test_images.iloc[0])} test images\n")
        sections.append(shown.to_markdown(index=False) + "\n")
        sections.append(f"### {dataset_name} on a microcontroller\n")
        sections.append(device_markdown(part) + "\n")
    return "\n".join(sections)


def device_markdown(part):
    """Model x scheme: MACs, flash, TFLite Micro arena (or the refused operator), TFLM against LiteRT
    on a test sample, and host-CPU latency."""
    tflm = [
        f"{arena / KB:.1f}" if status == RUNS else f"unsupported ({operator})"
        for status, arena, operator in zip(part.tflm_status, part.arena_bytes, part.tflm_unsupported_operator)
    ]
    agreement = [
        "-" if pd.isna(images) else f"{100 * top1:.1f} / {100 * accuracy:.1f} / {'-' if pd.isna(steps) else int(steps)}"
        for images, top1, accuracy, steps in zip(
            part.tflm_sample_images, part.tflm_top1_agreement, part.tflm_sample_accuracy, part.tflm_max_difference_steps
        )
    ]
    images = part.tflm_sample_images.dropna()
    sample = f" on {int(images.iloc[0])} test images" if len(images) else ""
    shown = pd.DataFrame(
        {
            "model": model_labels(part),
            "scheme": part.scheme,
            "MACs (M)": (part.macs / 1e6).map("{:.2f}".format),
            "flash (KB)": part.size_kb.map("{:.1f}".format),
            "TFLM arena (KB)": tflm,
            f"TFLM vs LiteRT{sample}: top-1 agreement (%) / TFLM accuracy (%) / max difference (steps)": agreement,
            "host latency median / p90 (ms)": [
                f"{median:.3f} / {p90:.3f}" for median, p90 in zip(part.latency_median_ms, part.latency_p90_ms)
            ],
        }
    )
    return shown.to_markdown(index=False)


def training_markdown(training_metric_paths):
    """The last epoch of every model trained here: epochs, accuracies, and the median epoch time."""
    rows = []
    for record in sorted(
        _keyed(training_metric_paths, ["dataset", "model"]).values(), key=lambda r: (r["dataset"], r["model"])
    ):
        final = record.get("final_epoch")
        if not final:
            continue
        rows.append(
            {
                "dataset": record["dataset_name"],
                "model": record["model"],
                "epochs": final["epoch"],
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
        + pd.DataFrame(rows).to_markdown(index=False)
        + "\n"
    )


def worst_layers(layer_errors, count=3):
    """Per dataset, model and scheme, the ``count`` layers with the largest error in their own quantization steps."""
    ranked = layer_errors.sort_values("rmse_in_steps", ascending=False)
    return (
        ranked.groupby(VARIANT, sort=True)
        .head(count)
        .sort_values([*VARIANT, "rmse_in_steps"], ascending=[True] * 3 + [False])
    )


def layer_error_markdown(layer_error_paths, count=3):
    if not layer_error_paths:
        return ""
    layers = pd.concat([pd.read_csv(path) for path in layer_error_paths], ignore_index=True)
    worst = worst_layers(layers, count)
    shown = pd.DataFrame(
        {
            "dataset": worst.dataset,
            "model": worst.model,
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
    images = int(layers.images.iloc[0])
    return (
        f"## Where the quantization error is: the {count} layers with the largest error\n\n"
        f"Each quantized layer's output against the same tensor of the fp32 variant, on {images} seeded test images "
        "(both runtimes LiteRT; the error accumulates from the input on). RMSE / scale is the error in the layer's "
        "own quantization steps (rounding alone gives about 0.29). Every layer: `layer_error/` of the study; "
        "figure: `figures/layer_error`.\n\n" + shown.to_markdown(index=False) + "\n"
    )


def recovery_markdown(recovery_paths):
    if not recovery_paths:
        return ""
    rows = []
    for path in recovery_paths:
        record = read_json(path)
        micro = record["micro"]
        rows.append(
            {
                "dataset": record["dataset"],
                "model": record["model"],
                "why": record["reason"],
                "layers kept in float": len(record["float_layers"]),
                "fp32 (%)": f"{100 * record['reference_accuracy']:.2f}",
                f"{record['scheme']} (%)": f"{100 * record['quantized_accuracy']:.2f}",
                "with float fallback (%)": f"{100 * record['accuracy']:.2f}",
                "size (KB)": f"{record['file_bytes'] / KB:.1f}",
                "TFLite Micro": f"runs, arena {micro['arena_bytes'] / KB:.1f} KB"
                if micro["status"] == RUNS
                else f"unsupported ({micro['unsupported_operator']})",
            }
        )
    return (
        "## Winning accuracy back: the worst int8 layers kept in float\n\n"
        "The int8 variants that lose more than `diagnostics.recovery_threshold_points` against fp32 (and those in "
        "`diagnostics.always_recover`), converted again with their worst layers (largest RMSE / scale in TensorFlow's "
        "quantization debugger) on the converter's deny-list, so they stay float; evaluated on the whole test set "
        "and measured on TensorFlow Lite Micro.\n\n" + pd.DataFrame(rows).to_markdown(index=False) + "\n"
    )


def run_gather(
    evaluation_paths,
    training_metric_paths,
    graph_paths,
    micro_paths,
    latency_paths,
    layer_error_paths,
    recovery_paths,
    csv_path,
    markdown_path,
):
    """Snakemake entry point: write the results CSV and the Markdown tables."""
    table = gather(evaluation_paths, training_metric_paths, graph_paths, micro_paths, latency_paths)
    write_csv(csv_path, table)
    sections = [
        "# Size and accuracy of every TFLite variant\n",
        warnings_markdown(table),
        markdown_tables(table),
        training_markdown(training_metric_paths),
        layer_error_markdown(layer_error_paths),
        recovery_markdown(recovery_paths),
    ]
    write_text(markdown_path, "\n".join(section for section in sections if section))
    return table
