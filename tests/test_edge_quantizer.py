"""The AI Edge Quantizer's schemes from the fp32 file: int4 weights (min/max, OCTAV, MSE ranges), int8 per tensor."""

import numpy as np
import pytest

from tinyml_quant.config import conversion_settings
from tinyml_quant.conversion import calibration_images
from tinyml_quant.edge_quantizer import quantize, run_quantization, scope_regex
from tinyml_quant.evaluation import predict
from tinyml_quant.files import read_json
from tinyml_quant.graph import operator_name, parse_model
from tinyml_quant.micro import measure_micro
from tinyml_quant.runtime import load_interpreter
from tinyml_quant.variants import read_variant

from synthetic import save_as_prepared, write_variant

INT4_SCHEMES = ("int4", "int4_octav", "int4_mse")
QUANTIZED_SCHEMES = (*INT4_SCHEMES, "int8_per_tensor")


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


def stored_weights(flatbuffer):
    """``{output tensor: (tensor type, weights as stored, scales, zero points, channel axis)}`` of every weighted
    operator, read from the flatbuffer; 4-bit weights unpacked from their nibbles (low first), two's complement."""
    from ai_edge_litert import schema_py_generated as schema

    names = {value: name for name, value in vars(schema.TensorType).items() if not name.startswith("_")}
    parsed = parse_model(flatbuffer)
    subgraph = parsed.subgraphs[0]
    found = {}
    for operator in subgraph.operators:
        if operator_name(parsed, operator) not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            continue
        tensor = subgraph.tensors[operator.inputs[1]]
        raw, shape, kind = (
            np.asarray(parsed.buffers[tensor.buffer].data, np.uint8),
            tuple(tensor.shape),
            names[tensor.type],
        )
        if kind == "FLOAT32":
            values = raw.view(np.float32).reshape(shape)
        elif kind == "INT4":
            nibbles = np.stack([raw & 0xF, raw >> 4], axis=1).reshape(-1)[: np.prod(shape)].astype(np.int8)
            values = np.where(nibbles > 7, nibbles - 16, nibbles).reshape(shape)
        else:
            values = raw.view(np.int8).reshape(shape)
        quantization = tensor.quantization
        scales = None if quantization is None or quantization.scale is None else np.asarray(quantization.scale)
        axis = quantization.quantizedDimension if scales is not None and len(scales) > 1 else None
        zero_points = None if scales is None else np.asarray(quantization.zeroPoint)
        found[subgraph.tensors[operator.outputs[0]].name.decode()] = (kind, values, scales, zero_points, axis)
    return found


def per_channel(values, axis):
    """``values`` as one row per output channel (one row for a tensor with one scale)."""
    return values.reshape(1, -1) if axis is None else np.moveaxis(values, axis, 0).reshape(values.shape[axis], -1)


def four_bit_layers(flatbuffer, fp32_flatbuffer):
    """``[(float weights, stored 4-bit weights, scales, zero points)]`` per 4-bit layer, each as rows per channel,
    the float weights joined to the quantized layer by its output tensor's name."""
    floats = stored_weights(fp32_flatbuffer)
    layers = []
    for name, (kind, values, scales, zero_points, axis) in stored_weights(flatbuffer).items():
        if kind == "INT4":
            layers.append((per_channel(floats[name][1], axis), per_channel(values, axis), scales, zero_points))
    return layers


def squared_error(layer):
    weights, stored, scales, _ = layer
    return float(((stored * scales[:, None] - weights) ** 2).sum())


@pytest.fixture(scope="module")
def quantized(trained, flatbuffers):
    _, _, _, train_images = trained
    representative = calibration_images(train_images, 50, seed=0)
    return {scheme: quantize(flatbuffers["fp32"], scheme, representative) for scheme in QUANTIZED_SCHEMES}


