"""Which variant to flash on each board: the per-board answer that opens results.md.

For each board of the config and each dataset, among every variant of the
study (any model, seed and scheme, and the mixed-precision variants the
recovery stage made, ``<scheme>_mixed``, which ``ladder.mixed_variants``
reads from their records):

* a *candidate* was made, passes TensorFlow Lite Micro's correctness gate
  (status ``runs``: a variant that runs with wrong output never qualifies),
  and its model is not at chance (``statistics.clearly_above_chance``);
* it *fits* when it needs no more flash and RAM than the board's budgets, as
  the fit table counts them (``devices.memory_needs``: TFLite Micro's file and
  arena on a Cortex-M board, Vela's flash and SRAM on an NPU board, which only
  the grid's variants have: a mixed variant is weighed on Cortex-M boards);
* the answer is the most accurate candidate that fits, and beside it the
  smallest (flash) candidate that fits within ``WITHIN_POINTS`` of it. The two
  are compared with the exact McNemar test on their per-image predictions,
  Holm-corrected over the distinct pairs the table tests, which says whether
  the bigger one's extra accuracy is more than the test images' noise;
* where no candidate fits, the answer says so and names the nearest miss: the
  candidate that lacks the least flash + RAM, and by how much.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from .devices import (
    CORTEX_RANGE,
    SHORT_SOURCE,
    VELA_ESTIMATE,
    boards_from_config,
    fit_table,
    latency_cell,
    npu_records_by_key,
)
from .files import write_csv, write_text
from .ladder import mixed_variants, read_recoveries, with_mixed
from .micro import RUNS
from .results_table import VARIANT, load_labels, load_predictions
from .statistics import discordant_counts, holm_columns, is_at_chance, mcnemar_exact
from .variants import CONVERTED

# The smaller variant may lose at most this many points of accuracy against the most accurate one.
WITHIN_POINTS = 1.0
NOTHING_FITS = "nothing fits"
_CANDIDATE = (
    *("model", "seed", "scheme", "accuracy", "accuracy_ci_low", "accuracy_ci_high", "flash_kb", "ram_kb"),
    *("memory_source", "latency_low_ms", "latency_high_ms", "latency_kind", "latency_lower_bound"),
)
# board_choice.csv's columns, every one present whatever the answers.
COLUMNS = [
    *("board", "board_name", "dataset", "dataset_name", "answer"),
    *_CANDIDATE,
    *(f"smaller_{name}" for name in _CANDIDATE),
    *("best_only_right", "smaller_only_right", "mcnemar_p", "holm_p", "significant"),
    *("miss_model", "miss_seed", "miss_scheme", "miss_memory_source", "miss_flash_kb", "miss_ram_kb"),
]
TITLE = "## Which variant for each board"


def fits(rows):
    """Which rows of a fit table fit their board: flash and RAM both within its budgets."""
    return (rows.flash_over_kb <= 0) & (rows.ram_over_kb <= 0)


def _fitting(rows):
    return rows[fits(rows)]


def may_be_chosen(rows):
    """Which rows of a results table may be an answer: made, through the gate, with an accuracy, not at chance.

    A table made before models were judged (no ``above_chance``) marks none at chance, as the fit table does.
    """
    above_chance = rows.above_chance if "above_chance" in rows else pd.Series(pd.NA, index=rows.index)
    passes = (rows.status == CONVERTED) & (rows.tflm_status == RUNS) & rows.accuracy.notna()
    return passes & ~above_chance.map(is_at_chance).astype(bool)


def candidates(results, fit):
    """The fit table's rows whose variant ``may_be_chosen`` and that have flash and RAM figures.

    Joined with the results on the variant's key, never by position.
    """
    columns = ["status", "tflm_status", "above_chance", "accuracy", "accuracy_ci_low", "accuracy_ci_high"]
    if "above_chance" not in results:
        results = results.assign(above_chance=pd.NA)
    judged = results[[*VARIANT, *columns]].assign(scheme=results.scheme.astype(str))
    rows = fit.assign(scheme=fit.scheme.astype(str)).drop(columns=["above_chance"])
    rows = rows.merge(judged, on=VARIANT, how="left", validate="many_to_one")
    return rows[may_be_chosen(rows) & rows.flash_over_kb.notna() & rows.ram_over_kb.notna()]


def _pick(group):
    """``(most accurate, smallest within WITHIN_POINTS, nearest miss)`` of one board's and dataset's candidates."""
    fitting = _fitting(group)
    if fitting.empty:
        if group.empty:
            return None, None, None
        shortfall = group.flash_over_kb.clip(lower=0) + group.ram_over_kb.clip(lower=0)
        return None, None, group.loc[shortfall.sort_values(kind="stable").index[0]]
    # Ties go to the smaller variant, then the key's order: the same table gives the same answer.
    best = fitting.sort_values(["accuracy", "flash_need_kb"], ascending=[False, True], kind="stable").iloc[0]
    # Rounded so that a loss of exactly WITHIN_POINTS is not "more" by a float's last bit.
    close = fitting[(100 * (best.accuracy - fitting.accuracy)).round(6) <= WITHIN_POINTS]
    smallest = close.sort_values(["flash_need_kb", "accuracy"], ascending=[True, False], kind="stable").iloc[0]
    return best, smallest, None


def _key(row):
    return (row.dataset, row.model, int(row.seed), row.scheme)


def board_choice(results, boards, npu_records=None, cortex_reference=None, predictions=None, labels=None):
    """One row per board and dataset: the variant to flash, the smallest within a point of it, or the nearest miss.

    ``results`` is the gathered results table, ``boards`` ``{name: Board}``,
    ``npu_records`` Vela's records by ``(dataset, model, seed, scheme,
    board)``, ``predictions`` each variant's per-image predictions by its key
    and ``labels`` each dataset's test labels (without them, no test).
    """
    fit = fit_table(results, boards, npu_records, cortex_reference)
    eligible = candidates(results, fit)
    rows, pairs = [], {}
    datasets = results[["dataset", "dataset_name"]].drop_duplicates().sort_values("dataset")
    for board in boards.values():
        for dataset, dataset_name in datasets.itertuples(index=False):
            group = eligible[(eligible.board_name == board.name) & (eligible.dataset == dataset)]
            best, smallest, miss = _pick(group)
            row = {"board": board.label, "board_name": board.name, "dataset": dataset, "dataset_name": dataset_name}
            if best is None:
                row["answer"] = NOTHING_FITS
                if miss is not None:
                    row.update(
                        {f"miss_{name}": miss[name] for name in ("model", "seed", "scheme", "memory_source")},
                        miss_flash_kb=max(0.0, miss.flash_over_kb),
                        miss_ram_kb=max(0.0, miss.ram_over_kb),
                    )
                rows.append(row)
                continue
            row["answer"] = "fits"
            for prefix, chosen in (("", best), ("smaller_", smallest)):
                row.update(
                    {
                        f"{prefix}{name}": chosen[name]
                        for name in ("model", "seed", "scheme", "accuracy", "accuracy_ci_low", "accuracy_ci_high")
                    }
                )
                row[f"{prefix}flash_kb"] = chosen.flash_need_kb
                row[f"{prefix}ram_kb"] = chosen.ram_need_kb
                row[f"{prefix}memory_source"] = chosen.memory_source
                row[f"{prefix}latency_low_ms"] = chosen.latency_low_ms
                row[f"{prefix}latency_high_ms"] = chosen.latency_high_ms
                row[f"{prefix}latency_kind"] = chosen.latency_kind
                row[f"{prefix}latency_lower_bound"] = bool(chosen.latency_lower_bound)
            if _key(best) != _key(smallest) and predictions is not None and labels is not None:
                pair = (_key(best), _key(smallest))
                if pair not in pairs:
                    first, second = predictions.get(pair[0]), predictions.get(pair[1])
                    if first is not None and second is not None:
                        pairs[pair] = discordant_counts(first, second, labels[dataset])
                if pair in pairs:
                    b, c = pairs[pair]
                    row.update(best_only_right=b, smaller_only_right=c, mcnemar_p=mcnemar_exact(b, c))
            rows.append(row)
    table = pd.DataFrame(rows).reindex(columns=COLUMNS)
    _holm_over_pairs(table)
    for column in ("seed", "smaller_seed", "miss_seed", "best_only_right", "smaller_only_right"):
        table[column] = table[column].astype("Int64")
    return table


def _holm_over_pairs(table):
    """Holm's correction over the distinct pairs tested (boards that share a pair share its test)."""
    tested = table[table.mcnemar_p.notna()]
    if tested.empty:
        return
    pair_columns = ["dataset", "model", "seed", "scheme", "smaller_model", "smaller_seed", "smaller_scheme"]
    distinct = holm_columns(tested.drop_duplicates(pair_columns).assign(holm_p=np.nan, significant=False))
    by_pair = {
        tuple(row): (p, bool(flag))
        for row, p, flag in zip(distinct[pair_columns].itertuples(index=False), distinct.holm_p, distinct.significant)
    }
    table["holm_p"] = table["holm_p"].astype(object)
    table["significant"] = table["significant"].astype(object)
    for index, row in tested.iterrows():
        p, flag = by_pair[tuple(row[pair_columns])]
        table.at[index, "holm_p"] = p
        table.at[index, "significant"] = flag


