"""MLPerf Tiny's image-classification reference model: published, measured here, and trained here, side by side.

One table (``reference_markdown``), its rows joined on the records' keys
(dataset, model, seed, scheme), never on position:

* what MLPerf Tiny publishes for its ResNet-8 (config ``mlperf_reference``),
  on the official CIFAR-10 test set; its 95 % intervals are computed here from
  the published accuracy over that set's size;
* MLPerf's own pretrained model (``mlperf_reference.pretrained_model``,
  imported from its published Keras file) measured on this study's test
  images: its fp32 variant, MLPerf's own int8 file as published (rule
  ``evaluate_published_int8``), and this study's int8 variant of its weights;
* this study's own training of the architecture (``mlperf_reference.model``),
  one row per seed.

Where the study's test images are a copy of the benchmark's (CIFAR-10's JPEG
quality-75 mirror), a model trained on the official images sees them as
shifted data: the verdict against the quality target says which images it is
on.
"""

import pandas as pd

from .fetch import BUILTIN_DATASETS, source_description
from .report_markdown import percent
from .schemes import FULL_INTEGER, REFERENCE_SCHEME
from .statistics import wilson_interval

HEADING = "## MLPerf Tiny's reference model: published, measured here, and trained here"


def accuracy_cell(accuracy, low, high):
    """``"87.20 [86.53, 87.84]"``, or ``-`` where there is no accuracy."""
    if accuracy is None or pd.isna(accuracy):
        return "-"
    return f"{percent(accuracy)} [{percent(low)}, {percent(high)}]"


def verdict(low, high, target):
    """Whether an accuracy's 95 % interval ``[low, high]`` clears ``target``: yes, no, or undecided (it straddles)."""
    if low is None or pd.isna(low):
        return "-"
    if low >= target:
        return "yes"
    return "no" if high < target else "undecided"


def _published_row(mlperf):
    """MLPerf Tiny's published figures, with intervals over the benchmark's test set where its size is known."""
    builtin = BUILTIN_DATASETS.get(mlperf["dataset"])
    images = builtin.test_images if builtin else None

    def cell(scheme):
        accuracy = mlperf["published_accuracy"][scheme]
        if images is None:
            return f"{percent(accuracy)}", None, None
        low, high = wilson_interval(round(accuracy * images), images)
        return accuracy_cell(accuracy, low, high), low, high

    fp32, _, _ = cell(REFERENCE_SCHEME)
    int8, low, high = cell(FULL_INTEGER)
    return {
        "": "published by MLPerf Tiny",
        "test images": f"the official {mlperf['dataset']} test set" + (f", {images:,}" if images else ""),
        "epochs": f"{mlperf['published_epochs']} (MLPerf's train.py)",
        "fp32 (%) [95 %]": fp32,
        "int8 (%) [95 %]": int8,
        "_verdict": verdict(low, high, mlperf["quality_target"]),
    }


def _variant(table, key, scheme):
    """The one row of ``table`` for ``key`` (dataset, model, seed) and ``scheme``; None where the study has none."""
    dataset, model, seed = key
    rows = table[(table.dataset == dataset) & (table.model == model) & (table.seed == seed) & (table.scheme == scheme)]
    if len(rows) > 1:
        raise ValueError(f"the results hold {len(rows)} rows of {scheme} for (dataset, model, seed) {key}")
    return None if rows.empty else rows.iloc[0]


def _interval(row):
    """``(accuracy, low, high)`` of a results row, or Nones."""
    if row is None:
        return None, None, None
    return row.accuracy, row.accuracy_ci_low, row.accuracy_ci_high


