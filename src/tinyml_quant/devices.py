"""Microcontroller boards, whether a variant fits on them, and how fast it runs there (an estimate).

A board comes from the config's ``boards`` list (sizes in KB = 1024 bytes):
``name`` (a key of ``[a-z0-9_]+``), ``label`` (how reports call it),
``flash_kb`` and ``ram_kb`` (what the chip has), ``flash_allowance_kb`` and
``ram_allowance_kb`` (what the rest of the firmware takes first), its ``cpu``
and ``clock_mhz``, and for a board with an Arm Ethos-U NPU its ``npu``
configuration (Vela's accelerator, system configuration and memory mode).

On a board without an NPU, TensorFlow Lite Micro runs the variant: it fits
when ``file bytes + flash allowance <= flash`` and ``arena bytes + RAM
allowance <= RAM`` (the arena measured by ``micro``), and its latency is the
Cortex-M range of ``cortex_m``. On an NPU board, Vela's compiled model must
fit: its SRAM and flash (``npu``) plus the allowances, and its latency is
Vela's estimate.

``boards_from_config`` is the one place boards are checked beyond their types
(the schema checks those): unique names, allowances within the memory. The
docs/microcontrollers.md cites each default board's figures and explains the allowances.
"""

import math
import numbers
import re
import signal
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import cortex_m
from .files import read_json, write_csv, write_text
from .micro import RUNS, STATUSES, WRONG_OUTPUT
from .npu import COMPILED
from .schemes import MICRO_COMPRESSION, describe
from .statistics import AT_CHANCE, is_at_chance
from .variants import NOT_CONVERTED

KB = 1024
MEMORIES = ("flash", "ram")


@dataclass(frozen=True)
class Board:
    name: str
    label: str
    flash_bytes: int
    ram_bytes: int
    flash_allowance_bytes: int
    ram_allowance_bytes: int
    cpu: str = ""
    clock_mhz: float = 0.0
    npu: dict = None

    def budget_bytes(self, memory):
        """What the model may use of ``memory`` ("flash" or "ram"): the memory less its allowance."""
        return getattr(self, f"{memory}_bytes") - getattr(self, f"{memory}_allowance_bytes")


def board_from_config(entry, position=0):
    """A ``Board`` from one config entry; ValueError naming ``boards[position]`` and the key."""
    where = f"boards[{position}] ({entry.get('name', '?')})"
    for key in ("name", "flash_kb", "ram_kb", "flash_allowance_kb", "ram_allowance_kb"):
        if key not in entry:
            raise ValueError(f"{where}: {key} is missing")
    for key in ("flash_kb", "ram_kb", "flash_allowance_kb", "ram_allowance_kb"):
        value = entry[key]
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{where}.{key}: must be a non-negative integer, got {value!r}")
    for memory in MEMORIES:
        if entry[f"{memory}_allowance_kb"] > entry[f"{memory}_kb"]:
            raise ValueError(
                f"{where}.{memory}_allowance_kb: {entry[f'{memory}_allowance_kb']} is more than "
                f"{memory}_kb {entry[f'{memory}_kb']}; the allowance is taken from that memory"
            )
    return Board(
        name=entry["name"],
        label=entry.get("label", entry["name"]),
        **{f"{memory}_bytes": int(entry[f"{memory}_kb"]) * KB for memory in ("flash", "ram")},
        **{f"{memory}_allowance_bytes": int(entry[f"{memory}_allowance_kb"]) * KB for memory in ("flash", "ram")},
        cpu=entry.get("cpu", ""),
        clock_mhz=float(entry.get("clock_mhz", 0.0)),
        npu=dict(entry["npu"]) if entry.get("npu") else None,
    )


def boards_from_config(entries):
    """``{name: Board}`` for the config's ``boards`` list; ValueError for an empty list or a repeated name."""
    if not entries:
        raise ValueError("boards: the list is empty; the fit table needs at least one board")
    boards = {}
    for position, entry in enumerate(entries):
        board = board_from_config(entry, position)
        if board.name in boards:
            raise ValueError(f"boards[{position}].name: {board.name!r} is used by an earlier board; names must differ")
        boards[board.name] = board
    return boards


