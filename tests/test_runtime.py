"""The shared runtimes: LiteRT interpreters, Keras model files, and the arithmetic of quantized inputs."""

import numpy as np
import pytest

from tinyml_quant.runtime import input_converter, load_interpreter, quantize_input


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


def test_garbage_tflite_file_is_a_clear_error(tmp_path, flatbuffers):
    path = tmp_path / "broken.tflite"
    path.write_bytes(flatbuffers["fp32"][:200])
    with pytest.raises(ValueError, match="broken.tflite: not a loadable TFLite model"):
        load_interpreter(path)
    for content in (flatbuffers["fp32"][:200], bytearray(flatbuffers["fp32"][:200])):
        with pytest.raises(ValueError, match="^model bytes: not a loadable TFLite model"):
            load_interpreter(content)


def test_the_trained_model_is_loaded_without_its_training_state(trained, tmp_path):
    """Conversion needs the graph and the weights only: the optimizer and loss, which an
    imported model may have built from classes this project cannot rebuild, are not restored."""
    from tinyml_quant.runtime import load_keras_model

    model = trained[0]
    assert model.compiled
    model.save(tmp_path / "model.keras")
    loaded = load_keras_model(tmp_path / "model.keras")
    assert not loaded.compiled and getattr(loaded, "optimizer", None) is None
    for saved, restored in zip(model.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(saved, restored)
