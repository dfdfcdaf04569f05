"""Report: gather every variant into tables (pandas) and draw the figures (matplotlib)."""

import logging
from pathlib import Path

from . import SCHEMES
from .files import atomic_path, read_json, write_text

logger = logging.getLogger(__name__)

SCHEME_MARKERS = {"fp32": "o", "dynamic_range": "s", "float16": "^", "int8": "D", "int16x8": "P"}

COLUMNS = [
    "dataset", "dataset_name", "model", "scheme", "file_bytes", "size_kb", "compression_vs_fp32",
    "accuracy", "accuracy_change_vs_fp32", "agreement_with_fp32", "keras_test_accuracy",
    "parameters", "test_images", "input_type", "mean_inference_ms", "threads",
]  # fmt: skip


def gather(evaluation_paths, training_metric_paths):
    """One row per variant: size, compression and accuracy change versus fp32, and the Keras accuracy."""
    import pandas as pd

    training = {}
    for path in training_metric_paths:
        record = read_json(path)
        training[(record["dataset"], record["model"])] = record
    rows = []
    for path in evaluation_paths:
        record = read_json(path)
        # results/evaluate/<dataset>/<model>/<scheme>.json: the model is the folder's name.
        model = Path(path).parent.name
        trained = training[(record["dataset"], model)]
        rows.append(
            {
                **{key: record[key] for key in ("dataset", "dataset_name", "scheme", "file_bytes", "accuracy",
                                                "agreement_with_fp32", "test_images", "input_type",
                                                "mean_inference_ms", "threads")},
                "model": model,
                "keras_test_accuracy": trained["test_accuracy"],
                "parameters": trained["parameters"],
            }
        )  # fmt: skip
    table = pd.DataFrame(rows)
    fp32 = table[table.scheme == "fp32"].set_index(["dataset", "model"])
    keys = list(zip(table.dataset, table.model))
    table["size_kb"] = table.file_bytes / 1024
    table["compression_vs_fp32"] = [fp32.file_bytes[key] for key in keys] / table.file_bytes
    table["accuracy_change_vs_fp32"] = 100 * (table.accuracy - [fp32.accuracy[key] for key in keys])
    table["scheme"] = pd.Categorical(table.scheme, categories=SCHEMES, ordered=True)
    return table[COLUMNS].sort_values(["dataset", "model", "scheme"]).reset_index(drop=True)


def markdown_tables(table):
    """Per dataset, the paper's table: model x scheme, size, compression, accuracy, change versus fp32."""
    sections = ["# Size and accuracy of every TFLite variant\n"]
    for dataset_name, part in table.groupby("dataset_name", sort=True):
        shown = part.assign(
            size_kb=part.size_kb.map("{:.1f}".format),
            compression_vs_fp32=part.compression_vs_fp32.map("{:.2f}x".format),
            accuracy=(100 * part.accuracy).map("{:.2f}".format),
            accuracy_change_vs_fp32=part.accuracy_change_vs_fp32.map("{:+.2f}".format),
            agreement_with_fp32=(100 * part.agreement_with_fp32).map("{:.1f}".format),
        )[["model", "scheme", "size_kb", "compression_vs_fp32", "accuracy", "accuracy_change_vs_fp32",
           "agreement_with_fp32"]]  # fmt: skip
        shown.columns = ["model", "scheme", "size (KB)", "compression vs fp32", "accuracy (%)",
                         "change vs fp32 (points)", "agreement with fp32 (%)"]  # fmt: skip
        test_images = int(part.test_images.iloc[0])
        sections.append(f"## {dataset_name}, {test_images} test images\n")
        sections.append(shown.to_markdown(index=False) + "\n")
    return "\n".join(sections)


def run_gather(evaluation_paths, training_metric_paths, csv_path, markdown_path):
    """Snakemake entry point: write the results CSV and the Markdown tables."""
    table = gather(evaluation_paths, training_metric_paths)
    with atomic_path(csv_path) as temporary:
        table.to_csv(temporary, index=False, float_format="%.6g")
    write_text(markdown_path, markdown_tables(table))
    return table