def _is_count(value):
    """A non-negative integer, numpy's included; booleans are not counts."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0


def _kilobytes_over(excess_bytes):
    """Whole KB, rounded up, so a variant over by one byte never reads "+0 KB"."""
    return math.ceil(excess_bytes / KB)


FITS = "fits"
WRONG_OUTPUT_CELL = "wrong output"
NOT_FOR_THE_NPU = "not for the NPU (float)"
# Where a latency comes from, as the board table says it and as a fit table cell shortens it.
VELA_ESTIMATE = "Vela estimate"
CORTEX_RANGE = "Cortex-M range, MLPerf Tiny-derived"
SHORT_SOURCE = {VELA_ESTIMATE: "Vela est.", CORTEX_RANGE: "Cortex-M range, est."}


def decodes_weights(scheme):
    """Whether a scheme's int8 layers first decode their weights (4-bit values, or LUT indices) on the device.

    The Cortex-M range's cycles per MAC are int8 models' on CMSIS-NN, which
    read int8 weights as they are: for these schemes it leaves the decoding out
    and is a lower bound. A mixed-precision variant decodes what its scheme's do.
    """
    scheme = describe(scheme)
    return scheme.tool == MICRO_COMPRESSION or "int4" in scheme.weights


def excess_cell(flash_over, ram_over):
    """``"fits"``, ``"flash +284 KB"``, ``"RAM +99 KB"`` or ``"flash +206 KB, RAM +157 KB"``: what the board lacks."""
    problems = []
    if flash_over > 0:
        problems.append(f"flash +{_kilobytes_over(flash_over)} KB")
    if ram_over > 0:
        problems.append(f"RAM +{_kilobytes_over(ram_over)} KB")
    return ", ".join(problems) if problems else FITS


def wrong_output_reason(agreement, steps=None):
    """The full reason of a variant TFLite Micro computes wrongly, with its top-1 agreement and steps if measured."""
    measured = []
    if agreement is not None and not pd.isna(agreement):
        measured.append(f"{100 * agreement:.1f}% top-1 agreement")
    if steps is not None and not pd.isna(steps):
        measured.append(f"up to {int(steps)} output steps apart")
    return "TensorFlow Lite Micro's outputs fail the correctness gate against LiteRT" + (
        f" ({', '.join(measured)})" if measured else ""
    )


def fit_verdict(file_bytes, arena_bytes, status, board):
    """``"fits"``, what the board lacks (``excess_cell``), ``"wrong output"`` or ``"unsupported"``.

    ``status`` is a TFLite Micro status (``micro.STATUSES``); an unsupported
    variant has no arena and needs no numbers; one that runs with wrong output
    fits nowhere, whatever its size.
    """
    if status not in STATUSES:
        raise ValueError(f"unknown TFLite Micro status {status!r}; known: {list(STATUSES)}")
    if status == WRONG_OUTPUT:
        return WRONG_OUTPUT_CELL
    if status != RUNS:
        return "unsupported"
    for name, value in (("file_bytes", file_bytes), ("arena_bytes", arena_bytes)):
        if not _is_count(value):
            raise ValueError(f"{name} must be a non-negative integer for a variant that runs, got {value!r}")
    return excess_cell(file_bytes - board.budget_bytes("flash"), arena_bytes - board.budget_bytes("ram"))


def vela_failure_cell(reason):
    """A short cell for Vela's failure: ``"Vela crashed (SIGFPE)"``, ``"Vela failed (exit 2)"``, or timed out."""
    reason = reason or ""
    crash = re.match(r"Vela ended with signal (\d+)", reason)
    if crash:
        try:
            return f"Vela crashed ({signal.Signals(int(crash.group(1))).name})"
        except ValueError:
            return f"Vela crashed (signal {crash.group(1)})"
    failed = re.match(r"Vela ended with exit status (\d+)", reason)
    if failed:
        return f"Vela failed (exit {failed.group(1)})"
    if reason.startswith("Vela did not finish"):
        return "Vela timed out"
    return "Vela failed"


def npu_fit_verdict(record, board):
    """The verdict of Vela's compiled model on an NPU board: its SRAM and flash against the board's budgets."""
    if record is not None and record.get("status") == NOT_CONVERTED:
        return NOT_CONVERTED
    if record is None:
        return "unsupported"
    if record.get("status") != COMPILED:
        return vela_failure_cell(record.get("reason"))
    return excess_cell(
        record["flash_kb"] * KB - board.budget_bytes("flash"), record["sram_kb"] * KB - board.budget_bytes("ram")
    )


def memory_needs(variant, board, npu_record):
    """``(flash bytes, RAM bytes)`` the variant takes of the board's budgets; ``(None, None)`` when unknown.

    TFLite Micro's file and arena on a Cortex-M board (also for a variant that
    runs with wrong output: what it would need); Vela's flash and SRAM on an
    NPU board, where a float variant never goes.
    """
    if board.npu:
        if not_for_the_npu(variant.scheme) or npu_record is None or npu_record.get("status") != COMPILED:
            return None, None
        return npu_record["flash_kb"] * KB, npu_record["sram_kb"] * KB
    if variant.status == NOT_CONVERTED or pd.isna(variant.file_bytes) or pd.isna(variant.arena_bytes):
        return None, None
    return int(variant.file_bytes), int(variant.arena_bytes)


