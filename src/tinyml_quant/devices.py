"""Microcontroller boards and whether a variant fits on them.

A board profile is a plain dict:

* ``name``: a key of ``[a-z0-9_]+``, used in file names and config;
* ``label``: how the board is called in reports;
* ``flash_bytes``, ``ram_bytes``: what the chip has (KB = 1024 bytes);
* ``flash_allowance_bytes``, ``ram_allowance_bytes``: what the rest of the
  firmware takes first, so the model gets ``flash - allowance`` for its
  ``.tflite`` file and ``ram - allowance`` for its tensor arena.

A variant fits when ``file bytes + flash allowance <= flash`` and
``arena bytes + RAM allowance <= RAM``.

The study's boards live in ``config/config.yaml`` (``boards``, in KB); the
README cites each figure's source and explains the allowances.
"""

import math
import numbers
import re

from .micro import RUNS, STATUSES

KB = 1024

BOARD_KEYS = ("name", "flash_bytes", "ram_bytes", "flash_allowance_bytes", "ram_allowance_bytes")

_BOARD_NAME = re.compile(r"[a-z0-9_]+")


def _is_count(value):
    """A non-negative integer, numpy's included; booleans are not counts."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0


def check_board(board):
    """Return ``board`` if it is a valid profile; otherwise raise ValueError saying what is wrong."""
    if not isinstance(board, dict):
        raise ValueError(f"a board profile must be a dict, got {type(board).__name__}")
    missing = [key for key in BOARD_KEYS if key not in board]
    if missing:
        raise ValueError(f"board profile {board.get('name', '?')!r} lacks {missing}")
    if not isinstance(board["name"], str) or not _BOARD_NAME.fullmatch(board["name"]):
        raise ValueError(f"board name {board['name']!r} must match [a-z0-9_]+")
    for key in BOARD_KEYS[1:]:
        value = board[key]
        if not _is_count(value):
            raise ValueError(f"board {board['name']}: {key} must be a non-negative integer, got {value!r}")
    for memory in ("flash", "ram"):
        if board[f"{memory}_allowance_bytes"] > board[f"{memory}_bytes"]:
            raise ValueError(f"board {board['name']}: {memory}_allowance_bytes exceeds {memory}_bytes")
    return board


def _kilobytes_over(excess_bytes):
    """Whole KB, rounded up, so a variant over by one byte never reads "over by 0 KB"."""
    return math.ceil(excess_bytes / KB)


def fit_verdict(file_bytes, arena_bytes, status, board):
    """``"fits"``, ``"over flash by N KB"``, ``"over RAM by N KB"``, both joined by "and", or ``"unsupported"``.

    ``status`` is a TFLite Micro status (``"runs"`` or ``"unsupported on
    TFLite Micro"``); an unsupported variant has no arena and needs no numbers.
    """
    check_board(board)
    if status not in STATUSES:
        raise ValueError(f"unknown TFLite Micro status {status!r}; known: {list(STATUSES)}")
    if status != RUNS:
        return "unsupported"
    for name, value in (("file_bytes", file_bytes), ("arena_bytes", arena_bytes)):
        if not _is_count(value):
            raise ValueError(f"{name} must be a non-negative integer for a variant that runs, got {value!r}")
    flash_over = file_bytes + board["flash_allowance_bytes"] - board["flash_bytes"]
    ram_over = arena_bytes + board["ram_allowance_bytes"] - board["ram_bytes"]
    problems = []
    if flash_over > 0:
        problems.append(f"over flash by {_kilobytes_over(flash_over)} KB")
    if ram_over > 0:
        problems.append(f"over RAM by {_kilobytes_over(ram_over)} KB")
    return " and ".join(problems) if problems else "fits"


def board_from_config(entry):
    """A board profile in bytes from a config entry in KB (``flash_kb``, ``ram_kb``, ``*_allowance_kb``)."""
    board = {"name": entry["name"], "label": entry.get("label", entry["name"])}
    for memory in ("flash", "ram", "flash_allowance", "ram_allowance"):
        board[f"{memory}_bytes"] = int(entry[f"{memory}_kb"]) * KB
    return check_board(board)


def fit_verdicts(file_bytes, arena_bytes, status, boards):
    """``{board name: verdict}`` for every board of ``boards`` (``{name: profile}``)."""
    return {name: fit_verdict(file_bytes, arena_bytes, status, board) for name, board in boards.items()}


def fit_table(results, boards):
    """One row per variant of ``results`` (the study's results table), one verdict column per board."""
    import pandas as pd

    rows = []
    for variant in results.itertuples():
        arena_bytes = None if pd.isna(variant.arena_bytes) else int(variant.arena_bytes)
        verdicts = fit_verdicts(int(variant.file_bytes), arena_bytes, variant.tflm_status, boards)
        rows.append({"dataset_name": variant.dataset_name, "model": variant.model, "scheme": variant.scheme,
                     "flash_kb": variant.file_bytes / KB,
                     "arena_kb": None if arena_bytes is None else arena_bytes / KB,
                     **{boards[name]["label"]: verdict for name, verdict in verdicts.items()}})  # fmt: skip
    return pd.DataFrame(rows)


def fit_markdown(table, boards):
    """Per dataset, variant x board: fits / over flash by N KB / over RAM by N KB / unsupported."""
    lines = ["# Will it fit? Every TFLite variant on every board\n"]
    lines.append(
        "A variant fits when its `.tflite` file + the flash allowance <= flash and its TFLite Micro arena "
        "+ the RAM allowance <= RAM (KB = 1024 bytes).\n"
    )
    lines.append("| board | flash (KB) | RAM (KB) | flash allowance (KB) | RAM allowance (KB) |")
    lines.append("| --- | ---: | ---: | ---: | ---: |")
    for board in boards.values():
        lines.append(f"| {board['label']} | {board['flash_bytes'] // KB} | {board['ram_bytes'] // KB} | "
                     f"{board['flash_allowance_bytes'] // KB} | {board['ram_allowance_bytes'] // KB} |")  # fmt: skip
    for dataset_name, part in table.groupby("dataset_name", sort=True):
        shown = part.drop(columns="dataset_name").assign(
            flash_kb=part.flash_kb.map("{:.1f}".format),
            arena_kb=part.arena_kb.map(lambda value: "-" if value is None or value != value else f"{value:.1f}"),
        )
        shown = shown.rename(columns={"flash_kb": "flash (KB)", "arena_kb": "arena (KB)"})
        lines.append(f"\n## {dataset_name}\n")
        lines.append(shown.to_markdown(index=False))
    return "\n".join(lines) + "\n"


def run_fit_table(results_csv_path, board_entries, csv_path, markdown_path):
    """Snakemake entry point: the fit table of every variant on every configured board, as CSV and Markdown."""
    import pandas as pd

    from .files import atomic_path, write_text

    boards = {entry["name"]: board_from_config(entry) for entry in board_entries}
    if len(boards) != len(board_entries):
        raise ValueError("boards: two boards share a name; each name must be unique")
    table = fit_table(pd.read_csv(results_csv_path), boards)
    with atomic_path(csv_path) as temporary:
        table.to_csv(temporary, index=False, float_format="%.6g")
    write_text(markdown_path, fit_markdown(table, boards))
    return table
