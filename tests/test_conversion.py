"""Conversion: a small trained model converted with every scheme; what each variant holds and how close it stays."""

import json

import numpy as np
import pytest

from tinyml_quant.conversion import calibration_images, convert
from tinyml_quant.datasets import seeded_subset
from tinyml_quant.evaluation import classification_metrics, predict
from tinyml_quant.runtime import load_interpreter
from tinyml_quant.schemes import CONVERTER_SCHEMES

from synthetic import save_as_prepared


def test_fp32_tflite_accuracy_equals_keras_accuracy(trained, flatbuffers):
    model, test_images, test_labels, _ = trained
    keras_accuracy = np.mean(model.predict(test_images.astype("float32"), verbose=0).argmax(1) == test_labels)
    outputs, _ = predict(load_interpreter(flatbuffers["fp32"]), test_images, batch_size=32)
    assert keras_accuracy > 0.5, "the fixture model should have learnt the task"
    assert abs(np.mean(outputs.argmax(1) == test_labels) - keras_accuracy) <= 0.001


def test_sizes_order_as_the_schemes_promise(flatbuffers):
    size = {scheme: len(content) for scheme, content in flatbuffers.items()}
    assert size["fp32"] > size["float16"] > size["dynamic_range"]
    assert size["float16"] > size["int8"] and size["fp32"] > size["int16x8"]


def test_int8_variant_has_integer_input_and_output(flatbuffers):
    interpreter = load_interpreter(flatbuffers["int8"])
    assert interpreter.get_input_details()[0]["dtype"] == np.int8
    assert interpreter.get_output_details()[0]["dtype"] == np.int8


@pytest.mark.parametrize("scheme", CONVERTER_SCHEMES)
def test_quantized_variants_stay_close_to_fp32(trained, flatbuffers, scheme):
    _, test_images, test_labels, _ = trained
    reference, _ = predict(load_interpreter(flatbuffers["fp32"]), test_images, batch_size=100)
    outputs, _ = predict(load_interpreter(flatbuffers[scheme]), test_images, batch_size=100)
    metrics = classification_metrics(outputs.argmax(1), test_labels, ["a", "b", "c", "d"], reference.argmax(1))
    # The class probabilities themselves, not only the argmax: a wrong input scale moves them all.
    assert np.abs(outputs - reference).max() < 0.05
    assert metrics["agreement_with_fp32"] >= 0.98
    assert np.asarray(metrics["confusion_matrix"]).sum() == len(test_labels)


def test_int8_inputs_are_quantized_with_the_models_own_scale(trained):
    """A model whose int8 input scale is far from 1: only its own scale and zero point give fp32's answers."""
    import keras

    model, test_images, _, train_images = trained
    # The same function of the pixels, fed pixels x 7.3: the int8 input scale becomes about 7.3.
    inputs = keras.Input(model.input_shape[1:])
    stretched = keras.Model(inputs, model(keras.layers.Rescaling(1 / 7.3)(inputs)))
    int8 = convert(stretched, "int8", calibration_images(train_images * 7.3, 50, seed=0))
    interpreter = load_interpreter(int8)
    scale, zero_point = interpreter.get_input_details()[0]["quantization"]
    assert scale > 5
    reference, _ = predict(load_interpreter(convert(stretched, "fp32")), test_images * 7.3, batch_size=50)
    outputs, _ = predict(interpreter, (test_images * 7.3).astype(np.float32), batch_size=50)
    assert np.mean(outputs.argmax(1) == reference.argmax(1)) >= 0.98
    assert np.abs(outputs - reference).max() < 0.1


def test_calibration_needs_images(trained):
    with pytest.raises(ValueError, match="needs representative images"):
        convert(trained[0], "int8", None)


def test_the_conversion_job_calibrates_on_its_seeded_training_images(trained, tmp_path):
    from tinyml_quant.conversion import run_conversion

    model, test_images, test_labels, train_images = trained
    model.save(tmp_path / "model.keras")
    save_as_prepared(tmp_path / "toy.npz", test_images, test_labels, train_images=train_images)
    settings = {"calibration_images": 20, "calibration_seed": 3}
    run_conversion(tmp_path / "model.keras", tmp_path / "toy.npz", "int8", settings, 2, tmp_path / "int8.tflite")
    expected = convert(model, "int8", calibration_images(train_images, 20, seed=3))
    assert (tmp_path / "int8.tflite").read_bytes() == expected
    record = json.loads((tmp_path / "int8.json").read_text())
    assert record == {
        "tool": "TFLite converter",
        "scheme": "int8",
        "settings": settings,
        "status": "converted",
        "bytes": len(expected),
    }


