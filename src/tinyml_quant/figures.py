"""Every figure of the study (matplotlib), each written to the exact paths the workflow names.

The figures are named in the tables at the end of this module (``RESULT_FIGURES``
and the others): the rules make one output per name and format and pass each
entry point ``{name: [paths]}``; a path's suffix is its format. matplotlib is
imported inside the functions that draw, because the workflow reads the names
while it parses, once per job.
"""

import math
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from .board_choice import fits, may_be_chosen
from .devices import KB, boards_from_config
from .fetch import source_description
from .files import atomic_path
from .ladder import DOES_NOT_RUN, LADDERS, PASSES, WRONG
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
# A front point this far below its own model's best is a lossy outlier, not a choice: the tradeoff
# figure's zoom does not reach down to it (the panel of every variant shows it).
DECISION_BAND_POINTS = 2.0
# The layer-error figure's panels: at most this many a row, each this size (inches), so that at the
# configured dpi (150) the figure stays within a page's width (about 2,000 px) and, with every
# integer scheme of the grid on two datasets, within two pages' height.
MAX_PANEL_COLUMNS = 3
PANEL_INCHES = (4.2, 2.1)


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
    return read_results_frame(pd.read_csv(csv_path))


def read_results_frame(table):
    """``read_results`` of a table already read: converted variants only, schemes in the study's order."""
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
            # Names the variant, for whoever reads the drawing back (the tests).
            gid=f"{row.model}/{row.seed}/{row.scheme}" if "seed" in row else None,
        )
    axes.set_xscale("log")
    axes.set_xlabel(x_label)
    axes.set_ylabel("test accuracy (%), 95% interval")
    axes.grid(True, which="both", alpha=0.3)


