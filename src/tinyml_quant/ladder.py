"""The recovery ladder: per model and lossy scheme, what each step of recovery wins back, and what it costs.

A lossy scheme's variant can be made again with more effort; each step is a
rung, in this order:

* ``post-training``: the scheme's own grid variant (int4's with min/max
  ranges);
* ``better ranges`` (int4 only): the more accurate of int4's other weight
  algorithms (``int4_octav``, ``int4_mse``): the same calibration, other
  4-bit ranges;
* ``mixed precision``: the recovery stage's variant with its worst layers one
  step up (``recovery``), made where the deployment plan asked for it;
* ``QAT``: the QAT scheme's grid variant, fine-tuned on the scheme's grid
  (``qat``), at the cost of its fine-tuning's seconds.

Each rung gives its variant's accuracy with the 95 % Wilson interval, the
change against fp32 with its exact McNemar test (the grid's variants as
results.csv has them, Holm-corrected over the study; the mixed variants tested
here on their own predictions, Holm-corrected over the mixed variants tested),
its flash, TensorFlow Lite Micro's verdict and the cost. A rung not made says
why. Every record is joined by the key it names (dataset, model, seed,
scheme), never by the order of a file list.

``mixed_variants`` turns the recovery stage's records into rows like
results.csv's, so that "What to choose" and the per-board answer weigh the
mixed variants with the grid's, behind the same correctness gate.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from .devices import KB, milliseconds_text
from .files import read_json, write_csv
from .micro import RUNS, UNSUPPORTED, WRONG_OUTPUT
from .report_markdown import marked_models
from .results_table import INSTANCE, VARIANT, add_intervals, add_paired_tests
from .schemes import (
    INT4,
    INT4_ALGORITHM_SCHEMES,
    LUT,
    MIXED_SCHEMES,
    PER_TENSOR,
    QAT_SCHEMES,
    REFERENCE_SCHEME,
    VARIANT_SCHEMES,
)
from .statistics import ALPHA
from .variants import CONVERTED, NOT_CONVERTED

POST_TRAINING, BETTER_RANGES, MIXED_PRECISION, QAT = "post-training", "better ranges", "mixed precision", "QAT"
RUNGS = (POST_TRAINING, BETTER_RANGES, MIXED_PRECISION, QAT)
_QAT_OF = {base: scheme for scheme, base in QAT_SCHEMES.items()}
# Each lossy scheme's ladder: per rung, the variants it may be (the most accurate made is the rung's).
LADDERS = {
    INT4: {
        POST_TRAINING: (INT4,),
        BETTER_RANGES: tuple(INT4_ALGORITHM_SCHEMES),
        MIXED_PRECISION: (MIXED_SCHEMES[INT4],),
        QAT: (_QAT_OF[INT4],),
    },
    LUT: {POST_TRAINING: (LUT,), MIXED_PRECISION: (MIXED_SCHEMES[LUT],), QAT: (_QAT_OF[LUT],)},
    PER_TENSOR: {POST_TRAINING: (PER_TENSOR,), MIXED_PRECISION: (MIXED_SCHEMES[PER_TENSOR],)},
}
# TensorFlow Lite Micro's verdict on a rung's variant.
PASSES, WRONG, DOES_NOT_RUN, NOT_MEASURED = "passes the gate", "wrong output", "does not run", "not measured"
VERDICTS = {RUNS: PASSES, WRONG_OUTPUT: WRONG, UNSUPPORTED: DOES_NOT_RUN}
# Which Holm family a rung's p-value belongs to.
STUDY_TESTS, MIXED_TESTS, UNTESTED = "study", "mixed variants", "untested"
NOT_IN_STUDY = "not among the study's schemes"
NONE = "none (post-training)"
_TESTS = ("fp32_only_right", "variant_only_right", "mcnemar_p", "holm_p", "significant")
COLUMNS = [
    *("dataset", "dataset_name", "model", "seed", "ladder", "rung", "rung_index", "variant", "made", "reason"),
    *("accuracy", "accuracy_ci_low", "accuracy_ci_high", "accuracy_change_vs_fp32", *_TESTS, "paired_test"),
    *("flash_kb", "tflm_status", "tflm_verdict", "training_seconds", "cost"),
]
# The columns a mixed variant's row shares with results.csv, and its own.
MIXED_COLUMNS = [
    *("dataset", "dataset_name", "model", "model_source", "seed", "scheme", "status", "reason", "file_bytes"),
    *("size_kb", "accuracy", "test_images", "accuracy_ci_low", "accuracy_ci_high", "accuracy_change_vs_fp32"),
    *(*_TESTS, "keras_test_accuracy", "above_chance", "macs", "tflm_status", "arena_bytes"),
    *("tflm_unsupported_operator", "tflm_sample_images", "tflm_top1_agreement", "tflm_max_difference_steps"),
    *("base_scheme", "method", "layers_raised", "recovery_reason", "paired_test"),
]


def tflm_verdict(status, tflm_status):
    """A variant's verdict: passes the gate, wrong output, does not run, or not measured (not made)."""
    if status != CONVERTED or pd.isna(tflm_status):
        return NOT_MEASURED
    return VERDICTS.get(tflm_status, NOT_MEASURED)


