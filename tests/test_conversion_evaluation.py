"""Convert a small trained model with every scheme and evaluate it with LiteRT."""

import numpy as np
import pytest

from tinyml_quant.conversion import SCHEMES, calibration_images, convert
from tinyml_quant.datasets import seeded_subset
from tinyml_quant.evaluation import (
    classification_metrics,
    evaluation_interpreters,
    input_converter,
    load_interpreter,
    predict,
    quantize_input,
)

from synthetic import brightest_quadrant, fitted, save_as_prepared


@pytest.fixture(scope="module")
def trained():
    """A small CNN fitted to a learnable synthetic task: the class is the brightest quadrant."""
    from tinyml_quant.architectures import build_model
    from tinyml_quant.training import configure_tensorflow

    configure_tensorflow(threads=2, seed=0)
    images, labels = brightest_quadrant(600)
    model = fitted(build_model("custom", (16, 16, 1), 4, base_filters=24), images[:500], labels[:500])
    return model, images[500:], labels[500:], images[:500]


@pytest.fixture(scope="module")
def flatbuffers(trained):
    model, _, _, train_images = trained
    representative = calibration_images(train_images, 50, seed=0)
    return {scheme: convert(model, scheme, representative) for scheme in SCHEMES}


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


@pytest.mark.parametrize("scheme", SCHEMES)
def test_quantized_variants_stay_close_to_fp32(trained, flatbuffers, scheme):
    _, test_images, test_labels, _ = trained
    reference, _ = predict(load_interpreter(flatbuffers["fp32"]), test_images, batch_size=100)
    outputs, _ = predict(load_interpreter(flatbuffers[scheme]), test_images, batch_size=100)
    metrics = classification_metrics(outputs.argmax(1), test_labels, ["a", "b", "c", "d"], reference.argmax(1))
    # The class probabilities themselves, not only the argmax: a wrong input scale moves them all.
    assert np.abs(outputs - reference).max() < 0.05
    assert metrics["agreement_with_fp32"] >= 0.98
    assert np.asarray(metrics["confusion_matrix"]).sum() == len(test_labels)


def test_metrics_match_an_independent_count():
    predictions = np.array([0, 1, 1, 2, 2, 2, 0, 1])
    labels = np.array([0, 1, 2, 2, 2, 0, 0, 1])
    reference = np.array([0, 1, 2, 2, 1, 2, 1, 1])
    metrics = classification_metrics(predictions, labels, ["a", "b", "c"], reference)
    assert metrics["accuracy"] == 6 / 8
    assert metrics["agreement_with_fp32"] == 5 / 8
    assert metrics["per_class_accuracy"] == {"a": 2 / 3, "b": 2 / 2, "c": 2 / 3}
    assert metrics["confusion_matrix"] == [[2, 0, 1], [0, 2, 0], [0, 1, 2]]
    # Counts, not floats: the metrics JSON and the confusion CSV would show 2.0.
    assert {type(count) for row in metrics["confusion_matrix"] for count in row} == {int}


def test_per_class_accuracy_of_a_class_with_one_test_image_or_none():
    """A class's accuracy divides by its own image count, even of one; a class with no image gets 0, not NaN."""
    metrics = classification_metrics(np.array([0, 1, 2]), np.array([0, 0, 2]), ["a", "b", "c", "d"])
    assert metrics["per_class_accuracy"] == {"a": 1 / 2, "b": 0.0, "c": 1.0, "d": 0.0}
    assert "agreement_with_fp32" not in metrics  # no reference given: the fp32 variant's own record


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


@pytest.mark.parametrize("scheme", SCHEMES)
def test_batched_evaluation_equals_one_image_at_a_time(trained, flatbuffers, scheme):
    _, test_images, _, _ = trained
    batched, _ = predict(load_interpreter(flatbuffers[scheme]), test_images, batch_size=33)
    single, _ = predict(load_interpreter(flatbuffers[scheme]), test_images, batch_size=1)
    np.testing.assert_array_equal(batched.argmax(1), single.argmax(1))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_interpreters_side_by_side_equal_one_image_at_a_time(trained, flatbuffers, scheme):
    _, test_images, _, _ = trained
    side_by_side, _ = predict([load_interpreter(flatbuffers[scheme]) for _ in range(3)], test_images, batch_size=33)
    batched, _ = predict(load_interpreter(flatbuffers[scheme]), test_images, batch_size=33)
    single, _ = predict(load_interpreter(flatbuffers[scheme]), test_images, batch_size=1)
    np.testing.assert_array_equal(side_by_side, batched)  # the same batches on the same kernels
    np.testing.assert_array_equal(side_by_side.argmax(1), single.argmax(1))