# --------------------------------------------------------------------------- Markdown


def _variant_text(model, seed, scheme, several_seeds):
    return f"{model} {scheme}" + (f" (seed {int(seed)})" if several_seeds else "")


def _accuracy_text(accuracy, low, high):
    return f"{100 * accuracy:.2f} [{100 * low:.2f}, {100 * high:.2f}]"


def _memory_text(flash_kb, ram_kb, source):
    ram = "SRAM" if source == "Vela" else "arena"
    return f"{flash_kb:.0f} / {ram_kb:.0f} ({ram})"


def _test_text(row):
    if pd.isna(row.mcnemar_p):
        same = (row.model, row.seed, row.scheme) == (row.smaller_model, row.smaller_seed, row.smaller_scheme)
        return "same variant" if row.answer == "fits" and same else "-"
    verdict = "significant" if row.significant is True else "not significant"
    return f"{int(row.best_only_right)} / {int(row.smaller_only_right)}, p {row.holm_p:.2g}: {verdict}"


def board_choice_markdown(table, several_seeds=False):
    """The first section of results.md: per dataset, one row per board with its answer."""
    lines = [
        f"{TITLE}\n",
        "For each board and dataset, the most accurate variant (any model, any scheme, the mixed-precision "
        "variants `<scheme>_mixed` of the recovery ladder included) that fits the board's flash "
        "**and** RAM (its `.tflite` file and TensorFlow Lite Micro arena plus the board's allowances; on an NPU "
        "board Vela's flash and SRAM, which only the grid's variants have), passes the TFLite Micro correctness "
        "gate (status `runs`, measured for a mixed variant by the recovery stage) and whose model is "
        f"clearly above chance; beside it the smallest such variant within {WITHIN_POINTS:g} point of it. "
        "Accuracy on the whole test set with its 95 % Wilson interval; flash / RAM in KB. Latency is an estimate, "
        f"never a measurement: `{SHORT_SOURCE[VELA_ESTIMATE]}` is Arm Vela's, `{SHORT_SOURCE[CORTEX_RANGE]}` "
        "the Cortex-M range derived from MLPerf Tiny (a lower bound for int4 and LUT variants: `fit_table.md`). "
        "The two candidates are compared with the exact McNemar test on their per-image predictions (most accurate "
        "only / smaller only right, Holm-corrected over the pairs): where it is not significant, the smaller one is "
        "as good on this test set. Where nothing fits, the nearest miss and what it lacks. Every variant on every "
        "board: `fit_table.md`; this table: `board_choice.csv`.\n",
    ]
    for dataset_name, part in table.groupby("dataset_name", sort=True):
        shown = []
        for row in part.itertuples():
            if row.answer != "fits":
                if pd.isna(getattr(row, "miss_model", np.nan)):
                    miss = "no variant that passes the gate has flash and RAM figures for it"
                else:
                    lacks = ", ".join(
                        text
                        for text, value in (
                            (f"flash +{np.ceil(row.miss_flash_kb):.0f} KB", row.miss_flash_kb),
                            (f"RAM +{np.ceil(row.miss_ram_kb):.0f} KB", row.miss_ram_kb),
                        )
                        if value > 0
                    )
                    variant = _variant_text(row.miss_model, row.miss_seed, row.miss_scheme, several_seeds)
                    miss = f"nearest miss: {variant}, {lacks}"
                shown.append({"board": row.board, "most accurate that fits": f"{NOTHING_FITS} ({miss})"})
                continue
            shown.append(
                {
                    "board": row.board,
                    "most accurate that fits": _variant_text(row.model, row.seed, row.scheme, several_seeds),
                    "accuracy (%) [95% CI]": _accuracy_text(row.accuracy, row.accuracy_ci_low, row.accuracy_ci_high),
                    "flash / RAM (KB)": _memory_text(row.flash_kb, row.ram_kb, row.memory_source),
                    "latency": latency_cell(
                        row.latency_low_ms, row.latency_high_ms, row.latency_kind, row.latency_lower_bound
                    )
                    or "no estimate",
                    f"smallest within {WITHIN_POINTS:g} point": _variant_text(
                        row.smaller_model, row.smaller_seed, row.smaller_scheme, several_seeds
                    ),
                    "its accuracy (%) [95% CI]": _accuracy_text(
                        row.smaller_accuracy, row.smaller_accuracy_ci_low, row.smaller_accuracy_ci_high
                    ),
                    "its flash / RAM (KB)": _memory_text(
                        row.smaller_flash_kb, row.smaller_ram_kb, row.smaller_memory_source
                    ),
                    "McNemar: most accurate only / smaller only right, Holm p": _test_text(row),
                }
            )
        lines.append(f"### {dataset_name}\n")
        lines.append(pd.DataFrame(shown).fillna("").to_markdown(index=False, disable_numparse=True) + "\n")
    return "\n".join(lines)