@pytest.mark.parametrize("scheme", INT4_SCHEMES)
def test_int4_stores_4_bit_weights_where_tflite_micro_has_4_bit_kernels(quantized, scheme):
    assert weight_types(quantized[scheme]) == {
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


@pytest.mark.parametrize("scheme", QUANTIZED_SCHEMES)
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


@pytest.mark.parametrize("scheme", QUANTIZED_SCHEMES)
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


def test_min_max_puts_each_channels_largest_weight_on_the_grids_end(flatbuffers, quantized):
    layers = four_bit_layers(quantized["int4"], flatbuffers["fp32"])
    assert len(layers) == 6  # five convolutions per channel, the classifier per tensor
    for weights, stored, scales, zero_points in layers:
        assert (zero_points == 0).all() and np.abs(stored).max() <= 7
        np.testing.assert_allclose(scales, np.abs(weights).max(axis=1) / 7, rtol=1e-6)
        np.testing.assert_array_equal(stored, np.round(weights / scales[:, None]))


def test_octav_clips_each_4_bit_range_at_its_optimal_constant_within_min_max(flatbuffers, quantized):
    """Sakr et al. 2022, eq. 6: the clipping c = sum(|w| >= c) / (4^-4 / 3 n + count(|w| >= c)) of each channel."""
    layers = four_bit_layers(quantized["int4_octav"], flatbuffers["fp32"])
    min_max = four_bit_layers(quantized["int4"], flatbuffers["fp32"])
    assert len(layers) == len(min_max) == 6
    clipped = 0
    for layer, reference in zip(layers, min_max, strict=True):
        weights, stored, scales, zero_points = layer
        assert (zero_points == 0).all() and stored.min() >= -8 and stored.max() <= 7
        clipping = 7 * scales
        assert (clipping <= np.abs(weights).max(axis=1) * (1 + 1e-6)).all()  # never wider than min/max's
        beyond = np.abs(weights) >= clipping[:, None]
        optimal = (np.abs(weights) * beyond).sum(axis=1) / (4.0**-4 / 3 * weights.shape[1] + beyond.sum(axis=1))
        np.testing.assert_allclose(clipping, optimal, rtol=0.01)  # the quantizer stops its iteration at 10 steps
        np.testing.assert_array_equal(stored, np.clip(np.round(weights / scales[:, None]), -8, 7))
        clipped += int((np.abs(weights) > clipping[:, None] * (1 + 1e-6)).sum())
        # Less error over the layer than min/max's grid, the expected error it minimises.
        assert squared_error(layer) <= squared_error(reference)
    assert clipped > 0


def test_mse_scales_each_channel_from_its_weights_rms(flatbuffers, quantized):
    """The quantizer's MSE for 4 bits is a closed form, not a search: scale = 0.37755 RMS(w)."""
    layers = four_bit_layers(quantized["int4_mse"], flatbuffers["fp32"])
    min_max = four_bit_layers(quantized["int4"], flatbuffers["fp32"])
    assert len(layers) == len(min_max) == 6
    for weights, stored, scales, zero_points in layers:
        assert (zero_points == 0).all()
        np.testing.assert_allclose(scales, 0.37755 * np.sqrt((weights**2).mean(axis=1)), rtol=1e-6)
        np.testing.assert_array_equal(stored, np.clip(np.round(weights / scales[:, None]), -8, 7))
    # Where a channel's largest weight is below 7 x 0.37755 RMS (few weights: the 3x3 stem's 9), its grid is
    # wider than min/max's, not clipped: MSE is not a better range on every channel.
    wider = [(7 * scales > np.abs(weights).max(axis=1)).any() for weights, _, scales, _ in layers]
    assert wider[0]


def test_the_int4_setting_picks_its_weight_algorithm_through_the_conversion_job(
    tmp_path, trained, flatbuffers, quantized
):
    """int4 with weight_algorithm octav is int4_octav byte for byte; the record says which algorithm."""
    _, images, labels, train_images = trained
    dataset = save_as_prepared(tmp_path / "prepared.npz", images, labels, train_images=train_images)
    fp32 = write_variant(tmp_path / "fp32.tflite", flatbuffers["fp32"], "fp32")
    config = {"conversion": {"int4": {"calibration_images": 50, "calibration_seed": 0, "weight_algorithm": "octav"}}}
    made = {}
    for scheme in ("int4", "int4_octav"):
        output = tmp_path / f"{scheme}.tflite"
        run_quantization(fp32, dataset, scheme, conversion_settings(config, scheme), 1, output)
        made[scheme] = read_variant(output)
        assert read_json(tmp_path / f"{scheme}.json")["settings"]["weight_algorithm"] == "octav"
    assert made["int4"] == made["int4_octav"]
    assert made["int4"] != quantized["int4"]


def test_a_weight_algorithm_a_scheme_cannot_take_is_refused(flatbuffers):
    images = np.zeros((1, 16, 16, 1), np.float32)
    with pytest.raises(ValueError, match=r"unknown weight algorithm 'gptq'; known: \['min_max', 'octav', 'mse'\]"):
        quantize(flatbuffers["fp32"], "int4", images, algorithm="gptq")
    with pytest.raises(ValueError, match="scheme int4_octav quantizes its weights with octav, not mse"):
        quantize(flatbuffers["fp32"], "int4_octav", images, algorithm="mse")
    with pytest.raises(ValueError, match="scheme int8_per_tensor quantizes its weights with min_max, not octav"):
        quantize(flatbuffers["fp32"], "int8_per_tensor", images, algorithm="octav")