def test_single_threaded_schemes_get_one_interpreter_per_thread(flatbuffers):
    assert len(evaluation_interpreters(flatbuffers["int16x8"], "int16x8", threads=3)) == 3
    assert len(evaluation_interpreters(flatbuffers["int16x8"], "int16x8", threads=1)) == 1
    assert len(evaluation_interpreters(flatbuffers["int8"], "int8", threads=3)) == 1
    # One thread unless told: a caller that names no threads gets one interpreter, whatever the scheme.
    assert len(evaluation_interpreters(flatbuffers["int16x8"], "int16x8")) == 1


def test_each_interpreter_is_asked_for_the_threads_of_its_layout(monkeypatch):
    from tinyml_quant import evaluation

    # No default for threads: each interpreter's thread count must be asked for, not left to a default.
    monkeypatch.setattr(evaluation, "load_interpreter", lambda model, threads: ("interpreter", model, threads))
    assert evaluation_interpreters("m.tflite", "int16x8", threads=3) == [("interpreter", "m.tflite", 1)] * 3
    assert evaluation_interpreters("m.tflite", "int8", threads=3) == [("interpreter", "m.tflite", 3)]
    assert evaluation_interpreters("m.tflite", "int16x8") == [("interpreter", "m.tflite", 1)]


def test_litert_is_built_with_the_threads_asked_for_one_unless_told(monkeypatch, tmp_path):
    import ai_edge_litert.interpreter as litert

    # LiteRT has no getter for an interpreter's thread count: its constructor's arguments are recorded.
    built = []

    class RecordingLiteRT:
        def __init__(self, **arguments):
            built.append(arguments)

        def allocate_tensors(self):
            pass

    monkeypatch.setattr(litert, "Interpreter", RecordingLiteRT)
    model_path = tmp_path / "model.tflite"
    load_interpreter(model_path)
    load_interpreter(model_path, threads=3)
    load_interpreter(b"flatbuffer", threads=2)
    load_interpreter(bytearray(b"flatbuffer"))
    assert built == [
        {"model_path": str(model_path), "num_threads": 1},
        {"model_path": str(model_path), "num_threads": 3},
        {"model_content": b"flatbuffer", "num_threads": 2},
        {"model_content": b"flatbuffer", "num_threads": 1},
    ]


@pytest.mark.parametrize(
    "detail",
    [
        {"dtype": np.int8, "quantization": (1.0, -128)},
        {"dtype": np.int8, "quantization": (1.0009765625, -128)},
        # calibrated on images that never reach 255: pixels 0-127 and 128-255 take offsets one apart
        {"dtype": np.int8, "quantization": (254 / 255, -128)},
        {"dtype": np.uint8, "quantization": (1.0, 0)},
        {"dtype": np.int8, "quantization": (1.0, -100)},
        {"dtype": np.int8, "quantization": (0.7, 3)},
        {"dtype": np.uint8, "quantization": (2.5, 10)},
        {"dtype": np.int16, "quantization": (1.0, 0)},  # a wider tensor: no one-byte wrapping addition
        {"dtype": np.float32, "quantization": (0.0, 0)},
    ],
)
def test_fast_input_conversion_quantizes_pixels_as_the_formula_does(detail):
    pixels = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    pixels[0, 0, 0, :] = [0, 255, 128]
    converted = input_converter(detail, np.uint8)(pixels)
    expected = quantize_input(pixels, detail)
    assert converted.dtype == expected.dtype
    np.testing.assert_array_equal(converted, expected)


def test_input_quantization_uses_the_tensor_scale_and_zero_point():
    detail = {"dtype": np.int8, "quantization": (2.0, -128)}
    # Out-of-range values saturate at both ends, not wrap around.
    assert quantize_input(np.array([-10.0, 0.0, 2.0, 255.0, 1000.0]), detail).tolist() == [-128, -128, -127, 0, 127]