# --------------------------------------------------------------------------- records


def _key(record, path, what):
    missing = [name for name in ("dataset", "model", "seed", "scheme") if record.get(name) is None]
    if missing:
        raise ValueError(
            f"{path}: this {what} record names no {', '.join(missing)}; it predates keyed records: rerun its job"
        )
    return (record["dataset"], record["model"], int(record["seed"]), record["scheme"])


def read_recoveries(recovery_paths):
    """``(records, predictions)``: the recovery stage's records by ``(dataset, model, seed, scheme)``, and the
    per-image predictions of each mixed variant made by its own key (scheme ``<scheme>_mixed``).

    A record without predictions (made before the stage kept them) leaves its variant untested.
    """
    records, predictions = {}, {}
    for path in recovery_paths:
        record = read_json(path)
        key = _key(record, path, "mixed-precision")
        if key in records:
            raise ValueError(f"{path}: a second mixed-precision record for {key}")
        records[key] = record
        name = record.get("predictions_file")
        if record.get("status", CONVERTED) == CONVERTED and name and (Path(path).parent / name).exists():
            predictions[(*key[:3], MIXED_SCHEMES[key[3]])] = np.load(Path(path).parent / name, allow_pickle=False)
    return records, predictions


def qat_records_by_key(qat_paths):
    """The QAT stage's fine-tuning records by the key of the QAT variant each names."""
    records = {}
    for path in qat_paths:
        record = read_json(path)
        key = _key(record, path, "QAT")
        if key in records:
            raise ValueError(f"{path}: a second QAT record for {key}")
        records[key] = record
    return records


