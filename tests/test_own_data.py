"""Your own model and data: image-folder datasets and a trained Keras model through the whole grid.

The archives and the model are made here, by the tests (PNG and JPEG, grey and
colour, a few classes); nothing is committed.
"""

import io
import json
import tarfile
import zipfile
from collections import Counter

import pandas as pd
import pytest
import yaml

from tools.workflow import Workflow

from synthetic import image_files, trained_keras_model

SCHEMES_HERE = ("fp32", "int8", "int4", "int8_lut")
STUDY = "parts"


def grey_png_tar(path, per_class=40, size=16):
    with tarfile.open(path, "w:gz") as archive:
        for name, content in image_files(("train", "test"), per_class, size, False, "PNG"):
            info = tarfile.TarInfo(f"parts/{name}")
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return path


def colour_jpeg_zip(path, per_class=40, size=20):
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in image_files(("train",), per_class, size, True, "JPEG", seed=1):
            archive.writestr(name, content)
    return path


# --------------------------------------------------------------------------- through the whole grid (e2e)


@pytest.fixture(scope="module")
def own_study(tmp_path_factory, mirror):
    """A study of two image folders (grey PNG tar.gz, colour JPEG zip without test split) and a user's model."""
    root = tmp_path_factory.mktemp("own")
    workflow = Workflow.copy(root / "workflow", mirror)
    inputs = root / "inputs"
    inputs.mkdir()
    grey_png_tar(inputs / "grey.tar.gz")
    colour_jpeg_zip(inputs / "colour.zip")
    trained_keras_model(inputs / "users_cnn.keras", (16, 16, 1), 3)
    config = {
        "study": STUDY,
        "datasets": ["grey", "colour"],
        "models": ["custom", "resnet_v1", "users_cnn"],
        # The reference, the converter's int8, and the AI Edge Quantizer's and TFLite Micro's compression.
        "schemes": list(SCHEMES_HERE),
        "image_folders": {
            "grey": {"source": str(inputs / "grey.tar.gz")},
            "colour": {"source": str(inputs / "colour.zip"), "test_fraction": 0.25, "split_seed": 1},
        },
        "trained_models": {
            "users_cnn": {"file": str(inputs / "users_cnn.keras"), "dataset": "grey", "input_scale": 1 / 255}
        },
        "architectures": {"resnet_v1": {"depth": 8, "base_filters": 8}, "custom": {"base_filters": 8}},
        "training": {
            "epochs": 4,
            "batch_size": 32,
            "optimizer": "adam",
            "learning_rate": 0.01,
            "weight_decay": 0.0,
            "warmup_epochs": 0,
            "label_smoothing": 0.0,
            "validation_split": 0.1,
            "per_dataset": {},
        },
        "conversion": {
            **{
                scheme: {"calibration_images": 32, "calibration_seed": 0}
                for scheme in ("int8", "int16x8", "int8_per_tensor", "int4")
            },
            "calibration_sweep": [8],
        },
        "micro": {"agreement_images": 20},
        "diagnostics": {"layer_error_images": 8},
        "latency": {"invokes": 10, "warmup": 2},
    }
    name = workflow.write_config("own", config)
    workflow.run("--cores", "2", "--configfile", name)
    return workflow, name, inputs