def test_input_quantization_divides_in_float32_as_tflite_does():
    # TFLite's quantize kernel divides in float: 129 / float32(2/255) is 16447.5 in float32, whose
    # rounding is 16448 both half-to-even and half-away-from-zero; in float64 it is 16447.499.
    detail = {"dtype": np.int16, "quantization": (float(np.float32(2 / 255)), 0)}
    assert quantize_input(np.array([129.0]), detail).tolist() == [16448]
    assert quantize_input(np.array([129], dtype=np.uint8), detail).tolist() == [16448]


def one_quantize_op_model(length, scale, zero_point, tensor_type):
    """A model of a single QUANTIZE op, ``length`` float32 values in, quantized values out."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.QUANTIZE
    code.version = 1
    floats, quantized = schema.TensorT(), schema.TensorT()
    floats.name, floats.type, floats.buffer = b"floats", schema.TensorType.FLOAT32, 1
    quantized.name, quantized.type, quantized.buffer = b"quantized", tensor_type, 2
    floats.shape = quantized.shape = [length]
    quantized.quantization = schema.QuantizationParametersT()
    quantized.quantization.scale, quantized.quantization.zeroPoint = [scale], [zero_point]
    operator = schema.OperatorT()
    operator.opcodeIndex, operator.inputs, operator.outputs = 0, [0], [1]
    subgraph = schema.SubGraphT()
    subgraph.tensors, subgraph.inputs, subgraph.outputs, subgraph.operators = [floats, quantized], [0], [1], [operator]
    model = schema.ModelT()
    model.version, model.operatorCodes, model.subgraphs = 3, [code], [subgraph]
    model.buffers = [schema.BufferT() for _ in range(3)]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@pytest.mark.parametrize(
    "dtype, tensor_type, scale, zero_point",
    [
        (np.int8, "INT8", 2.0, 0),  # x.5 ties at every odd value
        (np.int8, "INT8", 0.7, -3),
        (np.int8, "INT8", 1.0, -128),  # the study's int8 models
        (np.int16, "INT16", float(np.float32(2 / 255)), 0),  # float32 and float64 quotients round apart
    ],
)
def test_input_quantization_equals_tflite_micros_quantize_kernel(dtype, tensor_type, scale, zero_point):
    """quantize_input gives what a QUANTIZE op gives on the microcontroller, ties and saturation included.

    TFLite Micro runs TFLite's reference kernel: a float32 division, rounded half away from zero
    (TfLiteRound), then clamped. LiteRT's optimized kernels on this machine do not agree even with
    themselves (int8: half to even; int16: half to even in 16-value blocks and half away in the
    rest), so the reference is the one the firmware runs.
    """
    from ai_edge_litert import schema_py_generated as schema
    from tflite_micro import runtime

    just_below_half = np.nextafter(np.float32(0.5), np.float32(0))
    values = np.concatenate(
        [
            np.arange(-300, 300, 0.5),
            np.random.default_rng(0).uniform(-70_000, 70_000, 1000),
            [just_below_half * scale, -just_below_half * scale, 129.0],
        ]
    ).astype(np.float32)
    model = one_quantize_op_model(len(values), scale, zero_point, getattr(schema.TensorType, tensor_type))
    interpreter = runtime.Interpreter.from_bytes(model, arena_size=64 * 1024)  # the default is too small
    interpreter.set_input(values, 0)
    interpreter.invoke()
    detail = {"dtype": dtype, "quantization": (scale, zero_point)}
    np.testing.assert_array_equal(quantize_input(values, detail), interpreter.get_output(0))


def test_calibration_needs_images(trained):
    with pytest.raises(ValueError, match="needs representative images"):
        convert(trained[0], "int8", None)


def test_garbage_tflite_file_is_a_clear_error(tmp_path, flatbuffers):
    path = tmp_path / "broken.tflite"
    path.write_bytes(flatbuffers["fp32"][:200])
    with pytest.raises(ValueError, match="broken.tflite: not a loadable TFLite model"):
        load_interpreter(path)
    for content in (flatbuffers["fp32"][:200], bytearray(flatbuffers["fp32"][:200])):
        with pytest.raises(ValueError, match="^model bytes: not a loadable TFLite model"):
            load_interpreter(content)


def test_the_agreement_column_compares_with_the_reference_predictions(trained, flatbuffers, tmp_path):
    """run_evaluation's agreement is with the fp32 variant's predictions, not with its own."""
    from ai_edge_litert import __version__ as litert_version

    from tinyml_quant.evaluation import run_evaluation

    _, test_images, test_labels, _ = trained
    save_as_prepared(tmp_path / "toy.npz", test_images, test_labels)
    (tmp_path / "int8.tflite").write_bytes(flatbuffers["int8"])
    reference = np.zeros(len(test_labels), np.int16)  # a reference that says class 0 everywhere
    np.save(tmp_path / "fp32.npy", reference)
    variant = {"dataset": "toy", "model": "custom", "scheme": "int8"}
    metrics = run_evaluation(
        tmp_path / "int8.tflite",
        tmp_path / "toy.npz",
        variant,
        1,
        25,
        tmp_path / "m.json",
        tmp_path / "p.npy",
        tmp_path / "fp32.npy",
    )
    predictions = np.load(tmp_path / "p.npy")
    assert metrics["agreement_with_fp32"] == pytest.approx(np.mean(predictions == 0))
    assert metrics["agreement_with_fp32"] < 0.6
    assert metrics["accuracy"] == pytest.approx(np.mean(predictions == test_labels))
    assert metrics["timing"] == "LiteRT on the host CPU, 1 thread(s), batches of 25"
    # The reference itself agrees with itself; int16x8 on two threads runs two interpreters side by side.
    (tmp_path / "fp32.tflite").write_bytes(flatbuffers["fp32"])
    variant = {"dataset": "toy", "model": "custom", "scheme": "fp32"}
    arguments = (tmp_path / "toy.npz", variant, 1, 25, tmp_path / "f.json", tmp_path / "f.npy", None)
    assert run_evaluation(tmp_path / "fp32.tflite", *arguments)["agreement_with_fp32"] == 1.0
    (tmp_path / "int16x8.tflite").write_bytes(flatbuffers["int16x8"])
    variant = {"dataset": "toy", "model": "custom", "scheme": "int16x8"}
    arguments = (tmp_path / "toy.npz", variant, 2, 25, tmp_path / "i.json", tmp_path / "i.npy", tmp_path / "f.npy")
    side_by_side = run_evaluation(tmp_path / "int16x8.tflite", *arguments)
    assert side_by_side["timing"] == "LiteRT on the host CPU, 2 one-thread interpreters side by side, batches of 25"
    assert side_by_side["threads"] == 2 and side_by_side["input_type"] == "float32"
    assert side_by_side["dataset_name"] == "toy" and side_by_side["test_images"] == len(test_labels)
    assert side_by_side["file_bytes"] == len(flatbuffers["int16x8"])
    assert side_by_side["litert_version"] == litert_version  # the tables' litert_version column
    np.save(tmp_path / "objects.npy", np.asarray([object()] * len(test_labels)), allow_pickle=True)
    arguments = (
        tmp_path / "toy.npz",
        variant,
        1,
        25,
        tmp_path / "o.json",
        tmp_path / "o.npy",
        tmp_path / "objects.npy",
    )
    with pytest.raises(ValueError, match="allow_pickle=False"):  # a reference file is never unpickled
        run_evaluation(tmp_path / "int16x8.tflite", *arguments)
    np.save(tmp_path / "short.npy", reference[:5])
    with pytest.raises(ValueError, match="short.npy: holds 5 predictions"):
        run_evaluation(
            tmp_path / "int8.tflite",
            tmp_path / "toy.npz",
            variant,
            1,
            25,
            tmp_path / "m2.json",
            tmp_path / "p2.npy",
            tmp_path / "short.npy",
        )


def test_the_conversion_job_calibrates_on_its_seeded_images_with_its_threads(trained, tmp_path, monkeypatch):

    from tinyml_quant import training
    from tinyml_quant.conversion import run_conversion

    model, test_images, test_labels, train_images = trained
    model.save(tmp_path / "model.keras")
    save_as_prepared(tmp_path / "toy.npz", test_images, test_labels, train_images=train_images)
    pinned = []
    monkeypatch.setattr(training, "configure_tensorflow", lambda threads, seed=None: pinned.append(threads))
    settings = {"calibration_images": 20, "calibration_seed": 3}
    run_conversion(tmp_path / "model.keras", tmp_path / "toy.npz", "int8", settings, 2, tmp_path / "int8.tflite")
    expected = convert(model, "int8", calibration_images(train_images, 20, seed=3))
    assert (tmp_path / "int8.tflite").read_bytes() == expected and pinned == [2]


def test_the_trained_model_is_loaded_without_its_training_state(trained, tmp_path):
    """Conversion needs the graph and the weights only: the optimizer and loss, which an
    imported model may have built from classes this project cannot rebuild, are not restored."""
    from tinyml_quant.conversion import load_keras_model

    model = trained[0]
    assert model.compiled
    model.save(tmp_path / "model.keras")
    loaded = load_keras_model(tmp_path / "model.keras")
    assert not loaded.compiled and getattr(loaded, "optimizer", None) is None
    for saved, restored in zip(model.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(saved, restored)


class RecordingInterpreter:
    """LiteRT's interpreter interface around a known function, recording what ``predict`` asks of it.

    The output of image ``i`` (all pixels ``i``) is int8 ``[i, 2i, -i]`` with scale 0.5 and
    zero point -1; each ``invoke`` costs 1 + its first pixel seconds on its thread's clock.
    """

    def __init__(self, clock):
        self.clock, self.shape, self.resizes, self.allocations, self.inputs = clock, [1, 2, 2, 1], [], 0, []

    def get_input_details(self):
        return [{"index": 0, "shape": np.array(self.shape), "dtype": np.float32, "quantization": (0.0, 0)}]

    def get_output_details(self):
        return [{"index": 5, "shape": np.array([self.shape[0], 3]), "dtype": np.int8, "quantization": (0.5, -1)}]

    def resize_tensor_input(self, index, shape):
        assert index == 0
        self.resizes.append(list(shape))
        self.shape = list(shape)

    def allocate_tensors(self):
        self.allocations += 1

    def set_tensor(self, index, value):
        assert index == 0 and value.shape == tuple(self.shape) and value.dtype == np.float32
        self.inputs.append(value.copy())

    def invoke(self):
        self.clock.now = getattr(self.clock, "now", 0.0) + 1 + float(self.inputs[-1][0, 0, 0, 0])
        pixel = self.inputs[-1][:, 0, 0, 0].astype(np.int8)
        self.output = np.stack([pixel, 2 * pixel, -pixel], axis=1)

    def get_tensor(self, index):
        assert index == 5
        return self.output


def test_predict_runs_one_image_per_invoke_unless_told(monkeypatch):
    import threading
    import time

    clock = threading.local()
    monkeypatch.setattr(time, "perf_counter", lambda: getattr(clock, "now", 0.0))
    images = np.zeros((3, 2, 2, 1), np.float32)
    interpreter = RecordingInterpreter(clock)
    _, seconds = predict(interpreter, images)
    assert [len(batch) for batch in interpreter.inputs] == [1, 1, 1] and interpreter.resizes == []
    assert seconds == 3  # one second an invoke, one invoke an image
    predict(interpreter, images, batch_size=0)  # a batch size below one is taken as one
    assert [len(batch) for batch in interpreter.inputs] == [1] * 6 and interpreter.resizes == []


class Int8RecordingInterpreter(RecordingInterpreter):
    """A RecordingInterpreter with an int8 input tensor of scale 1 and zero point -128, as the study's int8 models."""

    def get_input_details(self):
        return [{"index": 0, "shape": np.array(self.shape), "dtype": np.int8, "quantization": (1.0, -128)}]

    def set_tensor(self, index, value):
        assert index == 0 and value.shape == tuple(self.shape) and value.dtype == np.int8
        self.inputs.append(value.astype(np.float32) + 128)


