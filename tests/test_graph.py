"""Operators, parameters and MACs read from TFLite flatbuffers, checked against hand counts."""

import json

import numpy as np
import pytest

from tinyml_quant.conversion import convert
from tinyml_quant.graph import analyze_graph, layer_costs, operator_counts, parse_model, run_graph_analysis

from synthetic import write_variant

# The hand-counted model: input 8x8x3 -> Conv2D(8, 3x3, valid) -> DepthwiseConv2D(3x3, multiplier 2) -> Dense(4).
CONV_MACS = (6 * 6 * 8) * (3 * 3) * 3  # output elements x kernel h x kernel w x input channels = 7776
DEPTHWISE_MACS = (4 * 4 * 16) * (3 * 3)  # output elements (8 channels x multiplier 2) x kernel h x w = 2304
DENSE_MACS = 4 * (4 * 4 * 16)  # outputs x inputs = 1024
CONV_PARAMETERS = 3 * 3 * 3 * 8 + 8
DEPTHWISE_PARAMETERS = 3 * 3 * 8 * 2 + 16
DENSE_PARAMETERS = 256 * 4 + 4


@pytest.fixture(scope="module")
def hand_counted():
    """Fp32, float16 and int8 flatbuffers of the hand-counted model, with nonzero random weights.

    Nonzero biases matter: the converter drops a bias that is all zeros.
    """
    import keras

    from tinyml_quant.runtime import configure_tensorflow

    configure_tensorflow(threads=1, seed=0)
    inputs = keras.Input((8, 8, 3))
    features = keras.layers.Conv2D(8, 3)(inputs)
    features = keras.layers.DepthwiseConv2D(3, depth_multiplier=2)(features)
    outputs = keras.layers.Dense(4)(keras.layers.Flatten()(features))
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 0.1, weight.shape).astype("float32") for weight in model.get_weights()])
    representative = rng.uniform(0, 255, (8, 8, 8, 3)).astype(np.float32)
    flatbuffers = {scheme: convert(model, scheme, representative) for scheme in ("fp32", "float16", "int8")}
    return model, flatbuffers


def test_macs_match_the_hand_count_per_layer(hand_counted):
    _, flatbuffers = hand_counted
    layers = layer_costs(flatbuffers["fp32"])
    assert [(layer["operator"], layer["macs"]) for layer in layers] == [
        ("CONV_2D", CONV_MACS),
        ("DEPTHWISE_CONV_2D", DEPTHWISE_MACS),
        ("FULLY_CONNECTED", DENSE_MACS),
    ]
    assert analyze_graph(flatbuffers["fp32"])["macs"] == CONV_MACS + DEPTHWISE_MACS + DENSE_MACS == 11104


@pytest.mark.parametrize("scheme", ["fp32", "float16", "int8"])
def test_parameters_are_the_same_in_every_variant_and_match_keras(hand_counted, scheme):
    model, flatbuffers = hand_counted
    analysis = analyze_graph(flatbuffers[scheme])
    assert analysis["parameters"] == CONV_PARAMETERS + DEPTHWISE_PARAMETERS + DENSE_PARAMETERS
    assert analysis["parameters"] == model.count_params()  # no batch norm here, so Keras counts the same
    assert analysis["macs"] == 11104


def test_operators_are_named_and_counted(hand_counted):
    _, flatbuffers = hand_counted
    fp32 = operator_counts(flatbuffers["fp32"])
    assert fp32["CONV_2D"] == fp32["DEPTHWISE_CONV_2D"] == fp32["FULLY_CONNECTED"] == 1
    assert "DEQUANTIZE" not in fp32
    # float16 keeps its weights as float16 constants, each widened by a DEQUANTIZE at run time
    assert operator_counts(flatbuffers["float16"])["DEQUANTIZE"] >= 3
    analysis = analyze_graph(flatbuffers["fp32"])
    assert analysis["operator_total"] == sum(fp32.values())
    assert list(analysis["operators"]) == sorted(analysis["operators"])


def test_run_graph_analysis_writes_json(hand_counted, tmp_path):
    _, flatbuffers = hand_counted
    tflite_path = tmp_path / "int8.tflite"
    write_variant(tflite_path, flatbuffers["int8"])
    variant = {"dataset": "toy", "model": "hand", "scheme": "int8"}
    returned = run_graph_analysis(tflite_path, variant, tmp_path / "out" / "graph.json")
    written = json.loads((tmp_path / "out" / "graph.json").read_text())
    assert written == returned and {key: written[key] for key in variant} == variant
    assert {"operators", "operator_total", "parameters", "macs", "macs_by_operator", "file_bytes"} <= set(written)
    assert written["file_bytes"] == len(flatbuffers["int8"])
    expected = {"CONV_2D": CONV_MACS, "DEPTHWISE_CONV_2D": DEPTHWISE_MACS, "FULLY_CONNECTED": DENSE_MACS}
    assert written["macs_by_operator"] == expected


@pytest.mark.parametrize("content", [b"", b"not a flatbuffer at all", "truncated"])
def test_damaged_file_is_a_value_error_naming_it(hand_counted, tmp_path, content):
    _, flatbuffers = hand_counted
    if content == "truncated":
        content = flatbuffers["fp32"][: len(flatbuffers["fp32"]) // 3]
    path = tmp_path / "damaged.tflite"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="damaged.tflite"):
        parse_model(path)
    with pytest.raises(ValueError, match="damaged.tflite"):
        analyze_graph(path)


def test_missing_file_is_a_value_error_naming_it(tmp_path):
    with pytest.raises(ValueError, match="absent.tflite"):
        analyze_graph(tmp_path / "absent.tflite")


def _repacked(content, damage):
    """``content`` parsed, changed by ``damage(model)`` and written back: a well-formed file with a bad index."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(content, 0))
    damage(model)
    builder = flatbuffers.Builder(len(content))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _set_first_input(model, index):
    operator = model.subgraphs[0].operators[0]
    operator.inputs = [index, *operator.inputs[1:]]


def _set_opcode(model, index):
    model.subgraphs[0].operators[0].opcodeIndex = index


def _set_buffer(model, index):
    model.subgraphs[0].tensors[0].buffer = index


def _drop_outputs(model):
    for operator in model.subgraphs[0].operators:
        operator.outputs = None


def _flatten_weights(model):
    subgraph = model.subgraphs[0]
    conv = next(operator for operator in subgraph.operators if len(operator.inputs) == 3)
    subgraph.tensors[conv.inputs[1]].shape = [8]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda model: _set_first_input(model, 9999), "names a tensor outside"),
        (lambda model: _set_opcode(model, 77), "names operator code 77"),
        (lambda model: _set_buffer(model, 5000), "names buffer 5000"),
        (_flatten_weights, "with weights of shape \\[8\\]"),
        (_drop_outputs, "without its output"),
    ],
)
def test_a_file_whose_indices_point_nowhere_is_a_value_error_naming_it(hand_counted, damage, message):
    # The generated reader accepts these (the long fuzz run found the first); each read would be an IndexError.
    _, flatbuffers = hand_counted
    damaged = _repacked(flatbuffers["fp32"], damage)
    with pytest.raises(ValueError, match=f"model bytes: damaged TFLite flatbuffer \\(.*{message}"):
        analyze_graph(damaged)