def label_log_axis(axes, minimum_ticks=3, which="x"):
    """Plain-number ticks (20, 50, 100) on a log axis (``which``: "x" or "y"), ``minimum_ticks`` of them in view.

    Matplotlib labels only powers of ten, so data within one decade (one
    model's variants) showed a single label. Ticks come from the 1-2-5 series,
    or every integer multiple of a power of ten where that gives too few; call
    it after everything is drawn, since lines change the limits.
    """
    plt = pyplot()
    axis = getattr(axes, f"{which}axis")
    low, high = sorted(getattr(axes, f"get_{which}lim")())
    decades = range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 1)
    for steps in ((1, 2, 5), range(1, 10)):
        ticks = [step * 10.0**decade for decade in decades for step in steps if low <= step * 10.0**decade <= high]
        if len(ticks) >= minimum_ticks:
            break
    axis.set_major_locator(plt.FixedLocator(ticks))
    axis.set_major_formatter(plt.FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(plt.NullFormatter())


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


def size_per_scheme(table):
    """File size of every model under every scheme: KB in each cell, coloured by its share of fp32's file.

    Cells, not log-scaled bars: a model's sizes span two decades across
    models, and a share of fp32 reads on one linear scale whatever the model.
    One colour scale for every panel.
    """
    table = table.assign(share=100 / table.compression_vs_fp32.astype(float))
    limit = max(100.0, float(np.nanmax(table.share, initial=0.0)))
    figure, panels = _panels(table, 4.5)
    for axis, name, part in panels:
        sizes = part.pivot_table(index="model", columns="scheme", values="size_kb", observed=True)
        shares = part.pivot_table(index="model", columns="scheme", values="share", observed=True).reindex_like(sizes)
        image = axis.imshow(shares.to_numpy(), cmap="Blues", vmin=0, vmax=limit, aspect="auto")
        axis.set_xticks(range(len(sizes.columns)), sizes.columns, rotation=35, ha="right")
        axis.set_yticks(range(len(sizes.index)), sizes.index)
        for (row, column), value in np.ndenumerate(sizes.to_numpy()):
            if np.isnan(value):
                continue
            fraction = shares.iloc[row, column]
            # White on the darkest cells, where black would not read.
            colour = "white" if fraction > 0.6 * limit else "black"
            text = f"{value:.0f}" + ("" if np.isnan(fraction) else f"\n{fraction:.0f}%")
            axis.text(column, row, text, ha="center", va="center", fontsize="x-small", color=colour)
        axis.set_title(name)
        figure.colorbar(image, ax=axis, label="file size, % of the model's fp32 file")
    how = "; ".join(filter(None, [seeds_note(table), "blank: not converted"]))
    figure.suptitle(f"File size per scheme: KB, and % of fp32 ({how})")
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


def accuracy_vs_arena(table, boards):
    """Accuracy against the TFLite Micro tensor arena (RAM), for the variants TFLite Micro runs.

    Each Cortex-M board's RAM budget (RAM less allowance) is a line: a variant
    left of it fits that board's RAM. Boards share a line where their budgets
    are equal; the legend names them, so no label is written over the data.
    Per dataset, the top panel zooms on the accuracies of the RAM-accuracy
    front (``decision_band``) and the one below shows every variant, so that
    a lossy variant far below does not flatten the rest.
    """
    plt = pyplot()
    table = table.assign(arena_kb=table.arena_bytes / KB)
    runs = table[table.tflm_status == RUNS]
    colours = model_colours(table.model)
    budgets = {}
    for board in cortex_boards(boards).values():  # an NPU board's SRAM is Vela's: fit_table and npu.csv
        budgets.setdefault(board.budget_bytes("ram") / KB, []).append(board.label)
    names = sorted(table.dataset_name.unique())
    figure, axes = plt.subplots(
        2,
        len(names),
        figsize=(6.5 * len(names), 6.5),
        squeeze=False,
        sharex="col",
        height_ratios=[3, 1.2],
        layout="constrained",
    )
    board_handles = []
    for column, name in enumerate(names):
        zoom, overview = axes[0][column], axes[1][column]
        part = runs[runs.dataset_name == name]
        for axis in (zoom, overview):
            plot_accuracy_against(part, axis, "arena_kb", "", colours)
            board_handles = draw_board_lines(axis, budgets, zorder=2)
        chosen = part[may_be_chosen(part)]
        front = list(chosen.index[pareto_front(chosen.arena_kb.to_numpy(), chosen.accuracy.to_numpy())])
        if front:
            band = decision_band(part, front)
            zoom.set_ylim(*band)
            overview.axhspan(*band, color="gold", alpha=0.18, zorder=0)
        overview.set_ylabel("accuracy (%)")
        overview.set_xlabel("tensor arena on TFLite Micro (KB, log scale)")
        label_log_axis(overview)
        zoom.set_title(f"{name}\nzoom on the front's accuracies", fontsize="medium")
        overview.set_title("every variant TFLite Micro runs (shaded: the zoom)", fontsize="small")
    refused = sorted(
        {
            f"{row.scheme} (wrong output)"
            if row.tflm_status == WRONG_OUTPUT
            else f"{row.scheme} ({row.tflm_unsupported_operator})"
            for row in table[table.tflm_status != RUNS].itertuples()
        }
    )
    figure.legend(
        handles=_legend_handles(colours, _schemes_in(runs)),
        loc="outside right center",
        fontsize="small",
        title="model, scheme",
    )
    figure.legend(
        handles=board_handles,
        loc="outside lower center",
        ncols=min(3, len(board_handles)),
        fontsize="small",
        title="each board's RAM less its allowance",
    )
    title = "Accuracy versus RAM"
    if refused:
        # Wrapped: one line per refused scheme would widen the figure past a page.
        refused_text = f"not drawn, unsupported or wrong output on TFLite Micro: {', '.join(refused)}"
        title += "\n" + textwrap.fill(refused_text, 110)
    figure.suptitle(title)
    return figure


def pareto_front(sizes, accuracies):
    """Indices of the points no other point beats on both: smaller (or as small) and more accurate, by size."""
    order = np.lexsort((-np.asarray(accuracies), np.asarray(sizes)))
    front, best = [], -np.inf
    for index in order:
        if accuracies[index] > best:
            front.append(int(index))
            best = accuracies[index]
    return front


def choice_front(rows):
    """The index labels of ``rows`` on the Pareto front of flash (``size_kb``) and accuracy, by flash.

    Only variants that ``may_be_chosen`` (made, through TFLite Micro's
    correctness gate, model above chance) take part, whatever their model: a
    variant that runs with wrong output is never on it.
    """
    chosen = rows[may_be_chosen(rows)]
    return list(chosen.index[pareto_front(chosen.size_kb.to_numpy(), chosen.accuracy.to_numpy())])


def cortex_boards(boards):
    """The boards where TensorFlow Lite Micro runs the file itself (no NPU): its size is their flash."""
    return {name: board for name, board in boards.items() if board.npu is None}


def fits_a_board(rows, fit, boards):
    """Whether each variant of ``rows`` goes on at least one board of ``boards``: through the gate, and
    fitting the board's flash and RAM as the fit table says (``board_choice.fits``)."""
    fit = fit[fit.board_name.isin(list(boards))]
    fitting = fit[fits(fit)]
    keys = set(zip(fitting.dataset, fitting.model, fitting.seed.astype(int), fitting.scheme.astype(str)))
    found = [(row.dataset, row.model, int(row.seed), str(row.scheme)) in keys for row in rows.itertuples()]
    return pd.Series(found, index=rows.index, dtype=bool) & (rows.tflm_status == RUNS)


def decision_band(rows, front):
    """``(low, high)`` accuracy (%) of the tradeoff figure's zoom: from the front's lowest choice to the top.

    The front's points that lie more than ``DECISION_BAND_POINTS`` below their
    own model's best (a lossy int4 variant that happens to be the smallest)
    do not set the bottom: they would flatten the band where the choice is
    made. Intervals are kept whole in view.
    """
    best = rows.groupby("model").accuracy.max()
    on_front = rows.loc[front]
    choices = on_front[100 * (best.loc[on_front.model].to_numpy() - on_front.accuracy) <= DECISION_BAND_POINTS]
    bottom = choices if len(choices) else rows
    low = 100 * np.nanmin([*bottom.accuracy, *bottom.get("accuracy_ci_low", [])])
    high = 100 * np.nanmax([*rows.accuracy, *rows.get("accuracy_ci_high", [])])
    pad = 0.04 * max(high - low, 0.1)
    return low - pad, high + pad


def _variant_label(row, several_seeds):
    return f"{row.model} {row.scheme}" + (f" (seed {int(row.seed)})" if several_seeds else "")


def _draw_front(axis, rows, front, right_edge, numbered=False):
    """The front as a staircase, the best accuracy for any flash budget; with ``numbered``, each point's number."""
    xs = [*rows.size_kb.loc[front], right_edge]
    ys = [*(100 * rows.accuracy.loc[front]), 100 * rows.accuracy.loc[front[-1]]]
    axis.step(xs, ys, where="post", color="black", linewidth=1.2, zorder=2, gid="pareto_front")
    if numbered:
        above, previous = False, None
        for number, index in enumerate(front, 1):
            size = rows.size_kb.loc[index]
            # Above-left; below-right instead where the previous number, close by, is above-left.
            above = not (above and previous is not None and size / previous < 1.15)
            previous = size
            axis.annotate(
                str(number),
                (size, 100 * rows.accuracy.loc[index]),
                xytext=(-4, 5) if above else (4, -6),
                textcoords="offset points",
                ha="right" if above else "left",
                va="bottom" if above else "top",
                fontsize="x-small",
                fontweight="bold",
                zorder=5,
            )


def _front_handles(rows, front):
    """The legend's list of the front: number, variant, flash and accuracy with its interval."""
    plt = pyplot()
    several_seeds = rows.seed.nunique() > 1
    handles = []
    for number, index in enumerate(front, 1):
        row = rows.loc[index]
        interval = (
            f" [{100 * row.accuracy_ci_low:.2f}, {100 * row.accuracy_ci_high:.2f}]"
            if pd.notna(row.get("accuracy_ci_low"))
            else ""
        )
        label = (
            f"{number}  {_variant_label(row, several_seeds)}: {row.size_kb:.0f} KB, {100 * row.accuracy:.2f}%{interval}"
        )
        handles.append(plt.Line2D([], [], linestyle="", label=label))
    return handles


def _draw_memory(axis, rows, boards, colours, deployable, budgets_style, low, high):
    """Flash against TFLite Micro's arena; each Cortex-M board a box (its flash and RAM budgets) with its label.

    A variant inside a board's box fits that board.
    """
    shown = rows[rows.arena_bytes.notna()]
    for index, row in shown.iterrows():
        filled = bool(deployable.loc[index])
        axis.scatter(
            row.size_kb,
            row.arena_bytes / KB,
            facecolors=colours[row.model] if filled else "none",
            edgecolors="black" if filled else colours[row.model],
            marker=SCHEME_MARKERS[row.scheme],
            s=40,
            linewidths=0.5 if filled else 1.0,
            zorder=3,
        )
    wrong = shown[shown.tflm_status == WRONG_OUTPUT]
    axis.scatter(
        wrong.size_kb, wrong.arena_bytes / KB, marker="x", s=70, color=WRONG_OUTPUT_COLOUR, linewidths=1.6, zorder=4
    )
    axis.set_yscale("log")
    arenas = shown.arena_bytes / KB
    rams = [board.budget_bytes("ram") / KB for board in boards.values()]
    bottom = min([*arenas, *rams]) / 1.6 if len(arenas) or rams else 1
    top = max([*arenas, *rams]) * 1.6 if len(arenas) or rams else 10
    axis.set_ylim(bottom, top)
    # By RAM, labels alternate under and over their box's top: boards of close RAM would write over each other.
    for order, board in enumerate(sorted(boards.values(), key=lambda board: board.budget_bytes("ram"))):
        flash, ram = board.budget_bytes("flash") / KB, board.budget_bytes("ram") / KB
        colour, style = budgets_style.get(flash, ("dimgrey", "-"))
        axis.plot([low, flash, flash], [ram, ram, bottom], color=colour, linestyle=style, linewidth=1.1, zorder=1)
        axis.annotate(
            board.label,
            (min(flash, high), ram),
            xytext=(-3, -2 if order % 2 == 0 else 2),
            textcoords="offset points",
            ha="right",
            va="top" if order % 2 == 0 else "bottom",
            fontsize="x-small",
            color="dimgrey",
        )
    label_log_axis(axis, which="y")
    axis.set_ylabel("RAM: TFLite Micro arena\n(KB, log scale)")
    axis.grid(True, which="both", alpha=0.3)


def tradeoff(table, fit, boards, dataset):
    """What to choose on one dataset: absolute accuracy against flash for every variant of every model.

    Three panels share the flash axis. The top one zooms on the decision band
    (``decision_band``), the middle one shows every variant, so that a lossy
    int4 variant far below neither flattens the band nor disappears; the
    bottom one draws flash against TFLite Micro's arena with each Cortex-M
    board as a box. The Pareto front runs over every model, among the
    variants that may be chosen (``choice_front``). Each Cortex-M board's
    flash budget is a vertical line; a hollow marker goes on no board (TFLite
    Micro cannot run it, or it fits no board's flash and RAM: the fit table);
    a red cross runs with wrong output. NPU boards run Vela's compilation,
    whose flash is not the file's: they are in the fit table and ``npu_latency``.
    """
    plt = pyplot()
    rows = table[table.dataset == dataset].copy()
    cortex = cortex_boards(boards)
    colours = model_colours(rows.model)
    deployable = fits_a_board(rows, fit, cortex)
    front = choice_front(rows)
    several_seeds = rows.seed.nunique() > 1
    low, high = rows.size_kb.min() / 1.5, rows.size_kb.max() * 1.5
    band = decision_band(rows, front)

    figure, (zoom, overview, memory) = plt.subplots(
        3, 1, figsize=(10.5, 11), sharex=True, height_ratios=[3, 1.3, 2], layout="constrained"
    )
    budgets, beyond = {}, []
    for board in cortex.values():
        budget = board.budget_bytes("flash") / KB
        if budget <= high:
            budgets.setdefault(budget, []).append(board)
        else:
            beyond.append(board)
    budgets_style = {}
    board_handles = []
    for index, (budget, group) in enumerate(sorted(budgets.items())):
        style = (
            BOARD_LINE_COLOURS[index % len(BOARD_LINE_COLOURS)],
            BOARD_LINE_STYLES[index % len(BOARD_LINE_STYLES)],
        )
        budgets_style[budget] = style
        for axis in (zoom, overview):
            axis.axvline(budget, color=style[0], linestyle=style[1], linewidth=1.2, zorder=1)
        names = ", ".join(f"{board.label} ({board.budget_bytes('ram') / KB:.0f})" for board in group)
        board_handles.append(plt.Line2D([], [], color=style[0], linestyle=style[1], label=f"{budget:.0f} KB: {names}"))
    if any(board.npu for board in boards.values()):
        board_handles.append(
            plt.Line2D([], [], linestyle="", label="an NPU board stores Vela's compilation: fit_table, npu_latency")
        )
    if beyond:
        names = ", ".join(
            f"{board.label} ({board.budget_bytes('flash') / KB:.0f} / {board.budget_bytes('ram') / KB:.0f})"
            for board in beyond
        )
        board_handles.append(plt.Line2D([], [], linestyle="", label=f"more than every variant: {names}"))

    for axis in (zoom, overview):
        plot_accuracy_against(rows, axis, "size_kb", "", colours, hollow=~deployable)
        wrong = rows[rows.tflm_status == WRONG_OUTPUT]
        axis.scatter(
            wrong.size_kb, 100 * wrong.accuracy, marker="x", s=90, color=WRONG_OUTPUT_COLOUR, linewidths=1.8, zorder=4
        )
        if front:
            _draw_front(axis, rows, front, high, numbered=axis is zoom)
        axis.set_xlabel("")
    zoom.set_ylim(*band)
    zoom.set_ylabel("LiteRT top-1 accuracy (%), 95 % interval")
    zoom.set_title("zoom on the front's accuracies, where the choice is made", fontsize="medium")
    overview.axhspan(*band, color="gold", alpha=0.18, zorder=0)
    overview.set_ylabel("accuracy (%)")
    overview.set_title("every variant (shaded: the zoom above)", fontsize="medium")
    _draw_memory(memory, rows, cortex, colours, deployable, budgets_style, low, high)
    memory.set_title("flash and RAM: inside a board's box, the variant fits that board", fontsize="medium")
    memory.set_xscale("log")
    memory.set_xlim(low, high)
    memory.set_xlabel("flash: the .tflite file (KB, log scale)")
    label_log_axis(memory)

    handles = _legend_handles(
        colours, _schemes_in(rows), "hollow: on no board (TFLite Micro\ncannot run it, or too big)"
    )
    if (rows.tflm_status == WRONG_OUTPUT).any():
        handles.append(
            plt.Line2D(
                [], [], marker="x", linestyle="", color=WRONG_OUTPUT_COLOUR, label="runs, wrong output\n(never chosen)"
            )
        )
    if front:
        handles.append(
            plt.Line2D([], [], color="black", linewidth=1.2, label="Pareto front (through\nthe gate, every model)")
        )
    figure.legend(handles=handles, loc="outside right upper", fontsize="small", title="model, scheme")
    if front:
        figure.legend(
            handles=_front_handles(rows, front),
            loc="outside right lower",
            fontsize="x-small",
            handlelength=0,
            title="the front, by flash: LiteRT accuracy [95 %]",
            title_fontsize="small",
        )
    figure.legend(
        handles=board_handles,
        loc="outside lower left",
        ncols=1,
        fontsize="small",
        title="each Cortex-M board's flash less its allowance: boards (their RAM less allowance, KB)",
    )
    name = rows.dataset_name.iloc[0]
    description = source_description(dataset, name)
    seeds = ", every seed a point" if several_seeds else ""
    figure.suptitle(
        "\n".join(filter(None, [f"What to choose on {name}", description, f"every variant of every model{seeds}"]))
    )
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
        ["accuracy", "accuracy_ci_low", "accuracy_ci_high", "tflm_status"]
    ]
    merged = compiled.join(accuracy, on=["dataset", "model", "seed", "scheme"], how="inner")
    merged = merged.merge(table[["dataset", "dataset_name"]].drop_duplicates(), on="dataset")
    datasets = sorted(merged.dataset_name.unique()) or ["(no variant compiled)"]
    npu_boards = [board for board in boards.values() if board.npu]
    figure, axes = plt.subplots(
        len(datasets),
        max(1, len(npu_boards)),
        figsize=(4.2 * max(1, len(npu_boards)), 3.8 * len(datasets) + 1.2),
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
                # TFLite Micro runs what Vela leaves to the CPU: a variant that fails its gate is wrong here too.
                wrong = part[part.tflm_status == WRONG_OUTPUT]
                axis.scatter(
                    wrong.inference_ms_estimate,
                    100 * wrong.accuracy,
                    marker="x",
                    s=90,
                    color=WRONG_OUTPUT_COLOUR,
                    linewidths=1.8,
                    zorder=4,
                )
                label_log_axis(axis)
            axis.set_title(f"{dataset_name}\n{board.label}: {board.npu['accelerator']}", fontsize="medium")
    handles = _legend_handles(colours, _schemes_in(merged if len(merged) else table))
    if (merged.tflm_status == WRONG_OUTPUT).any():
        handles.append(
            plt.Line2D([], [], marker="x", linestyle="", color=WRONG_OUTPUT_COLOUR, label="runs, wrong output")
        )
    # Below the panels, not beside them: three boards' panels and a legend beside were wider than a page.
    figure.legend(handles=handles, loc="outside lower center", ncols=min(8, len(handles)), fontsize="small")
    figure.suptitle(title)
    return figure


def tradeoff_figure_names(datasets):
    """The names of the tradeoff ("what to choose") figures: one per dataset of the study."""
    return [f"{TRADEOFF_FIGURE_PREFIX}{dataset}" for dataset in datasets]


def plot_device_fit(csv_path, fit_csv_path, calibration_csv_path, npu_csv_path, board_entries, outputs, dpi=150):
    """Snakemake entry point: ``DEVICE_FIGURES`` and the tradeoff figure of every dataset of ``outputs``.

    ``fit_csv_path`` is the fit table (``devices.fit_table``): which variant fits which board.
    """
    _check_outputs(outputs, DEVICE_FIGURES)
    boards = boards_from_config(board_entries)
    table = read_results(csv_path)
    fit = pd.read_csv(fit_csv_path)
    calibration = pd.read_csv(calibration_csv_path) if Path(calibration_csv_path).stat().st_size > 1 else pd.DataFrame()
    npu = pd.read_csv(npu_csv_path) if Path(npu_csv_path).stat().st_size > 1 else pd.DataFrame()
    drawings = {
        "accuracy_vs_arena": lambda: accuracy_vs_arena(table, boards),
        "calibration_sweep": lambda: calibration_sweep(calibration),
        "npu_latency": lambda: npu_latency(table, npu, boards),
    }
    for name in DEVICE_FIGURES:
        save(drawings[name](), outputs[name], dpi)
    for name, paths in outputs.items():
        if name.startswith(TRADEOFF_FIGURE_PREFIX):
            save(tradeoff(table, fit, boards, name.removeprefix(TRADEOFF_FIGURE_PREFIX)), paths, dpi)


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


def layer_panels(datasets, schemes):
    """``(rows, columns, [(dataset, scheme)])`` of the layer-error figure: a row per scheme and a column per
    dataset while there are at most ``MAX_PANEL_COLUMNS`` datasets; beyond, the panels wrap, that many a row.

    Wide enough to compare datasets, never wider than a page: one row of a panel per pair made it 4,140 px.
    """
    panels = [(dataset, scheme) for scheme in schemes for dataset in datasets]
    columns = len(datasets) if 1 < len(datasets) <= MAX_PANEL_COLUMNS else min(MAX_PANEL_COLUMNS, len(panels))
    return math.ceil(len(panels) / columns), columns, panels


def layer_error(table):
    """Signal-to-quantization-noise ratio of every layer, by depth.

    One panel per dataset and scheme (``layer_panels``), one line per model
    and seed; depth 0 is the first quantized layer, 1 the last.
    """
    plt = pyplot()
    title = "Quantization error by layer"
    if table.empty:
        return nothing_to_show(title, "no integer variant was converted in this study: no quantized layer to compare")
    datasets = sorted(table.dataset.unique())
    schemes = [scheme for scheme in SCHEMES if scheme in set(table.scheme)]
    rows, columns, panels = layer_panels(datasets, schemes)
    colours = model_colours(table.model)
    figure, axes = plt.subplots(
        rows,
        columns,
        figsize=(PANEL_INCHES[0] * columns, PANEL_INCHES[1] * rows + 0.8),
        squeeze=False,
        sharex=True,
        sharey=True,
        layout="constrained",
    )
    flat = list(axes.flat)
    for axis, (dataset, scheme) in zip(flat, panels):
        part = table[(table.dataset == dataset) & (table.scheme == scheme)]
        # One line per trained model: each seed of a model in the model's colour.
        for (model, _), layers in part.groupby(["model", "seed"] if "seed" in part else ["model", "dataset"]):
            # Exact layers (a padding, SNR near float precision) would flatten the rest: drawn at the top.
            shown = np.minimum(layers.snr_db, SNR_CEILING_DB)
            axis.plot(layers.depth, shown, marker=".", markersize=3, color=colours[model], linewidth=1)
        axis.set_title(f"{dataset}, {scheme}", fontsize="medium")
        axis.grid(True, alpha=0.3)
    for axis in flat[len(panels) :]:
        axis.set_visible(False)
    for axis in axes[:, 0]:
        axis.set_ylabel("SNR vs fp32 (dB)")
    # The bottom panel of each column carries the shared x axis's label (a hidden one, the one above it).
    for column in range(columns):
        visible = [axes[row][column] for row in range(rows) if axes[row][column].get_visible()]
        visible[-1].set_xlabel("layer depth (0: first, 1: last)")
        visible[-1].xaxis.set_tick_params(labelbottom=True)
    # Set once for the shared axis, after every panel is drawn: a limit set on the first panel
    # alone would cut off the layers of a lossier scheme drawn later.
    shown = np.minimum(table.snr_db[np.isfinite(table.snr_db)], SNR_CEILING_DB)
    axes[0][0].set_ylim(bottom=shown.min() - 2 if len(shown) else 0, top=SNR_CEILING_DB + 2)
    handles = [plt.Line2D([], [], color=colour, label=model) for model, colour in colours.items()]
    figure.legend(handles=handles, loc="outside lower center", ncols=min(6, len(handles)), fontsize="small")
    figure.suptitle(
        f"{title}: signal-to-noise ratio of each layer's output against the fp32 model\n"
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


# --------------------------------------------------------------------------- recovery ladder


def recovery_ladder(ladder):
    """Each lossy scheme's rungs (``ladder.LADDERS``): the accuracy change against fp32, a line per model.

    One panel per dataset (row) and lossy scheme (column), each with its own
    scale (int4 can lose ten times what int8_lut does). Each model's points sit
    side by side at a rung, with the bar of the variant's 95 % Wilson interval;
    filled: it passes TFLite Micro's gate; hollow: it does not run there; a red
    cross over it: it runs with wrong output. A rung not made has no point.
    """
    plt = pyplot()
    title = "Recovery ladder: each step's accuracy change against fp32"
    made = ladder[ladder.made.astype(bool)]
    if made.empty:
        return nothing_to_show(title, "no lossy scheme (int4, int8_lut, int8_per_tensor) was made in this study")
    datasets = sorted(ladder.dataset_name.unique())
    schemes = [scheme for scheme in LADDERS if scheme in set(ladder.ladder)]
    figure, axes = plt.subplots(
        len(datasets),
        len(schemes),
        figsize=(PANEL_INCHES[0] * len(schemes), 3.0 * len(datasets) + 1.0),
        squeeze=False,
        layout="constrained",
    )
    colours = model_colours(ladder.model)
    # Each model a fixed step aside, so that intervals at one rung do not hide each other.
    step = 0.6 / max(1, len(colours))
    offsets = {model: (index - (len(colours) - 1) / 2) * step for index, model in enumerate(colours)}
    for row, dataset in enumerate(datasets):
        for column, scheme in enumerate(schemes):
            axis = axes[row][column]
            rungs = list(LADDERS[scheme])
            part = made[(made.dataset_name == dataset) & (made.ladder == scheme)]
            for (model, _), points in part.groupby(["model", "seed"], sort=True):
                points = points.sort_values("rung_index")
                x = points.rung.map(rungs.index).to_numpy(float) + offsets[model]
                change = points.accuracy_change_vs_fp32.to_numpy(float)
                colour = colours[model]
                axis.plot(x, change, color=colour, linewidth=0.9, alpha=0.7, zorder=2)
                below = 100 * (points.accuracy - points.accuracy_ci_low).to_numpy(float)
                above = 100 * (points.accuracy_ci_high - points.accuracy).to_numpy(float)
                axis.errorbar(x, change, yerr=[below, above], fmt="none", ecolor=colour, linewidth=0.8, zorder=2)
                filled = (points.tflm_verdict == PASSES).to_numpy()
                axis.scatter(x[filled], change[filled], color=colour, s=28, zorder=3)
                axis.scatter(
                    x[~filled], change[~filled], facecolors="white", edgecolors=colour, linewidths=1.2, s=28, zorder=3
                )
                wrong = (points.tflm_verdict == WRONG).to_numpy()
                axis.scatter(
                    x[wrong], change[wrong], marker="x", color=WRONG_OUTPUT_COLOUR, s=60, linewidths=1.6, zorder=4
                )
            axis.axhline(0, color="grey", linewidth=0.8, zorder=1)
            axis.set_xticks(range(len(rungs)), [rung.replace(" ", "\n") for rung in rungs], fontsize="small")
            axis.set_xlim(-0.5, len(rungs) - 0.5)
            axis.set_title(f"{dataset}: {scheme}", fontsize="medium")
            axis.grid(True, axis="y", alpha=0.3)
            if column == 0:
                axis.set_ylabel("accuracy change vs fp32 (points)")
    handles = [plt.Line2D([], [], color=colour, marker="o", label=model) for model, colour in colours.items()]
    handles += [
        plt.Line2D([], [], color="grey", marker="o", linestyle="", label=f"TFLite Micro: {PASSES}"),
        plt.Line2D([], [], color="grey", marker="o", markerfacecolor="white", linestyle="", label=DOES_NOT_RUN),
        plt.Line2D([], [], color=WRONG_OUTPUT_COLOUR, marker="x", linestyle="", label=f"runs, {WRONG}"),
    ]
    figure.legend(handles=handles, loc="outside lower center", ncols=min(5, len(handles)), fontsize="small")
    figure.suptitle(
        f"{title}\n(bars: the variant's 95 % Wilson interval; a rung not made has no point; "
        "better ranges: the more accurate of int4_octav and int4_mse)",
        fontsize="medium",
    )
    return figure


def plot_recovery_ladder(csv_path, outputs, dpi=150):
    """Snakemake entry point: ``LADDER_FIGURES`` from recovery_ladder.csv."""
    _check_outputs(outputs, LADDER_FIGURES)
    for name, draw in LADDER_FIGURES.items():
        save(draw(pd.read_csv(csv_path)), outputs[name], dpi)


# --------------------------------------------------------------------------- costs


def stage_costs(stages, models):
    """Two panels: job seconds per stage, and per model stacked by stage (from ``costs``' two summaries)."""
    plt = pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(13, 5.2), gridspec_kw={"width_ratios": [1, 1.4]}, layout="constrained")
    palette = plt.get_cmap("tab20").colors  # more stages than colours: they repeat, the bars are labelled
    colours = {stage: palette[index % len(palette)] for index, stage in enumerate(stages.stage)}
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
    "size_per_scheme": size_per_scheme,
    "accuracy_change_heatmap": accuracy_change_heatmap,
}
# Drawn from the results, the fit table, the calibration sweep and Vela's estimates, with the boards; and
# one tradeoff ("what to choose") figure per dataset, named TRADEOFF_FIGURE_PREFIX + the dataset.
DEVICE_FIGURES = {
    "accuracy_vs_arena": accuracy_vs_arena,
    "calibration_sweep": calibration_sweep,
    "npu_latency": npu_latency,
}
TRADEOFF_FIGURE_PREFIX = "tradeoff_"
TRAINING_FIGURES = {"learning_curves": learning_curves}
DIAGNOSTIC_FIGURES = {"layer_error": layer_error}
LADDER_FIGURES = {"recovery_ladder": recovery_ladder}
COST_FIGURES = {"stage_costs": stage_costs}
