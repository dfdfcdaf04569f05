"""Every figure of the study (matplotlib), each written to the exact paths the workflow names.

The figures are named in the tables at the end of this module (``RESULT_FIGURES``
and the others): the rules make one output per name and format and pass each
entry point ``{name: [paths]}``; a path's suffix is its format. matplotlib is
imported inside the functions that draw, because the workflow reads the names
while it parses, once per job.
"""

import math
from pathlib import Path

import numpy as np
import pandas as pd

from .devices import KB, boards_from_config
from .files import atomic_path
from .micro import RUNS, WRONG_OUTPUT
from .npu import COMPILED
from .schemes import SCHEMES
from .variants import NOT_CONVERTED

SCHEME_MARKERS = dict(zip(SCHEMES, ("o", "s", "^", "D", "P", "X", "v", "<", ">", "*", "h", "p", "d"), strict=True))
BOARD_LINE_STYLES = ("--", ":", "-.", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)))
BOARD_LINE_COLOURS = ("dimgrey", "black", "slategrey")


def draw_board_lines(axis, budgets, zorder):
    """A vertical line per budget (``{KB: [board labels]}``) on ``axis``; the legend handles naming the boards.

    Lines differ in grey and in style: fifteen budgets before a pair repeats.
    """
    plt = pyplot()
    handles = []
    for index, (budget, labels) in enumerate(sorted(budgets.items())):
        colour = BOARD_LINE_COLOURS[index % len(BOARD_LINE_COLOURS)]
        style = BOARD_LINE_STYLES[index % len(BOARD_LINE_STYLES)]
        axis.axvline(budget, color=colour, linestyle=style, linewidth=1.2, zorder=zorder)
        handles.append(plt.Line2D([], [], color=colour, linestyle=style, label=f"{budget:g} KB: {', '.join(labels)}"))
    return handles


MEMORY_LABELS = {"ram": "RAM", "flash": "flash"}
# The cross drawn over a variant TFLite Micro runs with wrong output (pure red, not tab10's red of a model).
WRONG_OUTPUT_COLOUR = "red"
SNR_CEILING_DB = 80.0


