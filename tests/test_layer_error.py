"""Per-layer quantization error: every quantized layer's output against the same tensor of the fp32 variant."""

import numpy as np
import pytest

from tinyml_quant import layer_error
from tinyml_quant.conversion import calibration_images, convert
from tinyml_quant.layer_error import layer_errors
from tinyml_quant.runtime import dequantize_output, load_interpreter

from synthetic import save_as_prepared


def test_every_quantized_layer_is_matched_to_its_fp32_tensor(small_resnet):
    _, test_images, _, _, paths = small_resnet
    table = layer_errors(paths["int8"], paths["fp32"], test_images[:8])
    operators = set(table.operator)
    assert {"CONV_2D", "ADD", "FULLY_CONNECTED"} <= operators and "DELEGATE" not in operators
    assert table.tensor.is_unique and list(table.layer) == list(range(len(table)))
    assert table.depth.iloc[0] == 0 and table.depth.iloc[-1] == 1
    assert (table.rmse_in_steps == table.rmse / table.scale).all()
    assert table.cosine_similarity.between(0.9, 1.000001).all()
    # Rounding alone is about 0.29 steps; a small_resnet int8 model's layers are within a few steps.
    assert table.rmse_in_steps.median() < 5


def test_sixteen_bit_activations_carry_less_error_than_eight(small_resnet):
    _, test_images, _, _, paths = small_resnet
    int8 = layer_errors(paths["int8"], paths["fp32"], test_images[:8]).set_index("tensor")
    int16 = layer_errors(paths["int16x8"], paths["fp32"], test_images[:8]).set_index("tensor")
    shared = int8.index.intersection(int16.index)
    assert len(shared) >= 5
    # 256 times finer steps: the output's error falls by more than the 8-bit weights leave.
    assert (int16.loc[shared, "rmse"] <= int8.loc[shared, "rmse"] * 1.01).all()
    assert int16.loc[shared, "snr_db"].mean() > int8.loc[shared, "snr_db"].mean() + 3


def test_the_error_is_measured_against_the_reference_not_itself(small_resnet):
    _, test_images, _, _, paths = small_resnet
    with pytest.raises(ValueError, match="no quantized layer matches"):
        layer_errors(paths["fp32"], paths["fp32"], test_images[:2])


@pytest.fixture(scope="module")
def reshaped(tmp_path_factory):
    """fp32 and int8 files of a padding, a convolution, a Reshape and a dense layer, and images for them.

    The converter folds the padding into the convolution and computes the Reshape's
    shape with integer operators (SHAPE, STRIDED_SLICE, PACK): indices, not layers.
    """
    import keras

    inputs = keras.Input((6, 6, 1))
    x = keras.layers.ZeroPadding2D(1)(inputs)
    x = keras.layers.Conv2D(2, 3, name="conv")(x)
    x = keras.layers.Reshape((72,))(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="dense")(x))
    images = np.random.default_rng(0).integers(0, 256, (24, 6, 6, 1)).astype(np.uint8)
    representative = calibration_images(images, 16, seed=0)
    folder = tmp_path_factory.mktemp("reshaped")
    paths = {scheme: folder / f"{scheme}.tflite" for scheme in ("fp32", "int8")}
    for scheme, path in paths.items():
        path.write_bytes(convert(model, scheme, representative))
    return paths, images


def test_only_quantized_layers_count_not_shapes_or_pass_through_operators(reshaped):
    paths, images = reshaped
    operators = [operator["op_name"] for operator in load_interpreter(paths["int8"])._get_ops_details()]
    assert {"SHAPE", "RESHAPE", "FULLY_CONNECTED"} <= set(operators), "the model no longer has what this test needs"
    table = layer_errors(paths["int8"], paths["fp32"], images[:4])
    assert list(table.operator) == ["CONV_2D", "FULLY_CONNECTED"]
    assert set(table.dtype) == {"int8"} and (table.scale > 0).all()
    assert list(table.depth) == [0.0, 1.0]