def run_board_choice(inputs, parameters, outputs):
    """Snakemake entry point: board_choice.csv, and results.md with the per-board answer first.

    ``inputs``: ``csv`` (results.csv), ``body`` (the rest of results.md, from
    gather_results), ``npu_estimates``, ``evaluations`` (the predictions beside
    them), ``recoveries`` (the mixed variants' records, their predictions
    beside them) and ``datasets``; ``parameters``: ``boards``,
    ``cortex_m_latency``; ``outputs``: ``csv``, ``markdown``.
    """
    results = pd.read_csv(inputs["csv"])
    boards = boards_from_config(parameters["boards"])
    labels, _ = load_labels(inputs["datasets"])
    records, mixed_predictions = read_recoveries(inputs["recoveries"])
    predictions = {**load_predictions(inputs["evaluations"]), **mixed_predictions}
    variants = with_mixed(results, mixed_variants(results, records, predictions, labels))
    table = board_choice(
        variants,
        boards,
        npu_records_by_key(inputs["npu_estimates"]),
        parameters["cortex_m_latency"],
        predictions,
        labels,
    )
    write_csv(outputs["csv"], table)
    body = Path(inputs["body"]).read_text()
    title, _, rest = body.partition("\n")
    several_seeds = results.seed.nunique() > 1
    write_text(outputs["markdown"], f"{title}\n\n{board_choice_markdown(table, several_seeds)}\n{rest.lstrip()}")
    return table