@pytest.mark.e2e
def test_own_data_and_model_run_through_every_stage(own_study):
    workflow, _, _ = own_study
    study = workflow.study(STUDY)
    results = pd.read_csv(study / "reports" / "results.csv")
    pairs = Counter(zip(results.dataset, results.model))
    schemes = len(SCHEMES_HERE)
    assert pairs == {
        ("grey", "custom"): schemes,
        ("grey", "resnet_v1"): schemes,
        ("grey", "users_cnn"): schemes,
        ("colour", "custom"): schemes,
        ("colour", "resnet_v1"): schemes,
    }
    users = results[results.model == "users_cnn"]
    assert (users.model_source.str.startswith("imported from")).all()
    # The user's model, trained on shapes, recognizes them after import: its scale was applied.
    assert users[users.scheme == "fp32"].accuracy.item() > 0.8
    # fp32 and int8 keep the Keras model's answers; int4 may lose (a finding, not an import fault).
    faithful = users[users.scheme.isin(["fp32", "int8"])]
    assert len(faithful) == 2 and (faithful.accuracy - faithful.keras_test_accuracy).abs().max() < 0.05
    names = set(results.dataset_name)
    assert names == {"grey (image folder)", "colour (image folder, test carved from train (25%, seed 1))"}
    assert (results[results.dataset == "colour"].test_images == 30).all()
    assert (results[results.dataset == "grey"].test_images == 120).all()
    fit = pd.read_csv(study / "reports" / "fit_table.csv")
    boards = yaml.safe_load((workflow.folder / "config" / "config.yaml").read_text())["boards"]
    assert len(fit) == 5 * schemes * len(boards)
    # An imported model is trained once: it appears under the study's first seed.
    assert (results[results.model == "users_cnn"].seed == 42).all()
    assert (study / "firmware" / "grey" / "users_cnn" / "seed42" / "int8" / "op_resolver.h").is_file()
    assert (study / "reports" / "figures" / "learning_curves.png").is_file()
    # Nothing about MNIST or CIFAR-10 ran.
    assert sorted(path.name for path in (study / "data").iterdir()) == ["colour", "colour.npz", "grey", "grey.npz"]
    assert not (workflow.folder / "data").exists()


@pytest.mark.e2e
def test_adding_a_model_reruns_nothing_of_the_others(own_study):
    workflow, name, _ = own_study
    config = json.loads(json.dumps(__import__("yaml").safe_load((workflow.folder / name).read_text())))
    config["models"].append("mobilenet_v1")
    jobs = workflow.planned("--configfile", workflow.write_config("added", config))
    per_model = {wildcards for _, wildcards in jobs if "model=" in wildcards}
    assert per_model and all("model=mobilenet_v1" in wildcards for wildcards in per_model)


@pytest.mark.e2e
def test_replacing_an_archive_reruns_exactly_its_chain(own_study):
    workflow, name, inputs = own_study
    original = (inputs / "grey.tar.gz").read_bytes()
    grey_png_tar(inputs / "grey.tar.gz", per_class=41)
    try:
        jobs = workflow.planned("--configfile", name)
    finally:
        (inputs / "grey.tar.gz").write_bytes(original)
    per_dataset = {wildcards for _, wildcards in jobs if "dataset=" in wildcards}
    assert per_dataset and all("dataset=grey" in wildcards.split(", ") for wildcards in per_dataset)
    rules = Counter(rule for rule, _ in jobs)
    assert rules["fetch_dataset"] == 1 and rules["train_model"] == 2 and rules["import_model"] == 1
    assert rules["evaluate_model"] == 3 * len(SCHEMES_HERE) and rules["gather_results"] == 1


@pytest.mark.e2e
def test_replacing_the_model_file_reruns_exactly_its_chain(own_study):
    workflow, name, inputs = own_study
    original = (inputs / "users_cnn.keras").read_bytes()
    trained_keras_model(inputs / "users_cnn.keras", (16, 16, 1), 3, expects_unit_range=False)
    try:
        jobs = workflow.planned("--configfile", name)
    finally:
        (inputs / "users_cnn.keras").write_bytes(original)
    per_model = {wildcards for _, wildcards in jobs if "model=" in wildcards}
    assert per_model and all("model=users_cnn" in wildcards for wildcards in per_model)
    assert Counter(rule for rule, _ in jobs)["import_model"] == 1


@pytest.mark.e2e
def test_a_study_of_imported_models_only_runs_to_the_end(own_study):
    """No model is trained here, so there are no learning curves; every other report is made."""
    import yaml

    workflow, name, _ = own_study
    config = yaml.safe_load((workflow.folder / name).read_text())
    config.update(study="imported_only", datasets=["grey"], models=["users_cnn"])
    workflow.run("--cores", "2", "--configfile", workflow.write_config("imported_only", config))
    reports = workflow.study("imported_only") / "reports"
    results = pd.read_csv(reports / "results.csv")
    assert set(results.model) == {"users_cnn"} and len(results) == len(SCHEMES_HERE)
    assert "users_cnn (imported)" in (reports / "results.md").read_text()
    assert (reports / "figures" / "size_per_scheme.png").is_file()
    assert not (reports / "figures" / "learning_curves.png").exists()
