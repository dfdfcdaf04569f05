"""MLPerf Tiny's reference table: published, measured here and trained here, each row joined by its key."""

import copy

import pandas as pd
import pytest
import yaml

from tinyml_quant.mlperf import HEADING, reference_markdown, verdict
from tinyml_quant.statistics import wilson_interval

from conftest import REPOSITORY

MLPERF = yaml.safe_load((REPOSITORY / "config" / "config.yaml").read_text())["mlperf_reference"]
JPEG = "cifar10 (jpeg mirror)"


def row(dataset, model, seed, scheme, accuracy, images=1000, dataset_name=JPEG):
    low, high = wilson_interval(round(accuracy * images), images)
    return {
        "dataset": dataset,
        "dataset_name": dataset_name if dataset == "cifar10" else "mnist (official)",
        "model": model,
        "seed": seed,
        "scheme": scheme,
        "accuracy": accuracy,
        "accuracy_ci_low": low,
        "accuracy_ci_high": high,
        "test_images": images,
    }


def cell(accuracy, images=1000):
    low, high = wilson_interval(round(accuracy * images), images)
    return f"{100 * accuracy:.2f} [{100 * low:.2f}, {100 * high:.2f}]"


def published(dataset, accuracy, images=1000):
    low, high = wilson_interval(round(accuracy * images), images)
    record = {"dataset": dataset, "model": "mlperf_resnet8", "seed": 42, "scheme": "int8", "accuracy": accuracy}
    return record | {"accuracy_ci_low": low, "accuracy_ci_high": high, "file": "pretrainedResnet_quant.tflite"}


def table_rows(markdown):
    section = markdown[markdown.index(HEADING) :]
    lines = [line for line in section.splitlines() if line.startswith("|")][2:]  # past the header and its rule
    return [[part.strip() for part in line.strip("|").split("|")] for line in lines]


@pytest.fixture
def study():
    """A study's results in no particular order, with rows of other datasets, models and seeds beside the ones shown."""
    rows = [
        row("mnist", "mlperf_resnet8", 42, "fp32", 0.11),
        row("cifar10", "resnet8", 43, "int8", 0.815),
        row("cifar10", "mlperf_resnet8", 42, "int8", 0.793),
        row("cifar10", "custom", 42, "int8", 0.9),
        row("cifar10", "resnet8", 42, "fp32", 0.82),
        row("mnist", "resnet8", 42, "int8", 0.99),
        row("cifar10", "mlperf_resnet8", 42, "fp32", 0.79),
        row("cifar10", "resnet8", 43, "fp32", 0.83),
        row("cifar10", "resnet8", 42, "int8", 0.811),
        row("cifar10", "mlperf_resnet8", 42, "int4", 0.5),
    ]
    training = {
        ("cifar10", "resnet8", 42): {"settings": {"epochs": 30}},
        ("cifar10", "resnet8", 43): {"settings": {"epochs": 30}},
        ("mnist", "resnet8", 42): {"settings": {"epochs": 3}},
        ("cifar10", "custom", 42): {"settings": {"epochs": 20}},
        ("cifar10", "mlperf_resnet8", 42): {"source": "imported: MLPerf Tiny's pretrained ResNet-8"},
    }
    # Another record first: a record taken by position would be the wrong one.
    records = {
        ("mnist", "mlperf_resnet8", 42): published("mnist", 0.2),
        ("cifar10", "mlperf_resnet8", 42): published("cifar10", 0.796),
    }
    return pd.DataFrame(rows), training, records


def test_each_row_holds_the_figures_of_its_own_key(study):
    table, training, records = study
    markdown = reference_markdown(table.sample(frac=1, random_state=3), training, records, MLPERF)
    jpeg = "the JPEG quality-75 copy of CIFAR-10, 1,000"
    mlperf_epochs = f"{MLPERF['published_epochs']} (MLPerf's train.py)"
    assert table_rows(markdown) == [
        [
            "published by MLPerf Tiny",
            "the official cifar10 test set, 10,000",
            mlperf_epochs,
            cell(MLPERF["published_accuracy"]["fp32"], 10_000),
            cell(MLPERF["published_accuracy"]["int8"], 10_000),
            "yes",
        ],
        [
            "`mlperf_resnet8`: MLPerf's pretrained model, its own int8 file (pretrainedResnet_quant.tflite)",
            jpeg,
            mlperf_epochs,
            cell(0.79),
            cell(0.796),
            "no, on shifted data",
        ],
        [
            "`mlperf_resnet8`: MLPerf's pretrained model, this study's int8 of its weights",
            jpeg,
            mlperf_epochs,
            cell(0.79),
            cell(0.793),
            "no, on shifted data",
        ],
        [
            "`resnet8` trained here, seed 42",
            jpeg,
            "30 (this study's recipe)",
            cell(0.82),
            cell(0.811),
            "no, on the copy",
        ],
        [
            "`resnet8` trained here, seed 43",
            jpeg,
            "30 (this study's recipe)",
            cell(0.83),
            cell(0.815),
            "no, on the copy",
        ],
    ]
    assert "The test images here are the JPEG quality-75 copy of CIFAR-10, not the official ones." in markdown


def test_on_the_official_images_the_verdict_stands_as_it_is_and_without_the_pretrained_model_its_rows_go(study):
    table, training, records = study
    official = table.assign(dataset_name="cifar10 (official binary)")
    markdown = reference_markdown(official, training, records, MLPERF)
    assert [line[-1] for line in table_rows(markdown)] == ["yes", "no", "no", "no", "no"]
    assert "shifted data" not in markdown and "official binary" in markdown
    alone = reference_markdown(table, training, {}, MLPERF)  # its own int8 file not evaluated: that row goes
    assert [line[0].split(":")[0] for line in table_rows(alone)][:3] == [
        "published by MLPerf Tiny",
        "`mlperf_resnet8`",
        "`resnet8` trained here, seed 42",
    ]
    without = reference_markdown(table, training, records, {**MLPERF, "pretrained_model": None})
    assert "mlperf_resnet8" not in without and "MLPerf's own pretrained model" not in without
    nothing = reference_markdown(table, training, records, {**MLPERF, "pretrained_model": None, "model": "vgg"})
    assert nothing == ""


@pytest.mark.parametrize(
    "low, high, answer",
    [(0.86, 0.88, "yes"), (0.85, 0.86, "yes"), (0.80, 0.849, "no"), (0.84, 0.86, "undecided"), (None, None, "-")],
)
def test_the_target_is_met_only_where_the_whole_interval_clears_it(low, high, answer):
    assert verdict(low, high, 0.85) == answer


def test_a_published_accuracy_near_the_target_is_undecided_over_the_official_test_set(study):
    table, training, records = study
    near = copy.deepcopy(MLPERF)
    near["published_accuracy"]["int8"] = 0.853  # [84.6, 86.0] over 10,000 images
    assert table_rows(reference_markdown(table, training, records, near))[0][-1] == "undecided"
