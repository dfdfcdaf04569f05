"""Microcontroller boards and whether a variant fits on them.

A board comes from the config's ``boards`` list (sizes in KB = 1024 bytes):
``name`` (a key of ``[a-z0-9_]+``), ``label`` (how reports call it),
``flash_kb`` and ``ram_kb`` (what the chip has), and ``flash_allowance_kb`` and
``ram_allowance_kb`` (what the rest of the firmware takes first). The model
gets ``flash - allowance`` for its ``.tflite`` file and ``ram - allowance`` for
its tensor arena: a variant fits when ``file bytes + flash allowance <= flash``
and ``arena bytes + RAM allowance <= RAM``.

``boards_from_config`` is the one place boards are checked beyond their types
(the schema checks those): unique names, allowances within the memory. The
docs/microcontrollers.md cites each default board's figures and explains the allowances.
"""

import math
import numbers
from dataclasses import dataclass

import pandas as pd

from .files import write_csv, write_text
from .micro import RUNS, STATUSES

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


def fit_verdict(file_bytes, arena_bytes, status, board):
    """``"fits"``, ``"over flash by N KB"``, ``"over RAM by N KB"``, both joined by "and", or ``"unsupported"``.

    ``status`` is a TFLite Micro status (``"runs"`` or ``"unsupported on
    TFLite Micro"``); an unsupported variant has no arena and needs no numbers.
    """
    if status not in STATUSES:
        raise ValueError(f"unknown TFLite Micro status {status!r}; known: {list(STATUSES)}")
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


def fit_table(results, boards):
    """One row per variant of ``results`` (the study's results table), one verdict column per board."""
    rows = []
    for variant in results.itertuples():
        arena_bytes = None if pd.isna(variant.arena_bytes) else int(variant.arena_bytes)
        rows.append(
            {
                "dataset_name": variant.dataset_name,
                "model": variant.model,
                "scheme": variant.scheme,
                "flash_kb": variant.file_bytes / KB,
                "arena_kb": None if arena_bytes is None else arena_bytes / KB,
                **{
                    board.label: fit_verdict(int(variant.file_bytes), arena_bytes, variant.tflm_status, board)
                    for board in boards.values()
                },
            }
        )
    return pd.DataFrame(rows)


def fit_markdown(table, boards):
    """Per dataset, variant x board: fits / over flash by N KB / over RAM by N KB / unsupported."""
    lines = [
        "# Will it fit? Every TFLite variant on every board\n",
        "A variant fits when its `.tflite` file + the flash allowance <= flash and its TFLite Micro arena "
        "+ the RAM allowance <= RAM (KB = 1024 bytes).\n",
        "| board | flash (KB) | RAM (KB) | flash allowance (KB) | RAM allowance (KB) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for board in boards.values():
        lines.append(
            f"| {board.label} | {board.flash_bytes // KB} | {board.ram_bytes // KB} | "
            f"{board.flash_allowance_bytes // KB} | {board.ram_allowance_bytes // KB} |"
        )
    for dataset_name, part in table.groupby("dataset_name"):
        shown = part.drop(columns="dataset_name").assign(
            flash_kb=part.flash_kb.map("{:.1f}".format),
            arena_kb=part.arena_kb.map(lambda value: "-" if pd.isna(value) else f"{value:.1f}"),
        )
        shown = shown.rename(columns={"flash_kb": "flash (KB)", "arena_kb": "arena (KB)"})
        lines.append(f"\n## {dataset_name}\n")
        # The numbers are already formatted: tabulate must not parse them back (it drops "40.0" to "40").
        alignment = ["right" if column.endswith("(KB)") else "left" for column in shown.columns]
        lines.append(shown.to_markdown(index=False, disable_numparse=True, colalign=alignment))
    return "\n".join(lines) + "\n"


def run_fit_table(results_csv_path, board_entries, csv_path, markdown_path):
    """Snakemake entry point: the fit table of every variant on every configured board, as CSV and Markdown."""
    boards = boards_from_config(board_entries)
    table = fit_table(pd.read_csv(results_csv_path), boards)
    write_csv(csv_path, table)
    write_text(markdown_path, fit_markdown(table, boards))
    return table
