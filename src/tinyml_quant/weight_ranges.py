"""int4's weight ranges side by side: OCTAV and MSE each against int4's own algorithm, image by image, and a verdict.

``int4_octav`` and ``int4_mse`` are ``int4`` made again with another of the
AI Edge Quantizer's algorithms for the ranges of the 4-bit weights, on
int4's calibration (``schemes.INT4_ALGORITHM_SCHEMES``): only those ranges
differ, so each is compared with ``int4`` on the same test images.

* Per ``(dataset, model, seed)``: both accuracies, their difference, and the
  exact McNemar test of the images only one of the two classifies right
  (``statistics``), Holm-corrected over these comparisons: their own family,
  apart from the study's changes against fp32.
* Per model (dataset x model): the algorithm *wins* there when it is
  significantly better on more than half of the model's seeds, *loses* when
  significantly worse on more than half, else there is no significant
  difference. The seeds of a model are judged together, not pooled into one
  test (the same test image under several trainings is not an independent
  pair) nor counted as models (a model trained on more seeds would weigh more).
* The verdict: an algorithm becomes int4's default
  (``conversion.int4.weight_algorithm``) only when it wins on *more than
  half* of the study's models; exactly half is not enough. Where two do, the
  one with more wins, then fewer losses. Otherwise int4's own algorithm stays.

The baseline is ``int4`` as the study makes it: min/max unless
``conversion.int4.weight_algorithm`` says otherwise. A twin made with the
baseline's own algorithm is the same file and is not compared, and min/max
is then in no variant of the study, so the section says what it compared.
"""

import numpy as np
import pandas as pd

from .files import write_csv
from .schemes import INT4, INT4_ALGORITHM_SCHEMES, MIN_MAX, MSE, OCTAV, WEIGHT_ALGORITHMS
from .statistics import AT_CHANCE, discordant_counts, holm_columns, is_at_chance, mcnemar_exact
from .variants import CONVERTED

LABELS = {MIN_MAX: "min/max", OCTAV: "OCTAV", MSE: "MSE"}
# A comparison's and a model's outcome, from the algorithm's side.
WINS, LOSES, NO_DIFFERENCE, NOT_COMPARED = "wins", "loses", "no significant difference", "not compared"
COLUMNS = [
    *("dataset", "dataset_name", "model", "seed", "baseline_algorithm", "algorithm", "scheme"),
    *("baseline_accuracy", "accuracy", "accuracy_change_points", "baseline_only_right", "algorithm_only_right"),
    *("mcnemar_p", "holm_p", "significant", "outcome", "model_outcome", "above_chance", "reason"),
]


def _why_not(scheme, row, prediction):
    """Why ``scheme``'s side of a comparison is missing, or None when it can be compared."""
    if row is None:
        return f"no {scheme} variant"
    if row["status"] != CONVERTED:
        return f"{scheme} not converted ({row['reason']})"
    if prediction is None or not np.asarray(prediction).size:
        return f"no predictions of {scheme}"
    return None


def comparisons(table, predictions, labels, baseline_algorithm=MIN_MAX):
    """One row per ``(dataset, model, seed)`` and twin of another algorithm than int4's: accuracies and the test.

    ``table``: the results table (``results_table.gather``); ``predictions``: every
    variant's per-image predictions by ``(dataset, model, seed, scheme)``;
    ``labels``: each dataset's test labels. Rows are joined by that key only.
    """
    rows = {
        (row["dataset"], row["model"], int(row["seed"]), str(row["scheme"])): row for row in table.to_dict("records")
    }
    present = {key[3] for key in rows}
    challengers = [
        (scheme, algorithm)
        for scheme, algorithm in INT4_ALGORITHM_SCHEMES.items()
        if scheme in present and algorithm != baseline_algorithm
    ]
    records = []
    for instance in sorted({key[:3] for key in rows if key[3] == INT4}):
        baseline = rows[(*instance, INT4)]
        for scheme, algorithm in challengers:
            own = rows.get((*instance, scheme))
            record = {
                "dataset": instance[0],
                "dataset_name": baseline["dataset_name"],
                "model": instance[1],
                "seed": instance[2],
                "baseline_algorithm": baseline_algorithm,
                "algorithm": algorithm,
                "scheme": scheme,
                "baseline_accuracy": baseline["accuracy"] if baseline["status"] == CONVERTED else np.nan,
                "accuracy": own["accuracy"] if own is not None and own["status"] == CONVERTED else np.nan,
                "above_chance": baseline.get("above_chance", pd.NA),
            }
            reference, variant = predictions.get((*instance, INT4)), predictions.get((*instance, scheme))
            reason = _why_not(INT4, baseline, reference) or _why_not(scheme, own, variant)
            if reason is None:
                b, c = discordant_counts(reference, variant, labels[instance[0]])
                record.update(baseline_only_right=b, algorithm_only_right=c, mcnemar_p=mcnemar_exact(b, c))
            records.append(record | {"reason": reason})
    frame = pd.DataFrame(records, columns=COLUMNS)
    frame["accuracy_change_points"] = 100 * (frame.accuracy.astype(float) - frame.baseline_accuracy.astype(float))
    frame["mcnemar_p"] = frame.mcnemar_p.astype(float)
    frame["holm_p"] = np.nan
    frame["significant"] = pd.array([pd.NA] * len(frame), dtype="boolean")
    holm_columns(frame)
    frame["outcome"] = [
        _outcome(row.significant, row.baseline_only_right, row.algorithm_only_right) for row in frame.itertuples()
    ]
    for column in ("baseline_only_right", "algorithm_only_right"):
        frame[column] = frame[column].astype("Int64")
    frame["model_outcome"] = _model_outcome_column(frame)
    return frame[COLUMNS]