def reference_markdown(table, training_records, published_records, mlperf):
    """The MLPerf section of ``results.md``; "" when the study holds neither MLPerf's model nor its architecture.

    ``table``: the gathered results (with intervals); ``training_records``: the training and import
    records by (dataset, model, seed); ``published_records``: the records of publishers' own int8 files
    (``evaluation.run_published_evaluation``) by (dataset, model, seed); ``mlperf``: the config's
    ``mlperf_reference``.
    """
    dataset, target = mlperf["dataset"], mlperf["quality_target"]
    pretrained, architecture = mlperf["pretrained_model"], mlperf["model"]
    # (label, epochs, fp32, int8, trained on the official images): accuracies as (accuracy, low, high).
    rows = []
    for key in sorted(key for key in training_records if key[:2] == (dataset, pretrained)):
        fp32 = _interval(_variant(table, key, REFERENCE_SCHEME))
        epochs = f"{mlperf['published_epochs']} (MLPerf's train.py)"
        published = published_records.get(key)
        if published is not None:
            own = (published["accuracy"], published["accuracy_ci_low"], published["accuracy_ci_high"])
            label = f"`{pretrained}`: MLPerf's pretrained model, its own int8 file ({published['file']})"
            rows.append((label, epochs, fp32, own, True))
        label = f"`{pretrained}`: MLPerf's pretrained model, this study's int8 of its weights"
        rows.append((label, epochs, fp32, _interval(_variant(table, key, FULL_INTEGER)), True))
    trained = sorted(key for key in training_records if key[:2] == (dataset, architecture))
    for key in trained:
        settings = training_records[key].get("settings") or {}
        rows.append(
            (
                f"`{architecture}` trained here" + (f", seed {key[2]}" if len(trained) > 1 else ""),
                f"{settings['epochs']} (this study's recipe)" if "epochs" in settings else "-",
                _interval(_variant(table, key, REFERENCE_SCHEME)),
                _interval(_variant(table, key, FULL_INTEGER)),
                False,
            )
        )
    measured = table[table.dataset == dataset]
    if not rows or measured.empty:
        return ""
    dataset_name = measured.dataset_name.iloc[0]
    description = source_description(dataset, dataset_name)
    images = measured.test_images.dropna()
    here = (description or dataset_name) + (f", {int(images.iloc[0]):,}" if len(images) else "")
    shown = [_published_row(mlperf)]
    for label, epochs, fp32, int8, official_images in rows:
        answer = verdict(int8[1], int8[2], target)
        if description and answer != "-":
            # Trained on the official images, MLPerf's model sees the copy as shifted data; this study's
            # model is trained and tested on the copy, and its verdict holds for the copy.
            answer += ", on shifted data" if official_images else ", on the copy"
        shown.append(
            {
                "": label,
                "test images": here,
                "epochs": epochs,
                "fp32 (%) [95 %]": accuracy_cell(*fp32),
                "int8 (%) [95 %]": accuracy_cell(*int8),
                "_verdict": answer,
            }
        )
    frame = pd.DataFrame(shown).rename(columns={"_verdict": f"int8 meets {100 * target:g} %"})
    return _explanation(mlperf, description, rows) + "\n" + frame.to_markdown(index=False, disable_numparse=True) + "\n"


def _explanation(mlperf, description, rows):
    """What the table holds, and, where the test images are a copy of the benchmark's, what that does to a verdict."""
    target = mlperf["quality_target"]
    pretrained_here = any(official for *_, official in rows)
    trained_here = not all(official for *_, official in rows)
    measured = []
    if pretrained_here:
        measured.append(
            f"MLPerf's own pretrained model (`{mlperf['pretrained_model']}`): its fp32, its own int8 file as "
            "published (int8 input of scale 1 and zero point -128: raw pixels), and this study's int8 made from "
            "its weights (`conversion.int8`)"
        )
    if trained_here:
        measured.append(f"this study's own training of the architecture (`{mlperf['model']}`, `training`)")
    text = (
        f"{HEADING}\n\n"
        f"MLPerf Tiny publishes its reference ResNet-8's accuracy on the official {mlperf['dataset']} test set and "
        f"a quality target of {100 * target:g} % (`mlperf_reference`). Measured here, on the test images of every "
        f"other model of the study: {'; and '.join(measured)}. Intervals are 95 % Wilson intervals; the published "
        "ones are computed here from the published accuracy over the official test set. The target is met where "
        "the int8 interval lies above it, missed where it lies below it, undecided where it holds it.\n"
    )
    if not description:
        return text
    notes = []
    if pretrained_here:
        notes.append(
            'MLPerf\'s model, trained on the official images, sees them as shifted data ("on shifted data"): its '
            "accuracy here says how it carries over to them, not whether it meets the target."
        )
    if trained_here:
        notes.append(
            'This study\'s model is trained and tested on the copy ("on the copy"): its verdict holds for the copy.'
        )
    return text + f"\nThe test images here are {description}, not the official ones. " + " ".join(notes) + "\n"
