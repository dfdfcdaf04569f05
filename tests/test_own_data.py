"""Your own model and data: image-folder datasets and a trained Keras model through the whole grid.

The archives and the model are made here, by the tests (PNG and JPEG, grey and
colour, a few classes); nothing is committed.
"""

import io
import json
import tarfile
import zipfile
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from tinyml_quant.datasets import PreparedDataset
from tinyml_quant.importing import ModelMismatch, import_trained_model
from tools.workflow import Workflow

CLASSES = ("circle", "cross", "square")
SCHEMES_HERE = ("fp32", "int8", "int4", "int8_lut")
STUDY = "parts"


def shape_image(kind, size, rng, colour):
    """A noisy grey or colour picture of one of three shapes: learnable, not trivial."""
    pixels = rng.integers(0, 60, (size, size)).astype(np.uint8)
    yy, xx = np.mgrid[:size, :size]
    centre, radius = size / 2 + rng.uniform(-2, 2, 2), size / 3
    if kind == "circle":
        mask = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 < radius**2
    elif kind == "cross":
        mask = (abs(yy - centre[0]) < 2) | (abs(xx - centre[1]) < 2)
    else:
        mask = (abs(yy - centre[0]) < radius) & (abs(xx - centre[1]) < radius)
    pixels[mask] = 200 + rng.integers(0, 55)
    if colour:
        return Image.fromarray(np.stack([pixels, pixels[::-1], 255 - pixels], axis=-1), "RGB")
    return Image.fromarray(pixels, "L")


def image_files(splits, per_class, size, colour, format, seed=0):
    rng = np.random.default_rng(seed)
    for split in splits:
        for kind in CLASSES:
            for index in range(per_class):
                buffer = io.BytesIO()
                shape_image(kind, size, rng, colour).save(buffer, format=format, quality=95)
                yield f"{split}/{kind}/{index}.{format.lower().replace('jpeg', 'jpg')}", buffer.getvalue()


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


def trained_keras_model(path, input_shape, classes, expects_unit_range=True):
    """A small model trained on images scaled to 0..1, as many users' models are."""
    import keras

    from tinyml_quant.runtime import configure_tensorflow

    configure_tensorflow(1, seed=0)
    rng = np.random.default_rng(0)
    kinds = rng.integers(0, len(CLASSES), 480)
    images = np.stack([np.asarray(shape_image(CLASSES[k], input_shape[0], rng, input_shape[-1] == 3)) for k in kinds])
    images = images.reshape(len(kinds), *input_shape).astype("float32")
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(16, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(x), name="users_cnn")
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    scale = 1 / 255 if expects_unit_range else 1.0
    model.fit(images * scale, kinds, epochs=20, batch_size=32, verbose=0)
    model.save(path)
    return path


# --------------------------------------------------------------------------- importing a model (fast)


def toy_dataset(shape=(16, 16, 1), classes=3, count=30):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (count, *shape), dtype=np.uint8)
    labels = np.arange(count) % classes
    names = [f"c{index}" for index in range(classes)]
    return PreparedDataset(images, labels, images, labels, names, {"dataset": "parts", "name": "parts (test)"})


@pytest.fixture(scope="module")
def users_model(tmp_path_factory):
    return trained_keras_model(tmp_path_factory.mktemp("model") / "users.keras", (16, 16, 1), 3)


def test_a_model_trained_on_unit_range_inputs_gets_its_scale_inside(users_model):
    dataset = toy_dataset()
    plain, plain_metrics = import_trained_model(users_model, dataset, "trained_models.users")
    scaled, metrics = import_trained_model(users_model, dataset, "trained_models.users", input_scale=1 / 255)
    assert scaled.get_layer("declared_preprocessing").scale == pytest.approx(1 / 255)
    pixels = dataset.x_test[:4].astype("float32")
    np.testing.assert_allclose(scaled.predict(pixels, verbose=0), plain.predict(pixels / 255, verbose=0), atol=1e-5)
    assert metrics["preprocessing"] == {"input_scale": 1 / 255, "input_offset": 0.0, "applied": "inside the model"}
    assert metrics["source"].startswith("imported from")


def test_the_import_record_and_its_accuracy(users_model):
    import keras

    dataset = toy_dataset()
    model, metrics = import_trained_model(users_model, dataset, "trained_models.users", input_scale=1 / 255)
    reference = keras.models.load_model(users_model).predict(dataset.x_test / 255, verbose=0)
    accuracy = float(np.mean(reference.argmax(axis=1) == dataset.y_test))  # an independent count
    assert metrics == {
        "dataset": "parts",
        "dataset_name": "parts (test)",
        "model": "users",
        "source": f"imported from {users_model}",
        "parameters": model.count_params(),
        "test_images": 30,
        "test_accuracy": pytest.approx(accuracy),
        "preprocessing": {"input_scale": 1 / 255, "input_offset": 0.0, "applied": "inside the model"},
        "warning": None,
    }
    assert model.name == "users_cnn_with_preprocessing" and model.inputs[0].name == "image"


