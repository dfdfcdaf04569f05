"""Importing a user's trained Keras model: its scale, its checks, and the errors that name it."""

import json

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
        "fixed_batch_size": None,
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


def row_models(folder):
    """The issue's two models, built as a user did outside the workflow: fixed batch size 1, inputs / 255."""
    import keras

    keras.utils.set_random_seed(0)
    models = {}
    inputs = keras.Input((8, 8, 1), batch_size=1)
    rows = keras.layers.Reshape((8, 8))(inputs)  # an LSTM over the image's rows
    models["lstm"] = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(keras.layers.LSTM(8)(rows)))
    inputs = keras.Input((8, 8, 1), batch_size=1)
    tokens = keras.layers.Dense(8)(keras.layers.Reshape((8, 8))(inputs))
    attended = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)(tokens, tokens)
    pooled = keras.layers.GlobalAveragePooling1D()(attended)
    models["attention"] = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(pooled))
    paths = {}
    for name, model in models.items():
        paths[name] = folder / f"{name}.keras"
        model.save(paths[name])
    return paths


def imported_variants(tmp_path, name, schemes):
    """Import the user's model ``name`` through the workflow's entry points and convert it with ``schemes``."""
    from tinyml_quant.conversion import run_conversion
    from tinyml_quant.importing import run_import

    from synthetic import save_as_prepared

    paths = row_models(tmp_path)
    images = np.random.default_rng(1).integers(0, 256, (40, 8, 8, 1), dtype=np.uint8)
    save_as_prepared(tmp_path / "rows.npz", images, np.arange(40) % 4)
    imported = tmp_path / f"{name}_imported.keras"
    metrics = run_import(
        paths[name], tmp_path / "rows.npz", name, 1 / 255, 0.0, 1, imported, tmp_path / f"{name}.json", seed=0
    )
    settings = {"calibration_images": 20, "calibration_seed": 0}
    for scheme in schemes:
        run_conversion(imported, tmp_path / "rows.npz", scheme, settings, 1, tmp_path / f"{scheme}.tflite", True)
    return paths[name], images, metrics


def test_a_fixed_batch_attention_model_keeps_its_batch_converts_and_runs_on_tflite_micro(tmp_path):
    """Rebuilt without its batch size, the model gained SHAPE, GATHER, PACK and REDUCE_PROD: no firmware."""
    import keras

    from tinyml_quant.evaluation import run_evaluation
    from tinyml_quant.graph import operator_counts
    from tinyml_quant.micro import RUNS, measure_micro

    original, images, metrics = imported_variants(tmp_path, "attention", ["fp32", "int8"])
    user_model = keras.models.load_model(original)
    expected = np.stack([user_model(image[None] / 255.0)[0] for image in images.astype("float32")]).argmax(axis=1)
    assert metrics["test_accuracy"] == pytest.approx(np.mean(expected == np.arange(40) % 4))
    for scheme in ("fp32", "int8"):
        record = json.loads((tmp_path / f"{scheme}.json").read_text())
        assert record["status"] == "converted", record
        assert not {"SHAPE", "GATHER", "PACK", "REDUCE_PROD"} & set(operator_counts(tmp_path / f"{scheme}.tflite"))
        assert measure_micro(tmp_path / f"{scheme}.tflite", images[:2])["status"] == RUNS
    # At the study's batch size of 250 LiteRT could not resize the fixed input; it runs at the model's own.
    variant = {"dataset": "rows", "model": "attention", "scheme": "fp32"}
    evaluated = run_evaluation(
        tmp_path / "fp32.tflite", tmp_path / "rows.npz", variant, 1, 250, tmp_path / "e.json", tmp_path / "p.npy", None
    )
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), expected)
    assert evaluated["timing"].endswith("batches of 1") and metrics["fixed_batch_size"] == 1


def test_a_converter_crash_on_an_imported_model_marks_the_variant_naming_the_signal(tmp_path):
    """The int8 converter ends its process with SIGSEGV on a fixed-batch LSTM; the job goes on to its verdict."""
    _, _, metrics = imported_variants(tmp_path, "lstm", ["fp32", "int8"])
    # Kept at batch 1 the LSTM lowers (rebuilt without it: "Lowering tensor list ops is failed").
    assert json.loads((tmp_path / "fp32.json").read_text())["status"] == "converted"
    record = json.loads((tmp_path / "int8.json").read_text())
    assert record["status"] == "not converted" and record["tool"] == "TFLite converter"
    assert record["reason"] == "the converter crashed with signal SIGSEGV" and metrics["fixed_batch_size"] == 1


def test_a_model_built_for_batches_of_several_images_is_refused_naming_the_key(tmp_path):
    import keras

    inputs = keras.Input((16, 16, 1), batch_size=4)
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(inputs)))
    model.save(tmp_path / "four.keras")
    with pytest.raises(ModelMismatch, match=r"trained_models.four: the model's input is built for batches of 4 images"):
        import_trained_model(tmp_path / "four.keras", toy_dataset(), "trained_models.four")


def test_mlperf_tinys_published_model_imports_to_what_its_own_fp32_tflite_file_predicts(
    tmp_path, published_mirror, cifar10_sample
):
    """The .h5 through the study's import, against MLPerf's own float32 .tflite of it (an independent truth)."""
    from tinyml_quant.evaluation import predict
    from tinyml_quant.fetch import PUBLISHED_MODELS, fetch_published_model
    from tinyml_quant.importing import trained_source
    from tinyml_quant.runtime import load_interpreter

    name, published = "mlperf_tiny_resnet8", PUBLISHED_MODELS["mlperf_tiny_resnet8"]
    fetch_published_model(name, tmp_path / "manifest.json", mirror=str(published_mirror))
    keras_file, source = trained_source(tmp_path / "manifest.json", name)
    # As config.yaml declares it: raw pixels, 0 to 255, no rescaling.
    model, metrics = import_trained_model(
        keras_file, cifar10_sample, "trained_models.mlperf_resnet8", input_scale=1.0, source=source
    )
    ours = model.predict(cifar10_sample.x_test.astype("float32"), verbose=0)
    interpreter = load_interpreter(published_mirror / published.mirror_folder / published.fp32_file)
    theirs, _ = predict(interpreter, cifar10_sample.x_test, batch_size=len(cifar10_sample.x_test))
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
    assert (ours.argmax(axis=1) == theirs.argmax(axis=1)).all()
    # The import's own check finds no common scale that fits it better; MLPerf's model gets most of these
    # right (about 80 % of the JPEG copy's test images).
    assert metrics["warning"] is None and metrics["test_accuracy"] >= 0.6
    assert metrics["source"] == (f"imported: {published.description}, {published.keras_file} ({published.origin})")