def test_uint8_pixels_reach_an_int8_tensor_by_a_lookup_built_once(monkeypatch):
    """quantize_input runs once, for the 256-entry table, not on every batch: the reason input_converter exists."""
    import threading

    from tinyml_quant import evaluation

    calls = []

    def counted(images, detail):
        calls.append(len(images))
        return quantize_input(images, detail)

    monkeypatch.setattr(evaluation, "quantize_input", counted)
    pixels = np.arange(256, dtype=np.uint8).reshape(64, 2, 2, 1)
    detail = Int8RecordingInterpreter(None).get_input_details()[0]
    convert = input_converter(detail, np.uint8)
    for batch in np.split(pixels, 4):
        np.testing.assert_array_equal(convert(batch), quantize_input(batch, detail))
    assert calls == [256]
    calls.clear()
    interpreter = Int8RecordingInterpreter(threading.local())
    predict(interpreter, pixels, batch_size=16)
    assert calls == [256] and len(interpreter.inputs) == 4
    np.testing.assert_array_equal(np.concatenate(interpreter.inputs), pixels)


def test_predict_pads_the_last_batch_dequantizes_and_times_the_busiest_interpreter(monkeypatch):
    import threading
    import time

    # time.perf_counter is replaced for the whole process while this test runs (monkeypatch restores it);
    # one clock per thread: side-by-side interpreters each time their own invokes.
    clock = threading.local()
    monkeypatch.setattr(time, "perf_counter", lambda: getattr(clock, "now", 0.0))
    images = np.arange(7, dtype=np.float32)[:, None, None, None] * np.ones((1, 2, 2, 1), np.float32)
    expected = (np.stack([np.arange(7), 2 * np.arange(7), -np.arange(7)], axis=1) + 1) * 0.5

    alone = RecordingInterpreter(clock)
    outputs, seconds = predict(alone, images, batch_size=3)
    np.testing.assert_array_equal(outputs, expected)
    assert outputs.dtype == np.float32
    assert seconds == (1 + 0) + (1 + 3) + (1 + 6)  # batches starting at images 0, 3 and 6
    assert alone.resizes == [[3, 2, 2, 1]] and alone.allocations == 1
    np.testing.assert_array_equal(alone.inputs[2], np.concatenate([images[6:], np.zeros((2, 2, 2, 1))]))
    predict(alone, images, batch_size=3)
    assert alone.resizes == [[3, 2, 2, 1]], "a model already at the batch size is not resized again"

    pair = [RecordingInterpreter(clock) for _ in range(2)]
    outputs, seconds = predict(pair, images, batch_size=3)
    np.testing.assert_array_equal(outputs, expected)
    assert seconds == (1 + 0) + (1 + 6)  # the first interpreter takes batches 0 and 2, the second batch 1
    assert [len(each.inputs) for each in pair] == [2, 1]
    four = [RecordingInterpreter(clock) for _ in range(4)]
    outputs, seconds = predict(four, images, batch_size=3)
    np.testing.assert_array_equal(outputs, expected)
    assert seconds == 1 + 6 and [len(each.inputs) for each in four] == [1, 1, 1, 0]
    assert four[3].resizes == [], "only as many interpreters as batches are prepared"

    whole = RecordingInterpreter(clock)
    outputs, _ = predict(whole, images, batch_size=50)
    np.testing.assert_array_equal(outputs, expected)
    assert whole.resizes == [[7, 2, 2, 1]]  # one batch of all seven images, not fifty
    with pytest.raises(ValueError, match=r"images of shape \(3, 2, 1\) do not fit the model's input \(2, 2, 1\)"):
        predict(RecordingInterpreter(clock), np.zeros((4, 3, 2, 1), np.float32))


