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
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import cortex_m
from .files import write_csv, write_text
from .micro import RUNS, STATUSES, WRONG_OUTPUT
from .npu import COMPILED
from .schemes import BY_NAME, INTEGER_SCHEMES
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
    """Whole KB, rounded up, so a variant over by one byte never reads "over by 0 KB"."""
    return math.ceil(excess_bytes / KB)


def wrong_output_verdict(agreement):
    """The fit table's verdict for a variant TFLite Micro computes wrongly, with its top-1 agreement if measured."""
    if agreement is None or pd.isna(agreement):
        return "wrong output"
    return f"wrong output ({100 * agreement:.1f}% agreement)"


def fit_verdict(file_bytes, arena_bytes, status, board, agreement=None):
    """``"fits"``, ``"over flash by N KB"``, ``"over RAM by N KB"``, both joined by "and", ``"wrong output"``
    or ``"unsupported"``.

    ``status`` is a TFLite Micro status (``micro.STATUSES``); an unsupported
    variant has no arena and needs no numbers; one that runs with wrong output
    fits nowhere, whatever its size (``agreement``: its top-1 agreement).
    """
    if status not in STATUSES:
        raise ValueError(f"unknown TFLite Micro status {status!r}; known: {list(STATUSES)}")
    if status == WRONG_OUTPUT:
        return wrong_output_verdict(agreement)
    if status != RUNS:
        return "unsupported"
    for name, value in (("file_bytes", file_bytes), ("arena_bytes", arena_bytes)):
        if not _is_count(value):
            raise ValueError(f"{name} must be a non-negative integer for a variant that runs, got {value!r}")
    flash_over = file_bytes - board.budget_bytes("flash")
    ram_over = arena_bytes - board.budget_bytes("ram")
    problems = []
    if flash_over > 0:
        problems.append(f"over flash by {_kilobytes_over(flash_over)} KB")
    if ram_over > 0:
        problems.append(f"over RAM by {_kilobytes_over(ram_over)} KB")
    return " and ".join(problems) if problems else "fits"


def npu_fit_verdict(record, board):
    """The verdict of Vela's compiled model on an NPU board: its SRAM and flash against the board's budgets."""
    if record is not None and record.get("status") == NOT_CONVERTED:
        return NOT_CONVERTED
    if record is None or record.get("status") != COMPILED:
        return "unsupported"
    problems = []
    for memory, used_kb in (("flash", record["flash_kb"]), ("ram", record["sram_kb"])):
        over = used_kb * KB - board.budget_bytes(memory)
        if over > 0:
            problems.append(f"over {'RAM' if memory == 'ram' else 'flash'} by {_kilobytes_over(over)} KB")
    return " and ".join(problems) if problems else "fits"


def latency_estimate(variant, board, npu_record, cortex_reference):
    """``(low ms, high ms, source)`` of a variant on a board: Vela's estimate, or the Cortex-M range; Nones if none.

    The Cortex-M range is calibrated on int8 models on CMSIS-NN's kernels, so
    only variants with int8 activations get it.
    """
    if board.npu:
        if npu_record is None or npu_record.get("status") != COMPILED:
            return None, None, "no estimate: Vela did not compile it"
        milliseconds, clock_mhz = npu_record["inference_ms"], npu_record["clock_hz"] / 1e6
        return milliseconds, milliseconds, f"Vela's cycles at the board's {clock_mhz:g} MHz NPU clock"
    if variant.tflm_status != RUNS or pd.isna(variant.macs) or not board.clock_mhz:
        return None, None, "no estimate"
    if BY_NAME[variant.scheme].activations != cortex_m.ESTIMATED_ACTIVATIONS:
        return None, None, f"no estimate: the range is from {cortex_m.ESTIMATED_ACTIVATIONS} models"
    reference_board = cortex_reference["board"]
    if not cortex_m.applies(cortex_reference, board.cpu):
        return None, None, f"no estimate for a {board.cpu} (the range is from the {reference_board})"
    low, high = cortex_m.variant_range_ms(int(variant.macs), board.clock_mhz, cortex_reference)
    return low, high, f"estimate from MLPerf Tiny's cycles per MAC on the {reference_board}, at {board.clock_mhz:g} MHz"


def not_for_the_npu(scheme):
    """Whether a scheme's variants never go to Vela: the NPU computes in integers only."""
    return scheme not in INTEGER_SCHEMES