def shapes_dataset(count=150, size=16):
    """Grey pictures of the three shapes, as the user's model was trained on: a model that fits scores well."""
    rng = np.random.default_rng(5)
    labels = np.arange(count) % len(CLASSES)
    images = np.stack([np.asarray(shape_image(CLASSES[k], size, rng, False)) for k in labels])[..., None]
    return PreparedDataset(images, labels, images, labels, list(CLASSES), {"dataset": "parts", "name": "parts (test)"})


def test_a_model_declared_without_the_scale_it_was_trained_with_is_named_loudly(users_model, caplog):
    """Trained on pixels / 255, declared without input_scale: it would run, and score near chance, silently."""
    dataset = shapes_dataset()
    with caplog.at_level("WARNING", logger="tinyml_quant.importing"):
        _, metrics = import_trained_model(users_model, dataset, "trained_models.users")
    assert metrics["test_accuracy"] < 0.6
    assert metrics["warning"].startswith("trained_models.users.input_scale: the model scores ")
    assert "with input_scale 0.00392157; declare the scale and offset it was trained with" in metrics["warning"]
    assert metrics["warning"] in caplog.text
    _, declared = import_trained_model(users_model, dataset, "trained_models.users", input_scale=1 / 255)
    assert declared["warning"] is None and declared["test_accuracy"] > 0.9


def test_declared_preprocessing_scales_then_offsets_and_is_absent_when_neutral(users_model):
    import keras

    from tinyml_quant.importing import with_preprocessing

    plain = keras.models.load_model(users_model)
    assert with_preprocessing(plain, 1.0, 0.0) is plain
    shifted = with_preprocessing(plain, 1.0, -0.5)
    pixels = toy_dataset().x_test[:4].astype("float32") / 255
    np.testing.assert_allclose(shifted.predict(pixels, verbose=0), plain.predict(pixels - 0.5, verbose=0), atol=1e-5)


def test_a_model_with_two_outputs_is_refused(tmp_path):
    import keras

    from tinyml_quant.importing import check_fits

    inputs = keras.Input((16, 16, 1))
    flat = keras.layers.Flatten()(inputs)
    model = keras.Model(inputs, [keras.layers.Dense(3)(flat), keras.layers.Dense(3)(flat)])
    with pytest.raises(ModelMismatch, match="^trained_models.two: the model has 1 inputs and 2 outputs; one each$"):
        check_fits(model, toy_dataset(), "trained_models.two")


@pytest.mark.parametrize(
    "dataset, message",
    [
        (toy_dataset(shape=(20, 20, 1)), r"trained_models.users: the model takes inputs of shape \(16, 16, 1\)"),
        (toy_dataset(shape=(16, 16, 3)), r"but the images of parts \(test\) are \(16, 16, 3\)"),
        (toy_dataset(classes=4), r"trained_models.users: the model gives outputs of shape \(3,\), but parts"),
    ],
)
def test_a_model_that_does_not_fit_its_dataset_is_refused_naming_the_key(users_model, dataset, message):
    with pytest.raises(ModelMismatch, match=message):
        import_trained_model(users_model, dataset, "trained_models.users")


def test_a_model_file_that_does_not_load_is_named(tmp_path):
    (tmp_path / "broken.keras").write_bytes(b"PK\x03\x04 no zip")
    # The message names the file, the config key and the loader's own error type.
    named = r"broken.keras \(trained_models.users\): cannot load the model \([A-Z]\w*Error: "
    with pytest.raises(ModelMismatch, match=named):
        import_trained_model(tmp_path / "broken.keras", toy_dataset(), "trained_models.users")


def test_a_savedmodel_folder_is_imported_too(users_model, tmp_path):
    import keras

    keras.models.load_model(users_model).export(tmp_path / "saved", verbose=False)
    imported, metrics = import_trained_model(tmp_path / "saved", toy_dataset(), "trained_models.users", 1 / 255)
    reference, _ = import_trained_model(users_model, toy_dataset(), "trained_models.users", 1 / 255)
    unwrapped = imported.get_layer("saved")  # the SavedModel, named after its folder, behind the preprocessing
    assert unwrapped.inputs[0].name == "image" and unwrapped.inputs[0].dtype == "float32"
    pixels = toy_dataset().x_test[:4].astype("float32")
    np.testing.assert_allclose(imported.predict(pixels, verbose=0), reference.predict(pixels, verbose=0), atol=1e-5)
    from tinyml_quant.conversion import convert

    assert len(convert(imported, "fp32")) > 1000


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
    assert (reports / "figures" / "size_vs_accuracy.png").is_file()
    assert not (reports / "figures" / "learning_curves.png").exists()
