"""TFLite Micro's LUT compression of the int8 variant: binning per channel, compression, exact decoding."""

import numpy as np
import pytest

from tinyml_quant import lut
from tinyml_quant.evaluation import predict
from tinyml_quant.graph import parse_model
from tinyml_quant.micro import measure_micro, tflm_outputs
from tinyml_quant.runtime import load_interpreter
from tinyml_quant.variants import ToolFailure


def test_kmeans_bins_keep_at_most_the_count_of_values_and_few_values_as_they_are():
    values = np.random.default_rng(0).integers(-127, 128, 500).astype(np.int8)
    binned = lut.kmeans_bins(values, 16)
    assert len(np.unique(binned)) <= 16 and binned.dtype == np.int8 and binned.shape == values.shape
    assert np.abs(binned.astype(int) - values.astype(int)).max() <= 16  # each value moves to a near centre
    few = np.array([3, -5, 3, 7], np.int8)
    np.testing.assert_array_equal(lut.kmeans_bins(few, 16), few)


def test_compression_pays_only_for_tensors_with_enough_weights_a_channel():
    # 4-bit indices save half a byte a weight; a table costs 16 bytes a channel.
    assert lut.saves_bytes((16, 3, 3, 16), 0, 16)  # 144 weights a channel
    assert not lut.saves_bytes((8, 1, 1, 8), 0, 16)  # 8 weights a channel


@pytest.fixture(scope="module")
def compressed(small_resnet):
    _, _, _, _, paths = small_resnet
    int8 = paths["int8"].read_bytes()
    binned, tensors = lut.binned_model(int8, 16)
    return int8, binned, tensors, lut.compress(binned, tensors, 16)


def test_each_channel_of_every_binned_weight_holds_at_most_16_values(compressed):
    _, binned, tensors, _ = compressed
    parsed = parse_model(binned)
    assert tensors
    for index, axis, _ in tensors:
        tensor = parsed.subgraphs[0].tensors[index]
        weights = np.frombuffer(bytes(parsed.buffers[tensor.buffer].data), np.int8).reshape(tensor.shape)
        for channel in np.moveaxis(weights, axis, 0):
            assert len(np.unique(channel)) <= 16


def test_the_compressed_file_is_smaller_and_decodes_to_the_binned_model_exactly(small_resnet, compressed):
    int8, binned, _, smaller = compressed
    _, images, labels, _, _ = small_resnet
    assert len(smaller) < len(binned) == len(int8)
    np.testing.assert_array_equal(
        tflm_outputs(smaller, images[:10], reference=binned), tflm_outputs(binned, images[:10])
    )
    lut.verify_decoding(smaller, binned, images[:10])  # no error
    measured = measure_micro(smaller, images[:10], labels[:10], reference=binned)
    assert measured["status"] == "runs" and measured["agreement"]["top1_agreement"] >= 0.9
    assert measured["flash_bytes"] == len(smaller)


def test_the_binned_model_stays_close_to_int8(small_resnet, compressed):
    int8, binned, _, _ = compressed
    _, images, _, _, _ = small_resnet
    reference, _ = predict(load_interpreter(int8), images, 40)
    outputs, _ = predict(load_interpreter(binned), images, 40)
    assert np.mean(outputs.argmax(1) == reference.argmax(1)) >= 0.9


def test_tables_that_do_not_decode_to_the_binned_weights_are_caught(small_resnet, compressed):
    """Tables of another binning run without an error on TFLite Micro and give other outputs: refused."""
    int8, binned, tensors, _ = compressed
    _, images, _, _, _ = small_resnet
    coarser, coarser_tensors = lut.binned_model(int8, 4)  # the same tensors, binned to 4 values a channel
    wrong = lut.compress(coarser, coarser_tensors, 16)
    assert tflm_outputs(wrong, images[:10], reference=binned) is not None  # it runs
    with pytest.raises(ToolFailure, match="outputs for the compressed model differ from the binned model's"):
        lut.verify_decoding(wrong, binned, images[:10])


def test_layers_kept_are_neither_binned_nor_compressed(compressed):
    int8, _, tensors, _ = compressed
    kept_layer = tensors[0][2]
    binned, kept_tensors = lut.binned_model(int8, 16, keep={kept_layer})
    assert kept_layer not in {layer for _, _, layer in kept_tensors}
    original = parse_model(int8).buffers[parse_model(int8).subgraphs[0].tensors[tensors[0][0]].buffer].data
    unchanged = parse_model(binned).buffers[parse_model(binned).subgraphs[0].tensors[tensors[0][0]].buffer].data
    np.testing.assert_array_equal(original, unchanged)


def test_the_compressed_model_has_the_int8_models_parameters_and_macs(compressed):
    from tinyml_quant.graph import analyze_graph

    int8, _, _, smaller = compressed
    counted, original = analyze_graph(smaller), analyze_graph(int8)
    assert "CUSTOM:TFLM_DECODE" in counted["operators"]
    assert counted["parameters"] == original["parameters"] and counted["macs"] == original["macs"]


def test_an_int8_variant_the_converter_could_not_make_leaves_the_lut_chain_not_converted(tmp_path):
    """A model no scheme converts: binning and compression mark the LUT variant with the converter's reason."""
    import json

    import keras

    from tinyml_quant.conversion import run_conversion

    from synthetic import save_as_prepared

    inputs = keras.Input((4, 4, 1))
    # erfinv: no TFLite builtin operator, so the converter refuses the model in every scheme.
    spread = keras.ops.erfinv(keras.layers.Rescaling(1 / 256)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(keras.layers.Flatten()(spread)))
    model.save(tmp_path / "erfinv.keras")
    dataset = save_as_prepared(tmp_path / "toy.npz", np.zeros((8, 4, 4, 1), np.uint8), np.arange(8) % 4)
    calibration = {"calibration_images": 4, "calibration_seed": 0}
    run_conversion(tmp_path / "erfinv.keras", dataset, "int8", calibration, 1, tmp_path / "int8.tflite")
    reason = json.loads((tmp_path / "int8.json").read_text())["reason"]
    settings = {"values_per_channel": 16}
    lut.run_binning(tmp_path / "int8.tflite", settings, tmp_path / "binned.tflite")
    lut.run_compression(tmp_path / "binned.tflite", dataset, settings, 4, 0, tmp_path / "int8_lut.tflite")
    for name in ("binned", "int8_lut"):
        record = json.loads((tmp_path / f"{name}.json").read_text())
        assert record["status"] == "not converted" and record["reason"].endswith(reason)
        assert (tmp_path / f"{name}.tflite").read_bytes() == b""