def _outcome(significant, baseline_only, algorithm_only):
    if pd.isna(significant):
        return NOT_COMPARED
    if not significant:
        return NO_DIFFERENCE
    return WINS if algorithm_only > baseline_only else LOSES


def model_outcome(outcomes):
    """A model's outcome from its seeds' outcomes: a win or a loss on more than half of them, else none."""
    outcomes = list(outcomes)
    for outcome in (WINS, LOSES):
        if 2 * outcomes.count(outcome) > len(outcomes):
            return outcome
    return NOT_COMPARED if all(outcome == NOT_COMPARED for outcome in outcomes) else NO_DIFFERENCE


def _model_outcome_column(frame):
    """Each row's model outcome (its model's, for its algorithm), joined back by ``(dataset, model, algorithm)``."""
    keys = ["dataset", "model", "algorithm"]
    if frame.empty:
        return pd.Series([], dtype=object)
    outcomes = frame.groupby(keys, sort=False).outcome.agg(model_outcome)
    return [outcomes[key] for key in zip(frame.dataset, frame.model, frame.algorithm)]


def algorithm_counts(frame):
    """Per algorithm: the study's models, and on how many it wins, loses, differs not significantly, was not compared.

    ``majority``: whether it wins on more than half of the models (the rule of
    the module docstring; exactly half is not more than half).
    """
    models = frame.drop_duplicates(["dataset", "model", "algorithm"])
    counts = []
    for algorithm in WEIGHT_ALGORITHMS:
        part = models[models.algorithm == algorithm]
        if part.empty:
            continue
        tally = part.model_outcome.value_counts()
        wins = int(tally.get(WINS, 0))
        counts.append(
            {
                "algorithm": algorithm,
                "models": len(part),
                WINS: wins,
                LOSES: int(tally.get(LOSES, 0)),
                NO_DIFFERENCE: int(tally.get(NO_DIFFERENCE, 0)),
                NOT_COMPARED: int(tally.get(NOT_COMPARED, 0)),
                "majority": 2 * wins > len(part),
            }
        )
    return pd.DataFrame(counts, columns=["algorithm", "models", WINS, LOSES, NO_DIFFERENCE, NOT_COMPARED, "majority"])


def verdict(counts, baseline_algorithm=MIN_MAX):
    """``(algorithm, sentence)``: the algorithm int4 should use by the rule, and why, in one sentence."""
    winners = counts[counts.majority.astype(bool)].sort_values([WINS, LOSES], ascending=[False, True], kind="stable")
    tallies = ", ".join(f"{LABELS[row.algorithm]} {getattr(row, WINS)}" for row in counts.itertuples())
    models = int(counts.models.max()) if len(counts) else 0
    if winners.empty:
        return baseline_algorithm, (
            f"{LABELS[baseline_algorithm]} stays int4's weight algorithm: no other wins significantly on more than "
            f"half of the {models} models (significant wins: {tallies})."
        )
    best = winners.iloc[0]
    others = [
        f"{LABELS[row.algorithm]} {getattr(row, WINS)}"
        for row in counts.itertuples()
        if row.algorithm != best.algorithm
    ]
    return best.algorithm, (
        f"{LABELS[best.algorithm]} should become int4's weight algorithm: it wins significantly against "
        f"{LABELS[baseline_algorithm]} on {best[WINS]} of the {best.models} models, more than half"
        + (f" (significant wins of the others: {', '.join(others)})." if others else ".")
    )