def latency_estimate(variant, board, npu_record, cortex_reference):
    """``(low ms, high ms, kind, source)`` of a variant on a board: Vela's estimate, or the Cortex-M range.

    ``kind`` is ``VELA_ESTIMATE`` or ``CORTEX_RANGE`` (None without an
    estimate), ``source`` says how it was made or why there is none. The
    Cortex-M range is calibrated on int8 models on CMSIS-NN's kernels, so only
    variants with int8 activations get it.
    """
    if board.npu:
        if npu_record is None or npu_record.get("status") != COMPILED:
            return None, None, None, "no estimate: Vela did not compile it"
        milliseconds, clock_mhz = npu_record["inference_ms"], npu_record["clock_hz"] / 1e6
        return milliseconds, milliseconds, VELA_ESTIMATE, f"Vela's cycles at the board's {clock_mhz:g} MHz NPU clock"
    if variant.tflm_status != RUNS or pd.isna(variant.macs) or not board.clock_mhz:
        return None, None, None, "no estimate"
    if describe(variant.scheme).activations != cortex_m.ESTIMATED_ACTIVATIONS:
        return None, None, None, f"no estimate: the range is from {cortex_m.ESTIMATED_ACTIVATIONS} models"
    reference_board = cortex_reference["board"]
    if not cortex_m.applies(cortex_reference, board.cpu):
        return None, None, None, f"no estimate for a {board.cpu} (the range is from the {reference_board})"
    low, high = cortex_m.variant_range_ms(int(variant.macs), board.clock_mhz, cortex_reference)
    source = f"estimate from MLPerf Tiny's cycles per MAC on the {reference_board}, at {board.clock_mhz:g} MHz"
    if decodes_weights(variant.scheme):
        source += "; a lower bound: int8's cycles per MAC leave out decoding the weights"
    return low, high, CORTEX_RANGE, source


def not_for_the_npu(scheme):
    """Whether a scheme's variants never go to Vela: the NPU computes in integers only."""
    return not describe(scheme).activations.startswith("int")


def _reason(variant, board, npu_record):
    """The full reason behind a cell that is neither a fit nor a shortfall: the tool's own words."""
    if board.npu and not_for_the_npu(variant.scheme):
        return None
    if variant.tflm_status == WRONG_OUTPUT:
        return wrong_output_reason(variant.tflm_top1_agreement, getattr(variant, "tflm_max_difference_steps", None))
    if board.npu:
        if npu_record is not None and npu_record.get("status") != COMPILED:
            return npu_record.get("reason")
        return None if npu_record is not None else "no Vela estimate of this variant"
    if variant.status == NOT_CONVERTED:
        return getattr(variant, "reason", None)
    if variant.tflm_status != RUNS:
        operator = getattr(variant, "tflm_unsupported_operator", None)
        return "TensorFlow Lite Micro cannot run it" + ("" if pd.isna(operator) else f" (operator {operator})")
    return None


def _verdict(variant, board, npu_record, arena_bytes):
    # An NPU board runs Vela's compilation of the variant file (for int8_lut the binned model, not
    # TFLite Micro's compressed file): its own record says whether that was made.
    if board.npu and not_for_the_npu(variant.scheme):
        return NOT_FOR_THE_NPU
    if variant.tflm_status == WRONG_OUTPUT:
        # The gate is TFLite Micro's, which also runs what Vela leaves to the CPU: no board gets the file.
        return WRONG_OUTPUT_CELL
    if board.npu:
        return npu_fit_verdict(npu_record, board)
    if variant.status == NOT_CONVERTED:
        return NOT_CONVERTED
    if variant.tflm_status not in STATUSES or variant.tflm_status != RUNS:
        operator = getattr(variant, "tflm_unsupported_operator", None)
        return "unsupported" + ("" if pd.isna(operator) else f" ({operator})")
    return fit_verdict(int(variant.file_bytes), arena_bytes, variant.tflm_status, board)