def test_a_calibration_size_the_config_check_could_not_see_names_its_key_before_converting(trained, tmp_path):
    """A .tar.gz or URL dataset is counted only when prepared: the conversion job names the full key."""
    from tinyml_quant.conversion import run_conversion

    model, test_images, test_labels, train_images = trained
    model.save(tmp_path / "model.keras")
    save_as_prepared(tmp_path / "toy.npz", test_images, test_labels, train_images=train_images[:450])
    settings = {"calibration_images": 500, "calibration_seed": 0}
    with pytest.raises(ValueError, match="^conversion.int8.calibration_images: 500 is more than the 450 training imag"):
        run_conversion(tmp_path / "model.keras", tmp_path / "toy.npz", "int8", settings, 1, tmp_path / "int8.tflite")
    with pytest.raises(ValueError, match="^conversion.calibration_sweep: 500 is more than the 450 training images"):
        run_conversion(
            tmp_path / "model.keras",
            tmp_path / "toy.npz",
            "int8",
            settings,
            1,
            tmp_path / "int8_500.tflite",
            calibration_setting="conversion.calibration_sweep",
        )
    assert not list(tmp_path.glob("*.tflite")) and not list(tmp_path.glob("*.json"))


def test_a_model_the_converter_cannot_convert_is_marked_with_its_reason_and_nothing_else_is_lost(tmp_path):
    """A layer TFLite's builtin operators cannot express: the variant is marked, the job still succeeds."""
    import keras

    from tinyml_quant.conversion import run_conversion
    from tinyml_quant.variants import NotConverted, read_variant

    inputs = keras.Input((4, 4, 1))
    # erfinv: no TFLite builtin operator, and the converter is not allowed TensorFlow's own ops.
    spread = keras.ops.erfinv(keras.layers.Rescaling(1 / 256)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(spread)))
    model.save(tmp_path / "erfinv.keras")
    images = np.zeros((8, 4, 4, 1), np.uint8)
    save_as_prepared(tmp_path / "toy.npz", images, np.zeros(8, np.int64))
    run_conversion(tmp_path / "erfinv.keras", tmp_path / "toy.npz", "fp32", {}, 1, tmp_path / "fp32.tflite")
    record = json.loads((tmp_path / "fp32.json").read_text())
    assert record["status"] == "not converted" and record["tool"] == "TFLite converter"
    assert record["reason"] == "tf.Erfinv: 'tf.Erfinv' op is neither a custom op nor a flex op (ERROR_NEEDS_CUSTOM_OPS)"
    assert (tmp_path / "fp32.tflite").read_bytes() == b""
    with pytest.raises(NotConverted, match="TFLite converter: tf.Erfinv"):
        read_variant(tmp_path / "fp32.tflite")


def test_each_scheme_stores_the_tensor_types_it_promises(flatbuffers):
    def types(scheme):
        interpreter = load_interpreter(flatbuffers[scheme])
        stored = {np.dtype(detail["dtype"]).name for detail in interpreter.get_tensor_details()}
        return interpreter.get_input_details()[0]["dtype"], stored

    assert types("fp32") == (np.float32, {"float32", "int32"})
    input_type, stored = types("dynamic_range")
    assert input_type == np.float32 and "int8" in stored and "float16" not in stored
    input_type, stored = types("float16")
    assert input_type == np.float32 and "float16" in stored and "int8" not in stored
    input_type, stored = types("int8")
    assert input_type == np.int8 and "float32" not in stored and "int16" not in stored
    input_type, stored = types("int16x8")
    assert input_type == np.float32 and {"int16", "int8"} <= stored


def test_conversion_settings_are_refused_with_their_names(trained):
    model, _, _, train_images = trained
    with pytest.raises(ValueError, match=r"^unknown scheme 'int4' of the TFLite converter; its schemes: \['fp32', "):
        convert(model, "int4")
    with pytest.raises(ValueError, match="^calibration_images: 501 is more than the 500 training images; lower it$"):
        calibration_images(train_images, 501, seed=0)
    with pytest.raises(ValueError, match="^scheme int16x8 needs representative images for calibration$"):
        convert(model, "int16x8", train_images[:0].astype(np.float32))
    with pytest.raises(ValueError, match="^calibration_images must be at least 1, got 0$"):
        calibration_images(train_images, 0, seed=0)
    # One image is the least the schema allows ($defs/count), so it must be accepted.
    np.testing.assert_array_equal(
        calibration_images(train_images, 1, seed=4), train_images[seeded_subset(len(train_images), 1, 4)]
    )
    chosen = calibration_images(train_images, 3, seed=4)
    assert chosen.dtype == np.float32
    np.testing.assert_array_equal(chosen, train_images[seeded_subset(len(train_images), 3, 4)])