def mixed_variants(results, records, predictions=None, labels=None):
    """One row per recovery record, shaped like results.csv's rows, with scheme ``<scheme>_mixed``.

    ``results`` is the gathered results table (its fp32 rows give each model's
    reference accuracy, name and judgement; its scheme's row the MACs),
    ``records`` the recovery records by key (``read_recoveries``). With
    ``predictions`` (by variant key, fp32's and the mixed variants') and
    ``labels`` (by dataset), each mixed variant made is tested against its fp32
    with the exact McNemar test, Holm-corrected over the mixed variants tested.
    """
    grid = results.assign(scheme=results.scheme.astype(str)).set_index(VARIANT)
    rows = []
    for key, record in sorted(records.items()):
        instance, scheme = key[:3], key[3]
        reference_key = (*instance, REFERENCE_SCHEME)
        if reference_key not in grid.index:
            raise ValueError(f"a mixed-precision record of {key} whose model has no fp32 row in the results")
        fp32 = grid.loc[reference_key]
        made = record.get("status", CONVERTED) == CONVERTED
        micro = (record.get("micro") or {}) if made else {}
        agreement = micro.get("agreement") or {}
        rows.append(
            {
                **dict(zip(INSTANCE, instance)),
                "dataset_name": fp32.dataset_name,
                "model_source": fp32.get("model_source"),
                "scheme": MIXED_SCHEMES[scheme],
                "status": CONVERTED if made else NOT_CONVERTED,
                "reason": None if made else record.get("reason_not_made"),
                "file_bytes": record.get("file_bytes") if made else None,
                "accuracy": record.get("accuracy") if made else None,
                "test_images": record.get("test_images"),
                "fp32_accuracy": fp32.accuracy,
                "keras_test_accuracy": fp32.get("keras_test_accuracy"),
                "above_chance": fp32.get("above_chance"),
                # The same layers as the scheme's variant, some at higher precision: the same MACs.
                "macs": grid.macs.get(key) if "macs" in grid else None,
                "tflm_status": micro.get("status", NOT_CONVERTED) if made else NOT_CONVERTED,
                "arena_bytes": micro.get("arena_bytes"),
                "tflm_unsupported_operator": micro.get("unsupported_operator"),
                "tflm_sample_images": agreement.get("images"),
                "tflm_top1_agreement": agreement.get("top1_agreement"),
                "tflm_max_difference_steps": agreement.get("max_difference_steps"),
                "base_scheme": scheme,
                "method": record.get("method"),
                "layers_raised": len(record.get("layers") or []),
                "recovery_reason": record.get("reason"),
            }
        )
    frame = pd.DataFrame(rows, columns=[*MIXED_COLUMNS, "fp32_accuracy"])
    if frame.empty:
        return frame.drop(columns="fp32_accuracy")
    frame["size_kb"] = frame.file_bytes.astype(float) / KB
    frame["accuracy_change_vs_fp32"] = 100 * (frame.accuracy.astype(float) - frame.fp32_accuracy.astype(float))
    add_intervals(frame)
    predictions, labels = predictions or {}, labels or {}
    pairs = {}
    for index, row in frame.iterrows():
        own = predictions.get((row.dataset, row.model, row.seed, row.scheme))
        reference = predictions.get((row.dataset, row.model, row.seed, REFERENCE_SCHEME))
        if row.status == CONVERTED and own is not None and reference is not None and row.dataset in labels:
            pairs[index] = (row.dataset, reference, own)
    add_paired_tests(frame, pairs, labels)
    frame["paired_test"] = [MIXED_TESTS if index in pairs else UNTESTED for index in frame.index]
    for column in ("file_bytes", "arena_bytes", "macs", "tflm_max_difference_steps", "test_images"):
        frame[column] = frame[column].astype("Int64")
    return frame.drop(columns="fp32_accuracy")


def with_mixed(results, mixed):
    """``results`` and the mixed variants' rows in one table, schemes in ``VARIANT_SCHEMES``' order."""
    table = pd.concat([results.assign(scheme=results.scheme.astype(str)), mixed], ignore_index=True)
    table["scheme"] = pd.Categorical(table.scheme, categories=VARIANT_SCHEMES, ordered=True)
    return table


# --------------------------------------------------------------------------- the ladder


def _made(row):
    return row is not None and row.status == CONVERTED and pd.notna(row.accuracy)


def _unmade_mixed_reason(base_row, threshold_points):
    """Why no mixed variant exists: its scheme's variant was not made, or the plan did not ask for one."""
    if base_row.status != CONVERTED or pd.isna(base_row.accuracy):
        return f"{base_row.scheme} was not converted: nothing to recover"
    loss = -float(base_row.accuracy_change_vs_fp32)
    if threshold_points is not None and round(loss, 6) <= threshold_points:
        return (
            f"not asked for: {base_row.scheme} loses {loss:.2f} points, within "
            f"diagnostics.recovery_threshold_points ({threshold_points:g})"
        )
    return "the deployment plan asked for none"


def _cost(rung, qat_record):
    """``(training seconds, cost text)`` of a made rung."""
    if rung != QAT:
        return np.nan, NONE
    seconds = (qat_record or {}).get("training_seconds")
    if seconds is None:
        return np.nan, "fine-tuning time not recorded"
    return float(seconds), f"{milliseconds_text(seconds)} s of fine-tuning"