def test_the_evaluation_record_gives_the_mean_invoke_time_per_image(trained, flatbuffers, tmp_path, monkeypatch):
    import itertools
    import json
    import time

    from tinyml_quant.evaluation import run_evaluation

    _, test_images, test_labels, _ = trained
    save_as_prepared(tmp_path / "toy.npz", test_images, test_labels)
    (tmp_path / "fp32.tflite").write_bytes(flatbuffers["fp32"])
    ticks = itertools.count()
    monkeypatch.setattr(time, "perf_counter", lambda: float(next(ticks)))  # every invoke takes one second
    variant = {"dataset": "toy", "model": "custom", "scheme": "fp32"}
    outputs = (tmp_path / "m.json", tmp_path / "p.npy", None)
    metrics = run_evaluation(tmp_path / "fp32.tflite", tmp_path / "toy.npz", variant, 1, 30, *outputs)
    assert len(test_labels) == 100
    assert metrics["mean_inference_ms"] == 1000.0 * 4 / 100  # four batches of 30 (the last padded) for 100 images
    assert json.loads((tmp_path / "m.json").read_text()) == metrics
    predictions = np.load(tmp_path / "p.npy", allow_pickle=False)
    assert predictions.dtype == np.int16 and len(predictions) == 100


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
    with pytest.raises(ValueError, match=r"^unknown scheme 'int4'; known schemes: \['fp32', 'dynamic_range', "):
        convert(model, "int4")
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
