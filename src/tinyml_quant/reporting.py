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
    "macs", "tflite_parameters", "operator_total", "operators",
    "tflm_status", "arena_bytes", "tflm_unsupported_operator", "tflm_agrees_with_litert",
    "latency_median_ms", "latency_p90_ms", "latency_threads",
    "seed", "tensorflow_version", "keras_version", "litert_version", "workflow_version",
]  # fmt: skip


def _operator_list(counts):
    """``{"CONV_2D": 8, "ADD": 3}`` as ``"ADD x3, CONV_2D x8"``: one CSV cell, readable."""
    return ", ".join(f"{name} x{count}" for name, count in sorted(counts.items()))


def device_columns(graph, micro, latency):
    """The columns one variant gets from its graph analysis, TFLite Micro measurement and latency."""
    agreement = micro.get("agreement")
    return {
        "macs": graph["macs"],
        "tflite_parameters": graph["parameters"],
        "operator_total": graph["operator_total"],
        "operators": _operator_list(graph["operators"]),
        "tflm_status": micro["status"],
        "arena_bytes": micro["arena_bytes"],
        "tflm_unsupported_operator": micro["unsupported_operator"],
        "tflm_agrees_with_litert": None if agreement is None else agreement["agrees"],
        "latency_median_ms": latency["median_ms"],
        "latency_p90_ms": latency["p90_ms"],
        "latency_threads": latency["threads"],
    }


def gather(evaluation_paths, training_metric_paths, graph_paths, micro_paths, latency_paths):
    """One row per variant: size, compression and accuracy change versus fp32, the Keras accuracy,
    and the device measurements.

    The four per-variant path lists come from one expansion of the study's
    grid, so their items correspond one to one.
    """
    import pandas as pd

    per_variant = [evaluation_paths, graph_paths, micro_paths, latency_paths]
    if len({len(paths) for paths in per_variant}) != 1:
        raise ValueError(f"per-variant inputs differ in length: {[len(paths) for paths in per_variant]}")
    training = {}
    for path in training_metric_paths:
        record = read_json(path)
        training[(record["dataset"], record["model"])] = record
    rows = []
    for evaluation_path, graph_path, micro_path, latency_path in zip(*per_variant):
        record = read_json(evaluation_path)
        # results/evaluate/<dataset>/<model>/<scheme>.json: the model is the folder's name.
        model = Path(evaluation_path).parent.name
        trained = training[(record["dataset"], model)]
        rows.append(
            {
                **{key: record[key] for key in ("dataset", "dataset_name", "scheme", "file_bytes", "accuracy",
                                                "agreement_with_fp32", "test_images", "input_type",
                                                "mean_inference_ms", "threads", "litert_version")},
                "model": model,
                "keras_test_accuracy": trained["test_accuracy"],
                "parameters": trained["parameters"],
                "seed": trained["seed"],
                **{f"{library}_version": trained["versions"][library] for library in ("tensorflow", "keras", "workflow")},
                **device_columns(read_json(graph_path), read_json(micro_path), read_json(latency_path)),
            }
        )  # fmt: skip
    table = pd.DataFrame(rows)
    fp32 = table[table.scheme == "fp32"].set_index(["dataset", "model"])
    keys = list(zip(table.dataset, table.model))
    table["size_kb"] = table.file_bytes / 1024
    table["compression_vs_fp32"] = [fp32.file_bytes[key] for key in keys] / table.file_bytes
    table["accuracy_change_vs_fp32"] = 100 * (table.accuracy - [fp32.accuracy[key] for key in keys])
    table["arena_bytes"] = table.arena_bytes.astype("Int64")
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
        sections.append(f"### {dataset_name} on a microcontroller\n")
        sections.append(device_markdown(part) + "\n")
    return "\n".join(sections)


def device_markdown(part):
    """Model x scheme: MACs, flash, TFLite Micro arena (or the refused operator) and host-CPU latency."""
    import pandas as pd

    tflm = [
        f"{arena / 1024:.1f}" if status == "runs" else f"unsupported ({operator})"
        for status, arena, operator in zip(part.tflm_status, part.arena_bytes, part.tflm_unsupported_operator)
    ]
    shown = pd.DataFrame(
        {
            "model": part.model,
            "scheme": part.scheme,
            "MACs (M)": (part.macs / 1e6).map("{:.2f}".format),
            "flash (KB)": part.size_kb.map("{:.1f}".format),
            "TFLM arena (KB)": tflm,
            "host latency median / p90 (ms)": [
                f"{median:.3f} / {p90:.3f}" for median, p90 in zip(part.latency_median_ms, part.latency_p90_ms)
            ],
        }
    )
    return shown.to_markdown(index=False)


def run_gather(evaluation_paths, training_metric_paths, graph_paths, micro_paths, latency_paths,
               csv_path, markdown_path):  # fmt: skip
    """Snakemake entry point: write the results CSV and the Markdown tables."""
    table = gather(evaluation_paths, training_metric_paths, graph_paths, micro_paths, latency_paths)
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


