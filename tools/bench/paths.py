"""The fastest CPU training path: the paths Keras offers, what each measured, and the rule that adopts one.

A path is the training settings that choose it (``training.backend``,
``training.jit_compile``, ``training.precision``; config/README.md): TensorFlow
as the default trains today, TensorFlow with XLA, the JAX backend on the CPU,
and each of those under ``mixed_bfloat16``. The benchmark trains every built-in
model under every path twice, in a child process each (Keras reads its backend
once, when it is imported: ``environment`` gives the child its backend), and
records a ``Measured`` per model and path. ``decide`` then applies issue 39's
rule: the default adopts the fastest path that trains the default study at
least ``LEAST_SPEEDUP`` times as fast as today's, with every model's accuracy
within the seeds' spread of today's and seeded reruns giving identical weights
(the workflow's guarantee, docs/training.md); otherwise today's stays, and the
decision says why. Everything here but ``read_seed_ranges`` is pure.
"""

import csv
from dataclasses import dataclass
from pathlib import Path

from tinyml_quant.backends import backend_environment

from .report import table

# The settings that choose a path; every other training setting is the model's recipe.
PATH_KEYS = ("backend", "jit_compile", "precision")
# Keras' CPU paths: the backend, and XLA for TensorFlow's step (the JAX backend always compiles).
COMPILERS = {
    "TensorFlow": {"backend": "tensorflow", "jit_compile": False},
    "TensorFlow + XLA": {"backend": "tensorflow", "jit_compile": True},
    "JAX": {"backend": "jax", "jit_compile": False},
}
PATHS = {
    (name if precision == "float32" else f"{name}, {precision}"): {**settings, "precision": precision}
    for precision in ("float32", "mixed_bfloat16")
    for name, settings in COMPILERS.items()
}
# Issue 39: a path replaces today's at this speed-up of the default study's training, or not at all.
LEAST_SPEEDUP = 1.3


@dataclass(frozen=True)
class Measured:
    """One model trained under one path, twice with the same seed."""

    images_per_s: float  # the faster run's, steady epochs only
    accuracy: float  # test accuracy on the seeded test subset after the short schedule (a fraction)
    identical_weights: bool  # both runs ended with the same weights, bit for bit


@dataclass(frozen=True)
class Decision:
    path: str  # the path the default should train on
    adopted: bool  # True when that is not today's path
    speedups: dict  # path: the default study's training time under today's path over its own
    reasons: dict  # path other than today's: why it is not adopted ("" for the adopted one)
    sentence: str


def path_of(training):
    """The name of the path ``training`` (a recipe, or the config's ``training``) trains on; ValueError if none."""
    chosen = {key: training.get(key, default) for key, default in zip(PATH_KEYS, ("tensorflow", False, "float32"))}
    for name, settings in PATHS.items():
        if settings == chosen:
            return name
    raise ValueError(f"training: {chosen} is none of the benchmark's paths ({', '.join(PATHS)})")


def path_settings(recipe, path, epochs, seed, batch_size=None):
    """``recipe`` on ``path`` for the benchmark's short schedule: ``epochs`` epochs, no validation split, on the CPU.

    Without a validation split an epoch is its training steps alone, so every
    path trains the same steps and its epoch time is training time.
    """
    return {
        **recipe,
        **PATHS[path],
        "accelerator": "cpu",
        "epochs": epochs,
        "seed": seed,
        "validation_split": 0.0,
        "batch_size": batch_size or recipe["batch_size"],
    }


def environment(path, threads, current):
    """The variables a child process needs to train on ``path`` (its backend, on the CPU, with ``threads``).

    ``current``: the environment the child inherits (``os.environ``).
    """
    return backend_environment(PATHS[path]["backend"], "cpu", threads, current)


def measured(runs, images_per_second):
    """A ``Measured`` from two seeded runs of one model and path (``training.train_step``'s results)."""
    return Measured(
        images_per_s=max(images_per_second(run) for run in runs),
        accuracy=sum(run["test_accuracy"] for run in runs) / len(runs),
        identical_weights=len({run["weights_sha256"] for run in runs}) == 1 and len(runs) > 1,
    )


def study_speedup(results, path, today, weights):
    """Today's training time of the models over ``path``'s: each model's seconds per image times its weight.

    ``weights``: each model's share of the study's training images (its
    epochs, the images per epoch being the same), so a slow model that trains
    long counts for what it costs.
    """
    seconds = {
        name: sum(weight / results[model, name].images_per_s for model, weight in weights.items())
        for name in (path, today)
    }
    return seconds[today] / seconds[path]


def seed_ranges(rows):
    """``{"dataset/model": max - min}`` of fp32 test accuracy over the seeds, from a study's results.csv rows.

    Only the pairs trained with at least two seeds have a range.
    """
    accuracies = {}
    for row in rows:
        if row["scheme"] == "fp32" and row.get("accuracy") not in (None, ""):
            accuracies.setdefault(f"{row['dataset']}/{row['model']}", {})[row["seed"]] = float(row["accuracy"])
    return {
        pair: max(by_seed.values()) - min(by_seed.values()) for pair, by_seed in accuracies.items() if len(by_seed) > 1
    }


def read_seed_ranges(results_path):
    """``seed_ranges`` of the seeds study's published results.csv, or None where it is absent."""
    path = Path(results_path)
    if not path.is_file():
        return None
    with open(path, newline="") as handle:
        return seed_ranges(csv.DictReader(handle)) or None


def _points(fraction):
    return f"{100 * fraction:.1f}"