def fit_table(results, boards, npu_records=None, cortex_reference=None):
    """One row per variant of ``results`` and board: the verdict, what it needs of the board, the latency estimate.

    ``npu_records`` maps ``(dataset, model, seed, scheme, board)`` to Vela's
    record. ``flash_over_kb`` and ``ram_over_kb`` are what the variant needs
    beyond the board's budgets (negative: room left), from TFLite Micro's file
    and arena or, on an NPU board, Vela's flash and SRAM (``memory_needs``).
    """
    npu_records = npu_records or {}
    rows = []
    for variant in results.itertuples():
        arena_bytes = None if pd.isna(variant.arena_bytes) else int(variant.arena_bytes)
        for board in boards.values():
            key = (variant.dataset, variant.model, int(variant.seed), variant.scheme, board.name)
            npu_record = npu_records.get(key)
            flash_need, ram_need = memory_needs(variant, board, npu_record)
            low, high, kind, source = latency_estimate(variant, board, npu_record, cortex_reference)
            if variant.tflm_status == WRONG_OUTPUT:
                low, high, kind, source = None, None, None, "no estimate: wrong output on TensorFlow Lite Micro"
            rows.append(
                {
                    "dataset": variant.dataset,
                    "dataset_name": variant.dataset_name,
                    "model": variant.model,
                    # A results table made before models were judged has no judgement: nothing is marked.
                    "above_chance": getattr(variant, "above_chance", None),
                    "seed": int(variant.seed),
                    "scheme": variant.scheme,
                    "board": board.label,
                    "board_name": board.name,
                    "target": f"{board.cpu} + {board.npu['accelerator']}" if board.npu else board.cpu,
                    "flash_kb": None if pd.isna(variant.file_bytes) else variant.file_bytes / KB,
                    "arena_kb": None if arena_bytes is None else arena_bytes / KB,
                    "npu_sram_kb": npu_record.get("sram_kb") if npu_record else None,
                    "npu_flash_kb": npu_record.get("flash_kb") if npu_record else None,
                    "memory_source": None if flash_need is None else ("Vela" if board.npu else "TensorFlow Lite Micro"),
                    "flash_need_kb": None if flash_need is None else flash_need / KB,
                    "ram_need_kb": None if ram_need is None else ram_need / KB,
                    "flash_over_kb": None if flash_need is None else (flash_need - board.budget_bytes("flash")) / KB,
                    "ram_over_kb": None if ram_need is None else (ram_need - board.budget_bytes("ram")) / KB,
                    "verdict": _verdict(variant, board, npu_record, arena_bytes),
                    "reason": _reason(variant, board, npu_record),
                    "latency_low_ms": low,
                    "latency_high_ms": high,
                    "latency_kind": kind,
                    "latency_lower_bound": kind == CORTEX_RANGE and decodes_weights(variant.scheme),
                    "latency_source": source,
                }
            )
    return pd.DataFrame(rows)


def milliseconds_text(value):
    """Whole milliseconds from 10 ms on, two significant digits below: ``"288"``, ``"5.1"``, ``"0.11"``."""
    return f"{value:.0f}" if value >= 10 else f"{value:.2g}"


def latency_cell(low, high, kind, lower_bound=False):
    """``"71-288 ms (Cortex-M range, est.)"``, ``"5.1 ms (Vela est.)"``; ``"at least ..."`` for a lower bound."""
    if low is None or pd.isna(low):
        return ""
    if high is None or pd.isna(high) or np.isclose(low, high):
        text = f"{milliseconds_text(low)} ms"
    else:
        text = f"{milliseconds_text(low)}-{milliseconds_text(high)} ms"
    return f"{'at least ' if lower_bound else ''}{text} ({SHORT_SOURCE[kind]})"


def _kilobytes_cell(value):
    return "-" if value is None or pd.isna(value) else f"{value:.0f}"