def _rung_row(base, rung, variants, candidates, instance, threshold_points, qat_records):
    """The row of one rung: its most accurate candidate made, or why none was."""
    present = [(scheme, variants.get((*instance, scheme))) for scheme in candidates]
    made = [(scheme, row) for scheme, row in present if _made(row)]
    row = {"rung": rung, "made": bool(made)}
    if made:
        # Ties go to the first candidate (the schemes' order): the same records give the same ladder.
        scheme, chosen = max(made, key=lambda pair: float(pair[1].accuracy))
        seconds, cost = _cost(rung, qat_records.get((*instance, scheme)))
        family = MIXED_TESTS if rung == MIXED_PRECISION else STUDY_TESTS
        return row | {
            "variant": scheme,
            **{name: chosen[name] for name in ("accuracy", "accuracy_ci_low", "accuracy_ci_high")},
            "accuracy_change_vs_fp32": chosen.accuracy_change_vs_fp32,
            **{name: chosen[name] for name in _TESTS},
            "paired_test": UNTESTED if pd.isna(chosen.mcnemar_p) else family,
            "flash_kb": chosen.size_kb,
            "tflm_status": chosen.tflm_status,
            "tflm_verdict": tflm_verdict(chosen.status, chosen.tflm_status),
            "training_seconds": seconds,
            "cost": cost,
        }
    reasons = []
    for scheme, found in present:
        if found is not None:
            reason = found.reason if pd.notna(found.reason) else "no accuracy"
        elif rung == MIXED_PRECISION:
            reason = _unmade_mixed_reason(variants[(*instance, base)], threshold_points)
        else:
            reason = NOT_IN_STUDY
        # Training spent on a QAT variant its tool then could not make is a cost paid all the same.
        seconds = (qat_records.get((*instance, scheme)) or {}).get("training_seconds")
        if found is not None and seconds:
            reason += f" (after {milliseconds_text(seconds)} s of fine-tuning)"
        reasons.append(reason if len(present) == 1 else f"{scheme}: {reason}")
    reason = "; ".join(reasons)
    return row | {
        "variant": " / ".join(candidates),
        "reason": reason,
        "paired_test": UNTESTED,
        "tflm_verdict": NOT_MEASURED,
        "cost": f"not made: {reason}",
    }


def recovery_ladder(results, mixed, qat_records, threshold_points=None):
    """One row per model (dataset, model, seed), lossy scheme of the study and rung of its ladder (``LADDERS``).

    ``results`` is the gathered results table with its tests, ``mixed`` the
    mixed variants' rows (``mixed_variants``), ``qat_records`` the fine-tuning
    records by key, ``threshold_points`` the recovery stage's threshold (to say
    why a mixed variant was not asked for).
    """
    table = with_mixed(results, mixed)
    variants = {(row.dataset, row.model, int(row.seed), str(row.scheme)): row for _, row in table.iterrows()}
    qat_variants = {key for key in variants if key[3] in QAT_SCHEMES}
    if qat_variants != set(qat_records):
        raise ValueError(
            f"the QAT records cover {sorted(qat_variants ^ set(qat_records))} differently from the results"
        )
    rows = []
    instances = table[["dataset", "dataset_name", "model", "seed"]].drop_duplicates()
    for dataset, dataset_name, model, seed in sorted(
        instances.itertuples(index=False), key=lambda row: (row.dataset, row.model, row.seed)
    ):
        instance = (dataset, model, int(seed))
        for base, rungs in LADDERS.items():
            if (*instance, base) not in variants:
                continue  # the scheme is not in the study
            for index, (rung, candidates) in enumerate(rungs.items()):
                row = _rung_row(base, rung, variants, candidates, instance, threshold_points, qat_records)
                rows.append(
                    {"dataset": dataset, "dataset_name": dataset_name, "model": model, "seed": int(seed)}
                    | {"ladder": base, "rung_index": index}
                    | row
                )
    ladder = pd.DataFrame(rows).reindex(columns=COLUMNS)
    for column in ("fp32_only_right", "variant_only_right"):
        ladder[column] = ladder[column].astype("Int64")
    return ladder


# --------------------------------------------------------------------------- Markdown