# --------------------------------------------------------------------------- figures


def _save(figure, stem, formats, dpi):
    import matplotlib.pyplot as plt

    for extension in formats:
        path = Path(f"{stem}.{extension}")
        with atomic_path(path) as temporary:
            figure.savefig(temporary, dpi=dpi, bbox_inches="tight", format=extension)
    plt.close(figure)


def plot_size_versus_accuracy(table, dataset_name, axes):
    import matplotlib.pyplot as plt

    colours = dict(zip(sorted(table.model.unique()), plt.get_cmap("tab10").colors))
    part = table[table.dataset_name == dataset_name]
    for (model, scheme), row in part.set_index(["model", "scheme"]).iterrows():
        axes.scatter(row.size_kb, 100 * row.accuracy, color=colours[model], marker=SCHEME_MARKERS[scheme],
                     s=50, edgecolors="black", linewidths=0.5)  # fmt: skip
    axes.set_xscale("log")
    axes.set_xlabel("model file size (KB, log scale)")
    axes.set_ylabel("test accuracy (%)")
    axes.set_title(dataset_name)
    axes.grid(True, which="both", alpha=0.3)
    model_handles = [plt.Line2D([], [], color=c, marker="o", linestyle="", label=m) for m, c in colours.items()]
    scheme_handles = [
        plt.Line2D([], [], color="grey", marker=m, linestyle="", label=s) for s, m in SCHEME_MARKERS.items()
    ]
    axes.legend(handles=model_handles + scheme_handles, fontsize="small", loc="best")


def plot_all(csv_path, figure_folder, dpi=150, formats=("png", "svg")):
    """Snakemake entry point: every figure of the study, in every requested format."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd

    table = pd.read_csv(csv_path)
    table["scheme"] = pd.Categorical(table.scheme, categories=SCHEMES, ordered=True)
    folder = Path(figure_folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = sorted(table.dataset_name.unique())

    figure, axes = plt.subplots(1, len(names), figsize=(6.5 * len(names), 5), squeeze=False)
    for axis, name in zip(axes[0], names):
        plot_size_versus_accuracy(table, name, axis)
    figure.suptitle("Size versus accuracy of every TFLite variant")
    _save(figure, folder / "size_vs_accuracy", formats, dpi)

    figure, axes = plt.subplots(1, len(names), figsize=(6.5 * len(names), 4.5), squeeze=False)
    for axis, name in zip(axes[0], names):
        sizes = table[table.dataset_name == name].pivot_table(
            index="model", columns="scheme", values="size_kb", observed=True
        )
        sizes.plot.bar(ax=axis, logy=True, rot=20, width=0.8)
        axis.set_ylabel("file size (KB, log scale)")
        axis.set_title(name)
        axis.legend(fontsize="small", title="scheme")
    figure.suptitle("File size per scheme")
    _save(figure, folder / "size_per_scheme", formats, dpi)

    figure, axes = plt.subplots(1, len(names), figsize=(6 * len(names), 4), squeeze=False)
    for axis, name in zip(axes[0], names):
        change = table[table.dataset_name == name].pivot_table(
            index="model", columns="scheme", values="accuracy_change_vs_fp32", observed=True
        )
        limit = max(1.0, float(np.nanmax(np.abs(change.to_numpy()))))
        image = axis.imshow(change.to_numpy(), cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
        axis.set_xticks(range(len(change.columns)), change.columns, rotation=30, ha="right")
        axis.set_yticks(range(len(change.index)), change.index)
        for (row, column), value in np.ndenumerate(change.to_numpy()):
            axis.text(column, row, f"{value:+.2f}", ha="center", va="center", fontsize="small")
        axis.set_title(name)
        figure.colorbar(image, ax=axis, label="accuracy change vs fp32 (points)")
    figure.suptitle("Accuracy change of each scheme versus fp32")
    _save(figure, folder / "accuracy_change_heatmap", formats, dpi)