def pyplot():
    """pyplot on the file-only Agg backend: figures go to files, never to a window."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(figure, paths, dpi):
    """Write ``figure`` to every path (format from the suffix), then close it."""
    for path in paths:
        with atomic_path(path) as temporary:
            figure.savefig(temporary, dpi=dpi, bbox_inches="tight", format=Path(path).suffix[1:])
    pyplot().close(figure)


def _check_outputs(outputs, names):
    missing = set(names) - set(outputs)
    if missing:
        raise ValueError(f"no output paths given for figures {sorted(missing)}")


def read_results(csv_path):
    """The results table, without the variants that were not converted (they have no numbers to draw)."""
    table = pd.read_csv(csv_path)
    if "status" in table:
        table = table[table.status != NOT_CONVERTED]
    table = table.reset_index(drop=True)
    table["scheme"] = pd.Categorical(table.scheme, categories=SCHEMES, ordered=True)
    return table


def model_colours(models):
    return dict(zip(sorted(set(models)), pyplot().get_cmap("tab10").colors))


def _legend_handles(colours, schemes, hollow_note=None):
    plt = pyplot()
    handles = [
        plt.Line2D([], [], color=colour, marker="o", linestyle="", label=model) for model, colour in colours.items()
    ]
    handles += [
        plt.Line2D([], [], color="grey", marker=SCHEME_MARKERS[scheme], linestyle="", label=scheme)
        for scheme in schemes
    ]
    if hollow_note:
        handles.append(
            plt.Line2D([], [], color="grey", marker="o", markerfacecolor="none", linestyle="", label=hollow_note)
        )
    return handles


def plot_accuracy_against(table, axes, x_column, x_label, colours, hollow=None):
    """Accuracy of every variant in ``table`` against ``x_column`` (log axis).

    Colour is the model, marker the scheme; rows where ``hollow`` is true are
    drawn as hollow markers (variants TFLite Micro cannot run).
    """
    hollow = np.zeros(len(table), bool) if hollow is None else np.asarray(hollow)
    for (_, row), is_hollow in zip(table.iterrows(), hollow):
        if "accuracy_ci_low" in row and pd.notna(row.accuracy_ci_low):
            # The accuracy's 95 % Wilson interval.
            axes.errorbar(
                row[x_column],
                100 * row.accuracy,
                yerr=[[100 * (row.accuracy - row.accuracy_ci_low)], [100 * (row.accuracy_ci_high - row.accuracy)]],
                color=colours[row.model],
                linewidth=0.8,
                capsize=2,
                zorder=2,
            )
        axes.scatter(
            row[x_column],
            100 * row.accuracy,
            facecolors="none" if is_hollow else colours[row.model],
            edgecolors=colours[row.model] if is_hollow else "black",
            marker=SCHEME_MARKERS[row.scheme],
            s=50,
            linewidths=1.0 if is_hollow else 0.5,
            zorder=3,
        )
    axes.set_xscale("log")
    axes.set_xlabel(x_label)
    axes.set_ylabel("test accuracy (%), 95% interval")
    axes.grid(True, which="both", alpha=0.3)


def label_log_axis(axes, minimum_ticks=3):
    """Plain-number ticks (20, 50, 100) on a log x axis, at least ``minimum_ticks`` of them in view.

    Matplotlib labels only powers of ten, so data within one decade (one
    model's variants) showed a single label. Ticks come from the 1-2-5 series,
    or every integer multiple of a power of ten where that gives too few; call
    it after everything is drawn, since lines change the limits.
    """
    plt = pyplot()
    low, high = axes.get_xlim()
    decades = range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 1)
    for steps in ((1, 2, 5), range(1, 10)):
        ticks = [step * 10.0**decade for decade in decades for step in steps if low <= step * 10.0**decade <= high]
        if len(ticks) >= minimum_ticks:
            break
    axes.xaxis.set_major_locator(plt.FixedLocator(ticks))
    axes.xaxis.set_major_formatter(plt.FuncFormatter(lambda value, _: f"{value:g}"))
    axes.xaxis.set_minor_formatter(plt.NullFormatter())


# --------------------------------------------------------------------------- results


def _panels(table, height):
    """One panel per dataset of ``table``: ``(figure, [(axis, dataset name, rows)])``."""
    names = sorted(table.dataset_name.unique())
    figure, axes = pyplot().subplots(
        1, len(names), figsize=(6.5 * len(names), height), squeeze=False, layout="constrained"
    )
    return figure, [(axis, name, table[table.dataset_name == name]) for axis, name in zip(axes[0], names)]


def _schemes_in(table):
    return [scheme for scheme in SCHEMES if scheme in set(table.scheme.astype(str))]


def size_vs_accuracy(table):
    """Accuracy of every variant against its file size; colour the model, marker the scheme."""
    colours = model_colours(table.model)
    figure, panels = _panels(table, 5)
    for axis, name, part in panels:
        plot_accuracy_against(part, axis, "size_kb", "model file size (KB, log scale)", colours)
        label_log_axis(axis)
        axis.set_title(name)
    figure.legend(handles=_legend_handles(colours, _schemes_in(table)), loc="outside right upper", fontsize="small")
    figure.suptitle("Size versus accuracy of every TFLite variant")
    return figure


def size_per_scheme(table):
    """File size of every model under every scheme (log scale)."""
    figure, panels = _panels(table, 4.8)
    for axis, name, part in panels:
        sizes = part.pivot_table(index="model", columns="scheme", values="size_kb", observed=True)
        sizes.plot.bar(ax=axis, logy=True, rot=20, width=0.8, legend=False)
        axis.set_ylabel("file size (KB, log scale)")
        axis.set_xlabel("")
        axis.set_title(name)
    handles, labels = panels[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside right upper", title="scheme", fontsize="small")
    figure.suptitle("File size per scheme")
    return figure


def seeds_note(table):
    """How a figure's values combine trainings: ``mean over N seeds``, or nothing for one training per model."""
    count = table.seed.nunique() if "seed" in table else 1
    return f"mean over {count} seeds" if count > 1 else ""


def accuracy_change_heatmap(table):
    """Each scheme's accuracy change against fp32, in points, per model; one colour scale for every panel."""
    figure, panels = _panels(table, 4.5)
    # One scale: a -1.4 on one dataset must not look like a large loss because the other panel's range is small.
    largest = np.nanmax(np.abs(table.accuracy_change_vs_fp32.to_numpy(dtype=float)), initial=0.0)
    limit = max(1.0, float(largest))
    for axis, name, part in panels:
        change = part.pivot_table(index="model", columns="scheme", values="accuracy_change_vs_fp32", observed=True)
        significant = part.assign(significant=part.significant.fillna(False).astype(bool)).pivot_table(
            index="model", columns="scheme", values="significant", aggfunc="max", observed=True
        )
        image = axis.imshow(change.to_numpy(), cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
        axis.set_xticks(range(len(change.columns)), change.columns, rotation=35, ha="right")
        axis.set_yticks(range(len(change.index)), change.index)
        for (row, column), value in np.ndenumerate(change.to_numpy()):
            if np.isnan(value):
                continue
            mark = "*" if bool(significant.iloc[row, column]) else ""
            # White on the darkest cells, where black would not read.
            colour = "white" if abs(value) > 0.6 * limit else "black"
            axis.text(column, row, f"{value:+.2f}{mark}", ha="center", va="center", fontsize="x-small", color=colour)
        axis.set_title(name)
        figure.colorbar(image, ax=axis, label="accuracy change vs fp32 (points)")
    how = "; ".join(filter(None, [seeds_note(table), "* significant after Holm", "blank: not converted"]))
    figure.suptitle(f"Accuracy change of each scheme versus fp32 ({how})")
    return figure


def plot_results(csv_path, outputs, dpi=150):
    """Snakemake entry point: every figure of ``RESULT_FIGURES``."""
    _check_outputs(outputs, RESULT_FIGURES)
    table = read_results(csv_path)
    for name, draw in RESULT_FIGURES.items():
        save(draw(table), outputs[name], dpi)


# --------------------------------------------------------------------------- will it fit?


def _accuracy_against_budget(table, boards, column, label, memory, drawn):
    """Accuracy against ``column`` with each board's ``memory`` budget (memory less allowance) as a line.

    A variant left of a board's line fits that board in that respect. Boards
    share a line where their budgets are equal; the legend names them, so no
    label is written over the data. ``drawn``: "runs" draws only what TFLite
    Micro runs, "all" draws the rest hollow.
    """
    unsupported = table.tflm_status != RUNS
    colours = model_colours(table.model)
    budgets = {}
    for board in boards.values():
        if board.npu is None:  # an NPU board runs Vela's compiled model: its budgets are in the tradeoff figure
            budgets.setdefault(board.budget_bytes(memory) / KB, []).append(board.label)
    figure, panels = _panels(table, 5.2)
    board_handles = []
    for axis, name, part in panels:
        if drawn == "runs":
            plot_accuracy_against(part[part.tflm_status == RUNS], axis, column, label, colours)
        else:
            plot_accuracy_against(part, axis, column, label, colours, hollow=unsupported[part.index])
        board_handles = draw_board_lines(axis, budgets, zorder=2)
        label_log_axis(axis)
        axis.set_title(name)
    refused = sorted(
        {
            f"{row.scheme} (wrong output)"
            if row.tflm_status == WRONG_OUTPUT
            else f"{row.scheme} ({row.tflm_unsupported_operator})"
            for row in table[unsupported].itertuples()
        }
    )
    hollow_note = "hollow: unsupported or wrong output on TFLite Micro" if drawn == "all" and refused else None
    drawn_schemes = _schemes_in(table if drawn == "all" else table[~unsupported])
    figure.legend(
        handles=_legend_handles(colours, drawn_schemes, hollow_note),
        loc="outside right center",
        fontsize="small",
        title="model, scheme",
    )
    figure.legend(
        handles=board_handles,
        loc="outside lower center",
        ncols=min(3, len(board_handles)),
        fontsize="small",
        title=f"each board's {MEMORY_LABELS[memory]} less its allowance",
    )
    title = f"Accuracy versus {MEMORY_LABELS[memory]}"
    if drawn == "runs" and refused:
        title += f"\nnot drawn, unsupported or wrong output on TFLite Micro: {', '.join(refused)}"
    figure.suptitle(title)
    return figure


def accuracy_vs_arena(table, boards):
    """Accuracy against the TFLite Micro tensor arena (RAM), for the variants TFLite Micro runs."""
    table = table.assign(arena_kb=table.arena_bytes / KB)
    return _accuracy_against_budget(
        table, boards, "arena_kb", "tensor arena on TFLite Micro (KB, log scale)", "ram", "runs"
    )


def accuracy_vs_flash(table, boards):
    """Accuracy against the file size (flash), every variant (those TFLite Micro refuses hollow)."""
    return _accuracy_against_budget(table, boards, "size_kb", "flash: model file size (KB, log scale)", "flash", "all")


def pareto_front(sizes, changes):
    """Indices of the points no other point beats on both: smaller (or as small) and more accurate, by size."""
    order = np.lexsort((-np.asarray(changes), np.asarray(sizes)))
    front, best = [], -np.inf
    for index in order:
        if changes[index] > best:
            front.append(int(index))
            best = changes[index]
    return front


def _every_seed(statuses):
    """A scheme's TFLite Micro status over its seeds: runs only if every seed runs; wrong if any seed is."""
    if (statuses == RUNS).all():
        return RUNS
    return WRONG_OUTPUT if (statuses == WRONG_OUTPUT).any() else statuses[statuses != RUNS].iloc[0]


def tradeoff(table, boards, dataset):
    """One dataset: every variant's accuracy change against its flash, the Pareto front, the boards' flash."""
    plt = pyplot()
    part = table[table.dataset == dataset]
    mean = (
        part.groupby(["model", "scheme"], observed=True)
        .agg(size_kb=("size_kb", "mean"), change=("accuracy_change_vs_fp32", "mean"), runs=("tflm_status", _every_seed))
        .reset_index()
    )
    colours = model_colours(mean.model)
    figure, axis = plt.subplots(figsize=(9, 5.5), layout="constrained")
    for row in mean.itertuples():
        runs = row.runs == RUNS
        axis.scatter(
            row.size_kb,
            row.change,
            marker=SCHEME_MARKERS[row.scheme],
            s=60,
            facecolors=colours[row.model] if runs else "none",
            edgecolors="black" if runs else colours[row.model],
            linewidths=0.5 if runs else 1.2,
            zorder=3,
        )
    # Drawn over their own marker: TFLite Micro runs them, but computes something else than LiteRT.
    wrong = mean[mean.runs == WRONG_OUTPUT]
    axis.scatter(wrong.size_kb, wrong.change, marker="x", s=90, color=WRONG_OUTPUT_COLOUR, linewidths=1.8, zorder=4)
    # The front of what a microcontroller can run, as "What to choose" in results.md.
    runnable = mean[mean.runs == RUNS].reset_index(drop=True)
    front = pareto_front(runnable.size_kb.to_numpy(), runnable.change.to_numpy())
    axis.step(
        runnable.size_kb.iloc[front], runnable.change.iloc[front], where="post", color="black", linewidth=1, zorder=2
    )
    axis.set_xscale("log")
    low, high = mean.size_kb.min() / 1.5, mean.size_kb.max() * 1.5
    axis.set_xlim(low, high)
    budgets = {}
    for board in boards.values():
        budget = board.budget_bytes("flash") / KB
        if low <= budget <= high:
            budgets.setdefault(budget, []).append(board.label)
    board_handles = draw_board_lines(axis, budgets, zorder=1)
    label_log_axis(axis)
    axis.axhline(0, color="grey", linewidth=0.6)
    axis.set_xlabel("flash: what a device stores (KB, log scale)")
    axis.set_ylabel(f"accuracy change vs fp32 ({', '.join(filter(None, ['points', seeds_note(part)]))})")
    axis.grid(True, which="both", alpha=0.3)
    handles = _legend_handles(colours, _schemes_in(mean), "hollow: TFLite Micro does not run it")
    if len(wrong):
        handles.append(
            plt.Line2D(
                [], [], marker="x", linestyle="", color=WRONG_OUTPUT_COLOUR, label="runs, wrong output (never chosen)"
            )
        )
    handles.append(plt.Line2D([], [], color="black", linewidth=1, label="Pareto front (TFLite Micro runs)"))
    figure.legend(handles=handles, loc="outside right upper", fontsize="small", title="model, scheme")
    if board_handles:
        figure.legend(
            handles=board_handles,
            loc="outside lower center",
            ncols=min(3, len(board_handles)),
            fontsize="small",
            title="each board's flash less its allowance",
        )
    # On the axes, not the figure: a figure title would run under the legends beside the axes.
    axis.set_title(f"What to choose on {part.dataset_name.iloc[0]}: accuracy change against flash")
    return figure


def nothing_to_show(title, reason):
    """A figure that says why it has nothing to draw (a study without NPU boards, without int8)."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6, 2), layout="constrained")
    axis.axis("off")
    axis.text(0.5, 0.5, reason, ha="center", va="center", wrap=True)
    figure.suptitle(title)
    return figure


def calibration_sweep(calibration):
    """int8's accuracy change against fp32 by number of calibration images, one line per model and dataset."""
    plt = pyplot()
    if calibration.empty:
        return nothing_to_show("How many calibration images int8 needs", "no int8 variant in this study")
    names = sorted(calibration.dataset_name.unique())
    figure, axes = plt.subplots(1, len(names), figsize=(6 * len(names), 4.5), squeeze=False, layout="constrained")
    colours = model_colours(calibration.model)
    for axis, name in zip(axes[0], names):
        part = calibration[calibration.dataset_name == name]
        for model, rows in part.groupby("model"):
            mean = rows.groupby("calibration_images").accuracy_change_vs_fp32.mean()
            axis.plot(mean.index, mean.to_numpy(), marker="o", color=colours[model], label=model)
        axis.set_xscale("log")
        label_log_axis(axis)
        axis.axhline(0, color="grey", linewidth=0.6)
        axis.set_xlabel("calibration images (log scale)")
        axis.set_ylabel("int8 accuracy change vs fp32 (points)")
        axis.set_title(name)
        axis.grid(True, which="both", alpha=0.3)
    handles = [plt.Line2D([], [], color=colour, marker="o", label=model) for model, colour in colours.items()]
    figure.legend(handles=handles, loc="outside right upper", fontsize="small")
    figure.suptitle("How many calibration images int8 needs")
    return figure


def npu_latency(table, npu, boards):
    """Accuracy against Vela's estimated NPU inference time, one panel per dataset and NPU board."""
    plt = pyplot()
    title = "Accuracy against the NPU's inference time, as Arm's Vela estimates it"
    if npu.empty:
        return nothing_to_show(title, "no board with an NPU, or no integer scheme, in this study")
    compiled = npu[npu.vela_status == COMPILED]
    accuracy = table.set_index(["dataset", "model", "seed", "scheme"])[
        ["accuracy", "accuracy_ci_low", "accuracy_ci_high"]
    ]
    merged = compiled.join(accuracy, on=["dataset", "model", "seed", "scheme"], how="inner")
    merged = merged.merge(table[["dataset", "dataset_name"]].drop_duplicates(), on="dataset")
    datasets = sorted(merged.dataset_name.unique()) or ["(no variant compiled)"]
    npu_boards = [board for board in boards.values() if board.npu]
    figure, axes = plt.subplots(
        len(datasets),
        max(1, len(npu_boards)),
        figsize=(5.2 * max(1, len(npu_boards)), 4.2 * len(datasets)),
        squeeze=False,
        layout="constrained",
    )
    colours = model_colours(table.model)
    for row, dataset_name in enumerate(datasets):
        for column, board in enumerate(npu_boards):
            axis = axes[row][column]
            part = merged[(merged.dataset_name == dataset_name) & (merged.board == board.label)]
            if len(part):
                plot_accuracy_against(
                    part, axis, "inference_ms_estimate", "inference (ms, Vela estimate, log)", colours
                )
                label_log_axis(axis)
            axis.set_title(f"{dataset_name}\n{board.label}: {board.npu['accelerator']}", fontsize="medium")
    figure.legend(
        handles=_legend_handles(colours, _schemes_in(merged if len(merged) else table)),
        loc="outside right upper",
        fontsize="small",
        title="model, scheme",
    )
    figure.suptitle(title)
    return figure


def tradeoff_figure_names(datasets):
    """The names of the tradeoff figures: one per dataset of the study."""
    return [f"{TRADEOFF_FIGURE_PREFIX}{dataset}" for dataset in datasets]


def plot_device_fit(csv_path, calibration_csv_path, npu_csv_path, board_entries, outputs, dpi=150):
    """Snakemake entry point: ``DEVICE_FIGURES`` and the tradeoff figure of every dataset of ``outputs``."""
    _check_outputs(outputs, DEVICE_FIGURES)
    boards = boards_from_config(board_entries)
    table = read_results(csv_path)
    calibration = pd.read_csv(calibration_csv_path) if Path(calibration_csv_path).stat().st_size > 1 else pd.DataFrame()
    npu = pd.read_csv(npu_csv_path) if Path(npu_csv_path).stat().st_size > 1 else pd.DataFrame()
    drawings = {
        "accuracy_vs_arena": lambda: accuracy_vs_arena(table, boards),
        "accuracy_vs_flash": lambda: accuracy_vs_flash(table, boards),
        "calibration_sweep": lambda: calibration_sweep(calibration),
        "npu_latency": lambda: npu_latency(table, npu, boards),
    }
    for name in DEVICE_FIGURES:
        save(drawings[name](), outputs[name], dpi)
    for name, paths in outputs.items():
        if name.startswith(TRADEOFF_FIGURE_PREFIX):
            save(tradeoff(table, boards, name.removeprefix(TRADEOFF_FIGURE_PREFIX)), paths, dpi)


# --------------------------------------------------------------------------- training


def learning_curves(histories):
    """Training and validation accuracy per epoch, one panel per dataset (``{dataset: {(model, seed): history}}``).

    Each seed of a model is a line of the model's colour.
    """
    plt = pyplot()
    datasets = sorted(histories)
    colours = model_colours([model for runs in histories.values() for model, _ in runs])
    figure, axes = plt.subplots(
        1, len(datasets), figsize=(6.5 * len(datasets), 4.8), squeeze=False, layout="constrained"
    )
    for axis, dataset in zip(axes[0], datasets):
        for (model, _), history in sorted(histories[dataset].items()):
            axis.plot(history.epoch, 100 * history.accuracy, linestyle="--", color=colours[model], linewidth=1)
            if "val_accuracy" in history:
                axis.plot(history.epoch, 100 * history.val_accuracy, marker="o", markersize=3, color=colours[model])
        axis.set_title(dataset)
        axis.set_xlabel("epoch")
        axis.set_ylabel("accuracy (%)")
        axis.grid(True, alpha=0.3)
        epochs = max(len(history) for history in histories[dataset].values())
        axis.set_xticks(range(1, epochs + 1, max(1, math.ceil(epochs / 12))))
    handles = [plt.Line2D([], [], color=colour, label=model) for model, colour in colours.items()]
    handles += [
        plt.Line2D([], [], color="grey", marker="o", markersize=3, label="validation (held-out training images)"),
        plt.Line2D([], [], color="grey", linestyle="--", label="training (augmented batches)"),
    ]
    figure.legend(handles=handles, loc="outside right upper", fontsize="small")
    figure.suptitle("Learning curves")
    return figure


def plot_learning_curves(history_paths, names, outputs, dpi=150):
    """Snakemake entry point: ``TRAINING_FIGURES``; ``names`` names each history (``"<dataset>/<model>/<seed>"``)."""
    _check_outputs(outputs, TRAINING_FIGURES)
    if len(history_paths) != len(names):
        raise ValueError(f"{len(history_paths)} histories but {len(names)} names")
    histories = {}
    for path, name in zip(history_paths, names):
        dataset, model, seed = name.split("/")
        histories.setdefault(dataset, {})[(model, int(seed))] = pd.read_csv(path)
    for name, draw in TRAINING_FIGURES.items():
        save(draw(histories), outputs[name], dpi)


# --------------------------------------------------------------------------- diagnostics


def layer_error(table):
    """Signal-to-quantization-noise ratio of every layer, by depth.

    One panel per dataset (rows) and scheme (columns), one line per model and
    seed; depth 0 is the first quantized layer, 1 the last.
    """
    plt = pyplot()
    title = "Quantization error by layer"
    if table.empty:
        return nothing_to_show(title, "no integer variant was converted in this study: no quantized layer to compare")
    datasets = sorted(table.dataset.unique())
    schemes = [scheme for scheme in SCHEMES if scheme in set(table.scheme)]
    colours = model_colours(table.model)
    figure, axes = plt.subplots(
        len(datasets),
        len(schemes),
        figsize=(5.5 * len(schemes), 3.6 * len(datasets)),
        squeeze=False,
        sharey=True,
        layout="constrained",
    )
    for row, dataset in enumerate(datasets):
        for column, scheme in enumerate(schemes):
            axis = axes[row][column]
            part = table[(table.dataset == dataset) & (table.scheme == scheme)]
            # One line per trained model: each seed of a model in the model's colour.
            for (model, _), layers in part.groupby(["model", "seed"] if "seed" in part else ["model", "dataset"]):
                # Exact layers (a padding, SNR near float precision) would flatten the rest: drawn at the top.
                shown = np.minimum(layers.snr_db, SNR_CEILING_DB)
                axis.plot(layers.depth, shown, marker=".", color=colours[model], linewidth=1)
            axis.set_title(f"{dataset}, {scheme}")
            axis.set_xlabel("layer depth (0: first, 1: last)")
            axis.set_ylabel("SNR against fp32 (dB)")
            axis.grid(True, alpha=0.3)
    # Set once for the shared axis, after every panel is drawn: a limit set on the first panel
    # alone would cut off the layers of a lossier scheme drawn later.
    shown = np.minimum(table.snr_db[np.isfinite(table.snr_db)], SNR_CEILING_DB)
    axes[0][0].set_ylim(bottom=shown.min() - 2 if len(shown) else 0, top=SNR_CEILING_DB + 2)
    handles = [plt.Line2D([], [], color=colour, label=model) for model, colour in colours.items()]
    figure.legend(handles=handles, loc="outside right upper", fontsize="small")
    figure.suptitle(
        f"{title}: signal-to-noise ratio of each layer's output against the fp32 model "
        f"(above {SNR_CEILING_DB:g} dB drawn at the top)"
    )
    return figure


def plot_layer_errors(csv_paths, outputs, dpi=150):
    """Snakemake entry point: ``DIAGNOSTIC_FIGURES`` from the per-layer CSVs."""
    _check_outputs(outputs, DIAGNOSTIC_FIGURES)
    # A variant its tool could not make leaves a CSV of headers only; a study without integer schemes, none.
    # Left in, a header-only frame turns every column to objects.
    tables = [table for table in (pd.read_csv(path) for path in csv_paths) if not table.empty]
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=["dataset", "scheme", "snr_db"])
    for name, draw in DIAGNOSTIC_FIGURES.items():
        save(draw(table), outputs[name], dpi)


# --------------------------------------------------------------------------- costs


def stage_costs(stages, models):
    """Two panels: job seconds per stage, and per model stacked by stage (from ``costs``' two summaries)."""
    plt = pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(13, 5.2), gridspec_kw={"width_ratios": [1, 1.4]}, layout="constrained")
    colours = dict(zip(stages.stage, plt.get_cmap("tab20").colors))
    axes[0].barh(stages.stage[::-1], stages.wall_s[::-1], color=[colours[s] for s in stages.stage[::-1]])
    for y, (value, share) in enumerate(zip(stages.wall_s[::-1], stages.share_pct[::-1])):
        axes[0].annotate(f" {value:.0f} s ({share:.0f}%)", (value, y), va="center", fontsize="small")
    axes[0].set_xlabel("job wall time, summed over jobs (s)")
    axes[0].set_title("per stage")
    axes[0].margins(x=0.3)
    if not models.empty:
        labels = [f"{dataset} / {model}" for dataset, model in zip(models.dataset, models.model)]
        left = [0.0] * len(models)
        for stage in [column for column in models.columns[2:] if column not in ("total_s", "max_rss_mb")]:
            values = models[stage].fillna(0).tolist()
            axes[1].barh(labels, values, left=left, color=colours.get(stage, "grey"), label=stage)
            left = [a + b for a, b in zip(left, values)]
        axes[1].invert_yaxis()
        axes[1].set_xlabel("job wall time, summed over the model's jobs (s)")
        axes[1].set_title("per dataset and model, by stage")
        axes[1].legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0), title="stage")
    figure.suptitle("Where the grid's time goes (Snakemake benchmark files)")
    return figure


# The study's figures by name, in groups drawn by one rule each.
RESULT_FIGURES = {
    "size_vs_accuracy": size_vs_accuracy,
    "size_per_scheme": size_per_scheme,
    "accuracy_change_heatmap": accuracy_change_heatmap,
}
# Drawn from the results, the calibration sweep and Vela's estimates, with the boards; and one tradeoff
# figure per dataset, named TRADEOFF_FIGURE_PREFIX + the dataset.
DEVICE_FIGURES = {
    "accuracy_vs_arena": accuracy_vs_arena,
    "accuracy_vs_flash": accuracy_vs_flash,
    "calibration_sweep": calibration_sweep,
    "npu_latency": npu_latency,
}
TRADEOFF_FIGURE_PREFIX = "tradeoff_"
TRAINING_FIGURES = {"learning_curves": learning_curves}
DIAGNOSTIC_FIGURES = {"layer_error": layer_error}
COST_FIGURES = {"stage_costs": stage_costs}