def reasons_against(results, path, today, speedup, spread, models, least_speedup):
    """Why ``path`` cannot replace ``today``: "" when it can."""
    missing = [model for model in models if (model, path) not in results]
    if missing:
        return f"not measured on {', '.join(missing)}"
    differ = [model for model in models if not results[model, path].identical_weights]
    if differ:
        return f"seeded reruns gave different weights on {', '.join(differ)}"
    if speedup < least_speedup:
        return f"{speedup:.2f}x, under {least_speedup}x"
    if spread is None:
        return f"{speedup:.2f}x, but its accuracy cannot be judged without the seeds' spread"
    outside = {
        model: results[model, path].accuracy - results[model, today].accuracy
        for model in models
        if abs(results[model, path].accuracy - results[model, today].accuracy) > spread
    }
    if outside:
        return (
            f"{speedup:.2f}x, but accuracy "
            + ", ".join(
                f"{'+' if change > 0 else ''}{_points(change)} points on {model}" for model, change in outside.items()
            )
            + f" against today's, outside the seeds' spread ({_points(spread)} points)"
        )
    return ""


def decide(results, today, spread, weights, least_speedup=LEAST_SPEEDUP):
    """The path the default should train on, by issue 39's rule, and a sentence that says why.

    ``results``: ``{(model, path): Measured}``; ``today``: the path the default
    trains on now; ``spread``: how far apart the seeds study's trainings of one
    model landed (a fraction of accuracy; None where that study's results are
    absent: then no path can show its accuracy is within it, and today's stays);
    ``weights``: ``{model: its share of the study's training}``, the models
    that count. A path is adopted when it is measured on every model, its
    seeded reruns give identical weights on every one, it trains the study at
    least ``least_speedup`` times as fast as today's (``study_speedup``) and
    every model's accuracy is within ``spread`` of today's, either way; of
    those, the fastest.
    """
    models = list(weights)
    if not models:
        raise ValueError("no model to decide by: weights is empty")
    missing = [model for model in models if (model, today) not in results]
    if missing:
        raise ValueError(f"today's path ({today}) was not measured on {', '.join(missing)}: nothing to compare with")
    candidates = [path for path in PATHS if path != today]
    speedups = {
        path: study_speedup(results, path, today, weights)
        for path in [today, *candidates]
        if all((model, path) in results for model in models)
    }
    reasons = {
        path: reasons_against(results, path, today, speedups.get(path, 0.0), spread, models, least_speedup)
        for path in candidates
    }
    adoptable = [path for path in candidates if not reasons[path]]
    absent = (
        ""
        if spread is not None
        else " The seeds study's results are absent, so there is no spread to judge accuracy by."
    )
    if adoptable:
        chosen = max(adoptable, key=lambda path: speedups[path])
        settings = ", ".join(f"training.{key}: {str(value).lower()}" for key, value in PATHS[chosen].items())
        sentence = (
            f"Adopt {chosen} ({settings}): it trains the default study {speedups[chosen]:.2f}x as fast as today's "
            f"{today} (at least {least_speedup}x), seeded reruns give identical weights, and every model's accuracy "
            f"is within the seeds' spread ({_points(spread)} points) of today's."
        )
        return Decision(chosen, True, speedups, reasons, sentence)
    ranked = sorted(candidates, key=lambda path: -speedups.get(path, 0.0))
    why = "; ".join(f"{path}: {reasons[path]}" for path in ranked)
    sentence = f"Keep today's {today}: no other path meets the rule ({why}).{absent}"
    return Decision(today, False, speedups, reasons, sentence)


def section(results, decision, models, today, spread_note, schedule):
    """The report's section: images/s per model and path, accuracy and identical weights, and the decision."""
    paths = [path for path in PATHS if any((model, path) in results for model in models)]
    rate_rows = []
    for model in models:
        cells = []
        for path in paths:
            if (model, path) not in results:
                cells.append("failed")
                continue
            rate = results[model, path].images_per_s
            base = results.get((model, today))
            cells.append(f"{rate:,.0f}" + (f" ({rate / base.images_per_s:.2f}x)" if base else ""))
        rate_rows.append([model, *cells])
    rate_rows.append(
        [
            "default study (CIFAR-10)",
            *(f"{decision.speedups[path]:.2f}x" if path in decision.speedups else "n/a" for path in paths),
        ]
    )
    detail_rows = [
        [
            model,
            path,
            _points(results[model, path].accuracy),
            f"{100 * (results[model, path].accuracy - results[model, today].accuracy):+.1f}"
            if (model, today) in results
            else "n/a",
            "yes" if results[model, path].identical_weights else "NO",
        ]
        for model in models
        for path in paths
        if (model, path) in results
    ]
    return (
        "## 8. The fastest CPU training path\n\n"
        f"Each built-in model trained by `tinyml_quant.training.train` under each path Keras offers on the CPU, "
        f"chosen by the training settings alone ({', '.join(f'`training.{key}`' for key in PATH_KEYS)}; one child "
        f"process per run, its `KERAS_BACKEND` set before Keras is imported): {schedule} CIFAR-10 here is the "
        "offline mirror's JPEG quality-75 copy. Images/s as in section 2 (steady epochs), the faster of two runs "
        f"with the same seed; in brackets, against today's path ({today}). `default study`: its CIFAR-10 training "
        "time under today's path over the path's, each model weighted by its epochs in the default recipe.\n\n"
        + table(["model", *paths], rate_rows)
        + "\nTest accuracy after the short schedule (a check that a path trains as well, judged against the seeds' "
        f"spread: {spread_note}), and whether the two seeded runs ended with identical weights:\n\n"
        + table(["model", "path", "test accuracy (%)", "vs today (points)", "identical weights"], detail_rows)
        + f"\n**Decision** (adopt the fastest path at least {LEAST_SPEEDUP}x as fast as today's with accuracy within "
        f"the seeds' spread and reproducible weights): {decision.sentence}\n"
    )
