"""Importing a user's trained Keras model: its scale, its checks, and the errors that name it."""

import numpy as np
import pytest

from tinyml_quant.datasets import PreparedDataset
from tinyml_quant.importing import ModelMismatch, import_trained_model

from synthetic import SHAPES, shape_image, trained_keras_model


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
    labels = np.arange(count) % len(SHAPES)
    images = np.stack([np.asarray(shape_image(SHAPES[k], size, rng, False)) for k in labels])[..., None]
    return PreparedDataset(images, labels, images, labels, list(SHAPES), {"dataset": "parts", "name": "parts (test)"})


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


def test_a_keras_2_hdf5_file_is_imported_as_its_keras_file_is(users_model, tmp_path):
    """MLPerf Tiny ships its models as tf.keras 2 HDF5 files (``.h5``); they run as the same model saved ``.keras``."""
    import keras

    keras.models.load_model(users_model).save(tmp_path / "users.h5")
    dataset = shapes_dataset()
    from_h5, h5_metrics = import_trained_model(tmp_path / "users.h5", dataset, "trained_models.users", 1 / 255)
    from_keras, keras_metrics = import_trained_model(users_model, dataset, "trained_models.users", 1 / 255)
    pixels = dataset.x_test[:8].astype("float32")
    np.testing.assert_allclose(from_h5.predict(pixels, verbose=0), from_keras.predict(pixels, verbose=0), atol=1e-6)
    assert h5_metrics["test_accuracy"] == keras_metrics["test_accuracy"] > 0.9