def plot_accuracy_against(table, dataset_name, axes, x_column, x_label, hollow=None):
    """Accuracy of every variant of one dataset against ``x_column`` (KB, log axis).

    Colour is the model, marker the scheme; rows where ``hollow`` is true are
    drawn as hollow markers (variants TFLite Micro cannot run).
    """
    import matplotlib.pyplot as plt

    colours = dict(zip(sorted(table.model.unique()), plt.get_cmap("tab10").colors))
    part = table[table.dataset_name == dataset_name]
    hollow = part.index.isin([]) if hollow is None else hollow[part.index]
    for (_, row), is_hollow in zip(part.iterrows(), hollow):
        face = "none" if is_hollow else colours[row.model]
        axes.scatter(row[x_column], 100 * row.accuracy, facecolors=face, edgecolors=colours[row.model] if is_hollow else "black",
                     marker=SCHEME_MARKERS[row.scheme], s=50, linewidths=1.0 if is_hollow else 0.5)  # fmt: skip
    axes.set_xscale("log")
    # Plain numbers (30, 100, 300) rather than powers of ten, which collide on short log ranges.
    axes.xaxis.set_major_formatter(plt.FuncFormatter(lambda value, _: f"{value:g}"))
    axes.xaxis.set_minor_formatter(plt.NullFormatter())
    axes.set_xlabel(x_label)
    axes.set_ylabel("test accuracy (%)")
    axes.set_title(dataset_name)
    axes.grid(True, which="both", alpha=0.3)
    model_handles = [plt.Line2D([], [], color=c, marker="o", linestyle="", label=m) for m, c in colours.items()]
    scheme_handles = [
        plt.Line2D([], [], color="grey", marker=m, linestyle="", label=s) for s, m in SCHEME_MARKERS.items()
    ]
    if hollow.any():
        scheme_handles.append(plt.Line2D([], [], color="grey", marker="o", markerfacecolor="none", linestyle="",
                                         label="hollow: unsupported on TFLite Micro"))  # fmt: skip
    axes.legend(handles=model_handles + scheme_handles, fontsize="x-small", loc="best")


def _read_results(csv_path):
    import pandas as pd

    table = pd.read_csv(csv_path)
    table["scheme"] = pd.Categorical(table.scheme, categories=SCHEMES, ordered=True)
    return table


def _pyplot():
    """pyplot on the file-only Agg backend: figures go to files, never to a window."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_all(csv_path, figure_folder, dpi=150, formats=("png", "svg")):
    """Snakemake entry point: every figure of the study, in every requested format."""
    import numpy as np

    plt = _pyplot()
    table = _read_results(csv_path)
    folder = Path(figure_folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = sorted(table.dataset_name.unique())

    figure, axes = plt.subplots(1, len(names), figsize=(6.5 * len(names), 5), squeeze=False)
    for axis, name in zip(axes[0], names):
        plot_accuracy_against(table, name, axis, "size_kb", "model file size (KB, log scale)")
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


def plot_device_fit(csv_path, board_entries, figure_folder, dpi=150, formats=("png", "svg")):
    """Snakemake entry point: accuracy versus TFLite Micro arena RAM and versus flash, with each board's budget.

    A board's budget is its memory less its allowance (config ``boards``), so
    a variant left of a board's line fits that board in that respect.
    """
    plt = _pyplot()
    table = _read_results(csv_path)
    table["arena_kb"] = table.arena_bytes / 1024
    unsupported = table.tflm_status != "runs"
    folder = Path(figure_folder)
    names = sorted(table.dataset_name.unique())
    budgets = {
        "arena": ("arena_kb", "peak tensor-arena RAM on TFLite Micro (KB, log scale)", "ram", "RAM"),
        "flash": ("size_kb", "flash: model file size (KB, log scale)", "flash", "flash"),
    }
    for figure_name, (column, label, memory, memory_label) in budgets.items():
        figure, axes = plt.subplots(1, len(names), figsize=(6.5 * len(names), 5), squeeze=False)
        for axis, name in zip(axes[0], names):
            shown = table[~unsupported] if figure_name == "arena" else table
            plot_accuracy_against(shown, name, axis, column, label, hollow=None if figure_name == "arena" else unsupported)
            # Boards with the same budget share one line and one label.
            boards_by_budget = {}
            for board in board_entries:
                budget = board[f"{memory}_kb"] - board[f"{memory}_allowance_kb"]
                boards_by_budget.setdefault(budget, []).append(board.get("label", board["name"]))
            for index, (budget, labels) in enumerate(sorted(boards_by_budget.items())):
                axis.axvline(budget, color="dimgrey", linestyle=["--", ":", "-.", (0, (5, 1))][index % 4], linewidth=1)
                # Staggered heights keep the labels of boards with close budgets apart.
                axis.annotate(f"{', '.join(labels)} {memory_label}", (budget, 0.02 + 0.25 * (index % 4)),
                              xycoords=("data", "axes fraction"), rotation=90, fontsize="x-small",
                              ha="right", va="bottom")  # fmt: skip
            refused = table[(table.dataset_name == name) & unsupported]
            if figure_name == "arena" and len(refused):
                notes = sorted({f"{row.scheme} ({row.tflm_unsupported_operator})" for row in refused.itertuples()})
                axis.set_title(f"{name}\nnot drawn, unsupported on TFLite Micro: {', '.join(notes)}", fontsize="small")
        figure.suptitle(f"Accuracy versus {memory_label}; lines: each board's {memory_label} less its allowance")
        _save(figure, folder / f"accuracy_vs_{figure_name}", formats, dpi)
