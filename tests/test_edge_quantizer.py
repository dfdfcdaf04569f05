"""The AI Edge Quantizer's schemes: int4 weights and int8 per tensor, made from the fp32 file."""

import numpy as np
import pytest

from tinyml_quant.conversion import calibration_images
from tinyml_quant.edge_quantizer import quantize, scope_regex
from tinyml_quant.evaluation import predict
from tinyml_quant.graph import operator_name, parse_model
from tinyml_quant.micro import measure_micro
from tinyml_quant.runtime import load_interpreter


def weight_types(flatbuffer):
    """``{operator: {(tensor type, scales)}}`` of every weighted operator's weights, read from the flatbuffer."""
    from ai_edge_litert import schema_py_generated as schema

    names = {value: name for name, value in vars(schema.TensorType).items() if not name.startswith("_")}
    parsed = parse_model(flatbuffer)
    subgraph = parsed.subgraphs[0]
    found = {}
    for operator in subgraph.operators:
        name = operator_name(parsed, operator)
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            weights = subgraph.tensors[operator.inputs[1]]
            scales = len(weights.quantization.scale) if weights.quantization.scale is not None else 0
            found.setdefault(name, set()).add((names[weights.type], "per channel" if scales > 1 else "per tensor"))
    return found


@pytest.fixture(scope="module")
def quantized(trained, flatbuffers):
    _, _, _, train_images = trained
    representative = calibration_images(train_images, 50, seed=0)
    return {scheme: quantize(flatbuffers["fp32"], scheme, representative) for scheme in ("int4", "int8_per_tensor")}


def test_int4_stores_4_bit_weights_where_tflite_micro_has_4_bit_kernels(quantized):
    assert weight_types(quantized["int4"]) == {
        "CONV_2D": {("INT4", "per channel")},
        "DEPTHWISE_CONV_2D": {("INT8", "per channel")},
        "FULLY_CONNECTED": {("INT4", "per tensor")},
    }


def test_per_tensor_int8_has_one_weight_scale_per_tensor(quantized):
    assert weight_types(quantized["int8_per_tensor"]) == {
        "CONV_2D": {("INT8", "per tensor")},
        "DEPTHWISE_CONV_2D": {("INT8", "per tensor")},
        "FULLY_CONNECTED": {("INT8", "per tensor")},
    }


@pytest.mark.parametrize("scheme", ["int4", "int8_per_tensor"])
def test_the_quantized_variant_keeps_fp32s_answers_and_its_outputs_vary(trained, flatbuffers, quantized, scheme):
    """Not constant: the quantizer's default calibration (a moving average of ranges) collapsed activations."""
    _, images, labels, _ = trained
    reference, _ = predict(load_interpreter(flatbuffers["fp32"]), images, 50)
    outputs, _ = predict(load_interpreter(quantized[scheme]), images, 50)
    assert np.mean(outputs.argmax(1) == reference.argmax(1)) >= 0.9
    # Many different answers, and every class's score moves by more than one output step (1/256).
    assert len(np.unique(outputs, axis=0)) > len(outputs) // 4
    assert (outputs.std(axis=0) > 1 / 256).all()
    interpreter = load_interpreter(quantized[scheme])
    assert interpreter.get_input_details()[0]["dtype"] == np.int8  # full integer, as the int8 scheme


@pytest.mark.parametrize("scheme", ["int4", "int8_per_tensor"])
def test_tflite_micro_runs_the_quantized_variant_as_litert_does(trained, quantized, scheme):
    _, images, labels, _ = trained
    measured = measure_micro(quantized[scheme], images[:20], labels[:20])
    assert measured["status"] == "runs" and measured["agreement"]["top1_agreement"] >= 0.95


def test_calibration_takes_the_whole_sets_range_not_a_moving_average(trained, flatbuffers):
    """An image far brighter than the rest sets the input's range: a moving average would forget it."""
    _, images, _, train_images = trained
    representative = calibration_images(train_images, 20, seed=0)
    representative[0] = 255.0  # every pixel at the top of the range, once
    scale, zero_point = load_interpreter(
        quantize(flatbuffers["fp32"], "int8_per_tensor", representative)
    ).get_input_details()[0]["quantization"]
    assert (127 - zero_point) * scale == pytest.approx(255.0, rel=0.02)


def test_named_layers_keep_8_bit_per_channel_weights(trained, flatbuffers):
    _, _, _, train_images = trained
    parsed = parse_model(flatbuffers["fp32"])
    subgraph = parsed.subgraphs[0]
    convolutions = [op for op in subgraph.operators if operator_name(parsed, op) == "CONV_2D"]
    kept = subgraph.tensors[convolutions[0].outputs[0]].name.decode()
    mixed = quantize(flatbuffers["fp32"], "int4", calibration_images(train_images, 20, seed=0), [(kept, "CONV_2D")])
    assert weight_types(mixed)["CONV_2D"] == {("INT4", "per channel"), ("INT8", "per channel")}
    assert scope_regex("a/b;c") == r"^a/b;c;"


def test_an_unknown_scheme_and_no_calibration_are_refused(flatbuffers):
    with pytest.raises(ValueError, match="unknown scheme 'int2' of the AI Edge Quantizer"):
        quantize(flatbuffers["fp32"], "int2", np.zeros((1, 16, 16, 1), np.float32))
    with pytest.raises(ValueError, match="scheme int4 needs representative images"):
        quantize(flatbuffers["fp32"], "int4", np.zeros((0, 16, 16, 1), np.float32))