def fit_markdown(table, boards, cortex_reference=None):
    """Per dataset, variant x board: a short verdict and the latency estimate; the boards, sources and reasons."""
    reference_board = (cortex_reference or {}).get("board", "a Cortex-M board")
    lines = [
        "# Will it fit, and how fast? Every TFLite variant on every board\n",
        "On a board without an NPU a variant fits when its `.tflite` file + the flash allowance <= flash and its "
        "TFLite Micro arena + the RAM allowance <= RAM; on an NPU board, when Vela's compiled model (its SRAM and "
        "flash) + the allowances fits (KB = 1024 bytes). A cell says `fits` or what the board lacks "
        "(`flash +284 KB`, `RAM +99 KB`, rounded up). A variant whose TFLite Micro outputs fail the correctness "
        "gate against LiteRT (`micro.min_top1_agreement`, `micro.max_output_steps`) reads `wrong output` on every "
        "board. The tools' full reasons are under each table and in `fit_table.csv` (`reason`).\n",
        "**Every latency here is an estimate, not a measurement**: `Vela est.` on NPU boards is Arm Vela's "
        "estimated cycles at the board's NPU clock (`npu.clock_mhz`; operators left on the CPU not counted); "
        "`Cortex-M range, est.` on Cortex-M boards, for variants with int8 activations, is the variant's MACs times "
        f"the cycles per MAC of MLPerf Tiny's published int8 results on the {reference_board} (fastest submission "
        "to TFLite Micro + CMSIS-NN reference), at the board's clock (docs/latency.md).\n",
        "The Cortex-M range uses int8's cycles per MAC for every variant with int8 activations, int4 and "
        "int8_lut included; those read their weights in another form first (int4 values unpacked to int8, LUT "
        "indices looked up in their tables), cycles that MLPerf Tiny's int8 models do not spend. For them the "
        "range is a lower bound: `at least`.\n",
        "| board | processor | clock (MHz) | NPU (Vela) | flash (KB) | RAM (KB) | flash / RAM allowance (KB) |",
        "| --- | --- | ---: | --- | ---: | ---: | ---: |",
    ]
    for board in boards.values():
        npu = (
            f"{board.npu['accelerator']}, {board.npu['system_config']}, {board.npu['memory_mode']}"
            if board.npu
            else "-"
        )
        lines.append(
            f"| {board.label} | {board.cpu or '-'} | {board.clock_mhz:g} | {npu} | {board.flash_bytes // KB} | "
            f"{board.ram_bytes // KB} | {board.flash_allowance_bytes // KB} / {board.ram_allowance_bytes // KB} |"
        )
    several_seeds = table.seed.nunique() > 1
    for dataset_name, part in table.groupby("dataset_name", sort=True):
        part = part.assign(
            model=[
                f"{model} ({AT_CHANCE})" if is_at_chance(above) else model
                for model, above in zip(part.model, part.above_chance)
            ],
            cell=[
                "; ".join(filter(None, (verdict, latency_cell(low, high, kind, bound))))
                for verdict, low, high, kind, bound in zip(
                    part.verdict, part.latency_low_ms, part.latency_high_ms, part.latency_kind, part.latency_lower_bound
                )
            ],
        )
        index = ["model", "seed", "scheme"] if several_seeds else ["model", "scheme"]
        wide = part.pivot_table(index=index, columns="board", values="cell", aggfunc="first", observed=True)
        sizes = part.drop_duplicates(index).set_index(index)[["flash_kb", "arena_kb"]]
        shown = sizes.join(wide[[board.label for board in boards.values() if board.label in wide.columns]])
        shown = shown.reset_index()
        shown["flash_kb"] = shown.flash_kb.map(_kilobytes_cell)
        shown["arena_kb"] = shown.arena_kb.map(_kilobytes_cell)
        shown = shown.rename(columns={"flash_kb": "flash (KB)", "arena_kb": "TFLM arena (KB)"})
        lines.append(f"\n## {dataset_name}\n")
        lines.append(shown.to_markdown(index=False, disable_numparse=True))
        lines.append(reasons_markdown(part, index))
    return "\n".join(lines) + "\n"


def reasons_markdown(part, index):
    """Under a dataset's table: each variant's full reasons, with the boards they hold on."""
    # The cells that shorten a tool's words; "unsupported (DEQUANTIZE)" says all there is.
    shortened = part.verdict.isin([WRONG_OUTPUT_CELL, NOT_CONVERTED]) | part.verdict.str.startswith("Vela")
    explained = part[shortened].dropna(subset=["reason"])
    if explained.empty:
        return ""
    lines = ["\nReasons:\n"]
    for key, group in explained.groupby([*index, "reason"], sort=True, observed=True):
        *names, reason = key
        lines.append(f"- {' '.join(str(name) for name in names)} on {', '.join(group.board)}: {reason}")
    return "\n".join(lines)


def npu_records_by_key(npu_paths):
    """Vela's records keyed by ``(dataset, model, seed, scheme, board)``, as each names itself."""
    records = {}
    for path in npu_paths:
        record = read_json(path)
        key = (record["dataset"], record["model"], int(record["seed"]), record["scheme"], record["board"])
        if key in records:
            raise ValueError(f"{path}: a second Vela record for {key}")
        records[key] = record
    return records


def run_fit_table(results_csv_path, npu_paths, board_entries, cortex_reference, csv_path, markdown_path):
    """Snakemake entry point: the fit table of every variant on every configured board, as CSV and Markdown."""
    boards = boards_from_config(board_entries)
    npu_records = npu_records_by_key(npu_paths)
    table = fit_table(pd.read_csv(results_csv_path), boards, npu_records, cortex_reference)
    write_csv(csv_path, table)
    write_text(markdown_path, fit_markdown(table, boards, cortex_reference))
    return table