def _test_text(row):
    if pd.isna(row.mcnemar_p):
        return "-"
    mark = " *" if row.significant is True else ""
    family = " (m)" if row.paired_test == MIXED_TESTS else ""
    return f"{row.fp32_only_right} / {row.variant_only_right}, p {row.holm_p:.2g}{mark}{family}"


def _accuracy_text(row):
    if not row.made:
        return "-"
    return f"{100 * row.accuracy:.2f} [{100 * row.accuracy_ci_low:.2f}, {100 * row.accuracy_ci_high:.2f}]"


def ladder_markdown(ladder, results):
    """The "Recovery ladder" section of results.md: per dataset, a row per model, lossy scheme and rung."""
    if ladder.empty:
        return ""
    several_seeds = ladder.seed.nunique() > 1
    mixed_tested = int((ladder.paired_test == MIXED_TESTS).sum())
    lines = [
        "## Recovery ladder: what each step wins back, and what it costs\n",
        "For each model and lossy scheme, its variant made with more and more effort: **post-training** (the "
        "scheme as the grid makes it; int4 with min/max ranges), **better ranges** (int4 only: the more accurate "
        "of `int4_octav` and `int4_mse`, the same calibration with other 4-bit ranges), **mixed precision** (the "
        "worst layers one step up, where the deployment plan asked for it: the section above) and **QAT** "
        "(fine-tuned on the scheme's grid, then made by its tool). Accuracy on the whole test set with its 95 % "
        "Wilson interval; each change against fp32 with the exact McNemar test (fp32 only / variant only right); "
        "the grid's variants' p as in the tables above (Holm over the study), the mixed variants' `(m)` "
        f"Holm-corrected over the {mixed_tested} mixed variants tested here; `*` significant at {ALPHA:g} after it. "
        "TFLite Micro: `passes the gate` (runs with LiteRT's outputs), `wrong output` (runs, fails the "
        "correctness gate), `does not run`, `not measured` (not made). Cost: the fine-tuning's seconds for QAT, "
        "none for the post-training rungs; a rung not made says why. Every rung's variant, the mixed ones "
        'included, is weighed by "What to choose" and the per-board answer. Table: `recovery_ladder.csv`; '
        "figure: `figures/recovery_ladder`.\n",
    ]
    for dataset_name, part in ladder.groupby("dataset_name", sort=True):
        shown = pd.DataFrame(
            {
                "model": marked_models(part, results),
                **({"seed": part.seed} if several_seeds else {}),
                "scheme": part.ladder,
                "rung": part.rung,
                "variant": part.variant,
                "accuracy (%) [95% CI]": [_accuracy_text(row) for row in part.itertuples()],
                "change vs fp32 (points)": [
                    f"{row.accuracy_change_vs_fp32:+.2f}" if row.made else "-" for row in part.itertuples()
                ],
                "fp32 only / variant only right, Holm p": [_test_text(row) for row in part.itertuples()],
                "flash (KB)": [f"{row.flash_kb:.1f}" if row.made else "-" for row in part.itertuples()],
                "TFLite Micro": part.tflm_verdict,
                "cost": part.cost,
            }
        )
        lines.append(f"### {dataset_name}\n")
        lines.append(shown.to_markdown(index=False, disable_numparse=True) + "\n")
    return "\n".join(lines)


def gather_ladder(inputs, parameters, outputs, results, predictions, labels):
    """gather_results' part: writes recovery_ladder.csv; returns ``(mixed variants' rows, the ladder's Markdown)``.

    ``inputs``: ``recoveries`` and ``qat_records`` (record paths);
    ``parameters``: ``recovery_threshold_points``; ``outputs``: ``ladder_csv``;
    ``results`` the gathered table with its tests, ``predictions`` every grid
    variant's by key, ``labels`` each dataset's.
    """
    records, mixed_predictions = read_recoveries(inputs["recoveries"])
    mixed = mixed_variants(results, records, {**predictions, **mixed_predictions}, labels)
    qat_records = qat_records_by_key(inputs["qat_records"])
    ladder = recovery_ladder(results, mixed, qat_records, parameters["recovery_threshold_points"])
    write_csv(outputs["ladder_csv"], ladder)
    return mixed, ladder_markdown(ladder, results)