def test_an_exact_layer_has_an_infinite_snr_and_an_all_zero_one_no_cosine():
    exact = layer_error.error_figures(0.0, 8.0, 4.0, 2.0, 2, 0.5)
    assert exact == {"scale": 0.5, "rmse": 0.0, "rmse_in_steps": 0.0, "cosine_similarity": 1.0, "snr_db": np.inf}
    silent = layer_error.error_figures(2.0, 8.0, 0.0, 0.0, 8, 0.25)
    assert silent["rmse"] == 0.5 and silent["rmse_in_steps"] == 2.0 and np.isnan(silent["cosine_similarity"])
    assert silent["snr_db"] == pytest.approx(10 * np.log10(4.0))


def test_the_output_layers_error_equals_one_computed_from_the_two_models_outputs(small_resnet):
    """The last matched layer is the model's output: its figures, recomputed from both models' outputs."""
    _, test_images, _, _, paths = small_resnet
    table = layer_errors(paths["int8"], paths["fp32"], test_images[:8])
    output = table.iloc[-1]

    def outputs(path):
        """The model's dequantized outputs, on the same builtin kernels the layer error runs."""
        interpreter = layer_error._interpreter(path)
        detail = interpreter.get_output_details()[0]
        values = []
        for image in test_images[:8]:
            layer_error._run(interpreter, image)
            values.append(dequantize_output(interpreter.get_tensor(detail["index"]), detail).astype(np.float64))
        return np.concatenate(values), detail["name"]

    reference, _ = outputs(paths["fp32"])
    quantized, name = outputs(paths["int8"])
    assert output.tensor == name
    error = quantized - reference
    assert output.rmse == pytest.approx(np.sqrt(np.mean(error**2)), rel=1e-5)
    assert output.rmse_in_steps == pytest.approx(output.rmse / (1 / 256))  # softmax's int8 scale
    cosine = np.sum(quantized * reference) / np.sqrt(np.sum(quantized**2) * np.sum(reference**2))
    assert output.cosine_similarity == pytest.approx(cosine, rel=1e-6)
    assert output.snr_db == pytest.approx(10 * np.log10(np.sum(reference**2) / np.sum(error**2)), rel=1e-5)
    assert list(table.depth) == pytest.approx([layer / (len(table) - 1) for layer in range(len(table))])
    assert set(table.dtype) == {"int8"}


def test_the_layer_error_job_measures_its_seeded_sample_and_names_the_variant(small_resnet, tmp_path, caplog):
    import pandas as pd

    from tinyml_quant.datasets import seeded_subset
    from tinyml_quant.layer_error import run_layer_error

    _, test_images, labels, _, paths = small_resnet
    dataset = save_as_prepared(tmp_path / "toy.npz", test_images, labels)
    variant = {"dataset": "toy", "model": "resnet_v1", "seed": "7", "scheme": "int8"}  # as the wildcards give it
    with caplog.at_level("INFO", logger="tinyml_quant.layer_error"):
        returned = run_layer_error(paths["int8"], paths["fp32"], dataset, 6, 2, variant, tmp_path / "errors.csv")
    written = pd.read_csv(tmp_path / "errors.csv")
    expected = layer_errors(paths["int8"], paths["fp32"], test_images[seeded_subset(len(labels), 6, 2)])
    assert list(written.columns) == ["dataset", "model", "seed", "scheme", "images", *expected.columns]
    assert (written[["dataset", "model", "seed", "scheme"]] == ["toy", "resnet_v1", 7, "int8"]).all().all()
    assert (written.images == 6).all() and len(returned) == len(written)
    pd.testing.assert_frame_equal(written[expected.columns], expected, check_exact=False, rtol=1e-5)  # six digits
    worst = expected.loc[expected.rmse_in_steps.idxmax()]
    assert f"largest error {worst.rmse_in_steps:.2f} steps at {worst.tensor}" in caplog.text