def fit_table(results, boards, npu_records=None, cortex_reference=None):
    """One row per variant of ``results`` and board: the verdict and the estimated latency range.

    ``npu_records`` maps ``(dataset, model, seed, scheme, board)`` to Vela's record.
    """
    npu_records = npu_records or {}
    rows = []
    for variant in results.itertuples():
        arena_bytes = None if pd.isna(variant.arena_bytes) else int(variant.arena_bytes)
        for board in boards.values():
            key = (variant.dataset, variant.model, int(variant.seed), variant.scheme, board.name)
            npu_record = npu_records.get(key)
            # An NPU board runs Vela's compilation of the variant file (for int8_lut the binned model, not
            # TFLite Micro's compressed file): its own record says whether that was made.
            if board.npu and not_for_the_npu(variant.scheme):
                verdict = "not for the NPU (float)"
            elif variant.tflm_status == WRONG_OUTPUT:
                # The gate is TFLite Micro's, which also runs what Vela leaves to the CPU: no board gets the file.
                verdict = wrong_output_verdict(variant.tflm_top1_agreement)
            elif board.npu:
                verdict = npu_fit_verdict(npu_record, board)
            elif variant.status == NOT_CONVERTED:
                verdict = NOT_CONVERTED
            elif variant.tflm_status not in STATUSES or variant.tflm_status != RUNS:
                verdict = "unsupported"
            else:
                verdict = fit_verdict(int(variant.file_bytes), arena_bytes, variant.tflm_status, board)
            low, high, source = latency_estimate(variant, board, npu_record, cortex_reference)
            if variant.tflm_status == WRONG_OUTPUT:
                low, high, source = None, None, "no estimate: wrong output on TensorFlow Lite Micro"
            rows.append(
                {
                    "dataset_name": variant.dataset_name,
                    "model": variant.model,
                    # A results table made before models were judged has no judgement: nothing is marked.
                    "above_chance": getattr(variant, "above_chance", None),
                    "seed": int(variant.seed),
                    "scheme": variant.scheme,
                    "board": board.label,
                    "target": f"{board.cpu} + {board.npu['accelerator']}" if board.npu else board.cpu,
                    "flash_kb": None if pd.isna(variant.file_bytes) else variant.file_bytes / KB,
                    "arena_kb": None if arena_bytes is None else arena_bytes / KB,
                    "npu_sram_kb": npu_record.get("sram_kb") if npu_record else None,
                    "npu_flash_kb": npu_record.get("flash_kb") if npu_record else None,
                    "verdict": verdict,
                    "latency_low_ms": low,
                    "latency_high_ms": high,
                    "latency_source": source,
                }
            )
    return pd.DataFrame(rows)


def _latency_cell(low, high):
    if low is None or pd.isna(low):
        return ""
    if high is None or pd.isna(high) or np.isclose(low, high):
        return f"{low:.3g} ms"
    return f"{low:.3g}-{high:.3g} ms"


def fit_markdown(table, boards, cortex_reference=None):
    """Per dataset, variant x board: the verdict and the latency estimate; the boards and the estimates' sources."""
    reference_board = (cortex_reference or {}).get("board", "a Cortex-M board")
    lines = [
        "# Will it fit, and how fast? Every TFLite variant on every board\n",
        "On a board without an NPU a variant fits when its `.tflite` file + the flash allowance <= flash and its "
        "TFLite Micro arena + the RAM allowance <= RAM; on an NPU board, when Vela's compiled model (its SRAM and "
        "flash) + the allowances fits (KB = 1024 bytes). A variant whose TFLite Micro outputs fail the correctness "
        "gate against LiteRT (`micro.min_top1_agreement`, `micro.max_output_steps`) reads `wrong output`, with its "
        "top-1 agreement, on every board.\n",
        "**Every latency here is an estimate, not a measurement**: on NPU boards Arm Vela's estimated cycles at the "
        "board's NPU clock (`npu.clock_mhz`; operators left on the CPU not counted); on Cortex-M boards, "
        "for variants with int8 activations, a range: the variant's MACs times the cycles per MAC of MLPerf Tiny's "
        f"published int8 results on the {reference_board} (fastest submission to TFLite Micro + CMSIS-NN "
        "reference), at the board's clock (docs/latency.md).\n",
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
                f"{verdict}; {_latency_cell(low, high)}".rstrip("; ")
                for verdict, low, high in zip(part.verdict, part.latency_low_ms, part.latency_high_ms)
            ],
        )
        index = ["model", "seed", "scheme"] if several_seeds else ["model", "scheme"]
        wide = part.pivot_table(index=index, columns="board", values="cell", aggfunc="first", observed=True)
        sizes = part.drop_duplicates(index).set_index(index)[["flash_kb", "arena_kb"]]
        shown = sizes.join(wide[[board.label for board in boards.values() if board.label in wide.columns]])
        shown = shown.reset_index()
        shown["flash_kb"] = shown.flash_kb.map(lambda value: "-" if pd.isna(value) else f"{value:.1f}")
        shown["arena_kb"] = shown.arena_kb.map(lambda value: "-" if pd.isna(value) else f"{value:.1f}")
        shown = shown.rename(columns={"flash_kb": "flash (KB)", "arena_kb": "TFLM arena (KB)"})
        lines.append(f"\n## {dataset_name}\n")
        lines.append(shown.to_markdown(index=False, disable_numparse=True))
    return "\n".join(lines) + "\n"


def run_fit_table(results_csv_path, npu_paths, board_entries, cortex_reference, csv_path, markdown_path):
    """Snakemake entry point: the fit table of every variant on every configured board, as CSV and Markdown."""
    from .files import read_json

    boards = boards_from_config(board_entries)
    npu_records = {}
    for path in npu_paths:
        record = read_json(path)
        key = (record["dataset"], record["model"], int(record["seed"]), record["scheme"], record["board"])
        npu_records[key] = record
    table = fit_table(pd.read_csv(results_csv_path), boards, npu_records, cortex_reference)
    write_csv(csv_path, table)
    write_text(markdown_path, fit_markdown(table, boards, cortex_reference))
    return table