def setting_sentence(chosen, baseline_algorithm):
    """Whether the study's own setting (int4's algorithm, the baseline) agrees with its verdict, said plainly."""
    key = f"`conversion.int4.weight_algorithm` is `{baseline_algorithm}`"
    if chosen == baseline_algorithm:
        return f"The study's setting agrees with its verdict: {key}."
    return (
        f"**The study's setting disagrees with its own verdict:** {key}, the verdict says `{chosen}`; `int4`, its "
        f"mixed-precision variant and its firmware use {LABELS[baseline_algorithm]} until the setting is changed."
    )


def _percent(value):
    return "-" if pd.isna(value) else f"{100 * value:.2f}"


def _test_cell(row):
    if pd.isna(row.mcnemar_p):
        return f"- ({row.reason})"
    mark = " *" if bool(row.significant) else ""
    return f"{row.baseline_only_right} / {row.algorithm_only_right}, p {row.holm_p:.2g}{mark}"


def ranges_markdown(frame, counts, chosen, sentence, baseline_algorithm):
    """The section of results.md: the rule, the verdict and the setting's agreement, the counts, each comparison."""
    base = LABELS[baseline_algorithm]
    several_seeds = frame.seed.nunique() > 1
    tested = int(frame.mcnemar_p.notna().sum())
    intro = (
        "## int4 weight ranges: min/max, OCTAV, MSE\n\n"
        "`int4_octav` and `int4_mse` are `int4` with the ranges of its 4-bit weights set by the AI Edge "
        "Quantizer's OCTAV and MSE algorithms, on int4's calibration (docs/schemes.md). Each is compared with "
        f"`int4`, here made with {base} (`conversion.int4.weight_algorithm`), on the same test images: an exact "
        f"McNemar test, Holm-corrected over these {tested} comparisons (their own family). "
        + ("" if baseline_algorithm == MIN_MAX else "min/max is in no variant of this study, so it is not compared. ")
        + "An algorithm wins on a model when it is significantly better on more than half of the model's seeds; "
        f"it replaces {base} only when it wins on more than half of the models (docs/statistics.md).\n\n"
        f"**Verdict:** {sentence} {setting_sentence(chosen, baseline_algorithm)}\n"
    )
    summary = pd.DataFrame(
        {
            "algorithm": [LABELS[name] for name in counts.algorithm],
            "models": counts.models,
            f"wins against {base}": counts[WINS],
            f"loses against {base}": counts[LOSES],
            NO_DIFFERENCE: counts[NO_DIFFERENCE],
            NOT_COMPARED: counts[NOT_COMPARED],
            "wins on more than half": counts.majority.map({True: "yes", False: "no"}),
        }
    )
    shown = pd.DataFrame(
        {
            "dataset": frame.dataset_name,
            "model": [
                f"{model} ({AT_CHANCE})" if is_at_chance(above) else model
                for model, above in zip(frame.model, frame.above_chance)
            ],
            **({"seed": frame.seed} if several_seeds else {}),
            "algorithm": [LABELS[name] for name in frame.algorithm],
            f"{base} (%)": frame.baseline_accuracy.map(_percent),
            "algorithm (%)": frame.accuracy.map(_percent),
            "change (points)": frame.accuracy_change_points.map(
                lambda value: "-" if pd.isna(value) else f"{value:+.2f}"
            ),
            f"{base} only / algorithm only right, Holm p": [_test_cell(row) for row in frame.itertuples()],
            "outcome": frame.outcome,
        }
    )
    return (
        intro
        + "\n"
        + summary.to_markdown(index=False, disable_numparse=True)
        + "\n\n"
        + shown.to_markdown(index=False, disable_numparse=True)
        + "\n"
    )


def run_ranges(table, predictions, labels, baseline_algorithm, csv_path):
    """``int4_ranges.csv`` written, the section of results.md returned ("" where the study has no twin to compare)."""
    frame = comparisons(table, predictions, labels, baseline_algorithm)
    write_csv(csv_path, frame)
    if frame.empty:
        return ""
    counts = algorithm_counts(frame)
    chosen, sentence = verdict(counts, baseline_algorithm)
    return ranges_markdown(frame, counts, chosen, sentence, baseline_algorithm)
