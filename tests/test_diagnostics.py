"""Diagnostics: per-layer quantization error, the deployment plan, and the int8 float fallback."""

import numpy as np
import pytest

from tinyml_quant import layer_error
from tinyml_quant.conversion import calibration_images, convert
from tinyml_quant.deployment import deployment_plan
from tinyml_quant.evaluation import dequantize_output, load_interpreter, predict
from tinyml_quant.layer_error import layer_errors
from tinyml_quant.recovery import float_fallback, worst_layers

from synthetic import brightest_quadrant, fitted, save_as_prepared


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small ResNet fitted to a learnable synthetic task, and its fp32, int8 and int16x8 files."""
    from tinyml_quant.architectures import build_model
    from tinyml_quant.training import configure_tensorflow

    configure_tensorflow(threads=2, seed=0)
    images, labels = brightest_quadrant(400)
    model = build_model("resnet_v1", (16, 16, 1), 4, depth=8, base_filters=8)
    fitted(model, images[:320], labels[:320], batch_size=32)
    folder = tmp_path_factory.mktemp("variants")
    representative = calibration_images(images[:320], 64, seed=0)
    paths = {}
    for scheme in ("fp32", "int8", "int16x8"):
        paths[scheme] = folder / f"{scheme}.tflite"
        paths[scheme].write_bytes(convert(model, scheme, representative))
    return model, images[320:], labels[320:], representative, paths


def test_every_quantized_layer_is_matched_to_its_fp32_tensor(trained):
    _, test_images, _, _, paths = trained
    table = layer_errors(paths["int8"], paths["fp32"], test_images[:8])
    operators = set(table.operator)
    assert {"CONV_2D", "ADD", "FULLY_CONNECTED"} <= operators and "DELEGATE" not in operators
    assert table.tensor.is_unique and list(table.layer) == list(range(len(table)))
    assert table.depth.iloc[0] == 0 and table.depth.iloc[-1] == 1
    assert (table.rmse_in_steps == table.rmse / table.scale).all()
    assert table.cosine_similarity.between(0.9, 1.000001).all()
    # Rounding alone is about 0.29 steps; a trained int8 model's layers are within a few steps.
    assert table.rmse_in_steps.median() < 5


def test_sixteen_bit_activations_carry_less_error_than_eight(trained):
    _, test_images, _, _, paths = trained
    int8 = layer_errors(paths["int8"], paths["fp32"], test_images[:8]).set_index("tensor")
    int16 = layer_errors(paths["int16x8"], paths["fp32"], test_images[:8]).set_index("tensor")
    shared = int8.index.intersection(int16.index)
    assert len(shared) >= 5
    # 256 times finer steps: the output's error falls by more than the 8-bit weights leave.
    assert (int16.loc[shared, "rmse"] <= int8.loc[shared, "rmse"] * 1.01).all()
    assert int16.loc[shared, "snr_db"].mean() > int8.loc[shared, "snr_db"].mean() + 3


def test_the_error_is_measured_against_the_reference_not_itself(trained):
    _, test_images, _, _, paths = trained
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


EVALUATIONS = {"fp32": {"accuracy": 0.90}, "int8": {"accuracy": 0.87}}
MICRO = {scheme: {"status": "runs"} for scheme in ("fp32", "int8", "int16x8")} | {
    scheme: {"status": "unsupported on TFLite Micro"} for scheme in ("float16", "dynamic_range")
}


@pytest.mark.parametrize(
    ("threshold", "always", "recover", "reason"),
    [
        (1.0, False, True, "int8 loses 3.00 points (more than 1)"),
        (3.0, False, False, "int8 loses 3.00 points (at most 3): no fallback needed"),
        (5.0, True, True, "listed in diagnostics.always_recover (int8 loses 3.00 points)"),
    ],
)
def test_the_plan_recovers_int8_only_past_the_threshold_or_when_asked(threshold, always, recover, reason):
    plan = deployment_plan(EVALUATIONS, MICRO, threshold, always, ["int8"])
    assert plan["recover"] is recover and plan["reason"] == reason
    assert plan["loss_points"] == pytest.approx(3.0)
    assert plan["firmware_schemes"] == ["fp32", "int8", "int16x8"]


def test_a_loss_under_one_point_keeps_its_decimals():
    evaluations = {"fp32": {"accuracy": 0.9}, "int8": {"accuracy": 0.8996}}
    plan = deployment_plan(evaluations, MICRO, 0.03, False, ["int8"])
    assert plan["loss_points"] == 0.04 and plan["recover"] is True


def test_the_plan_without_int8_recovers_nothing():
    plan = deployment_plan({"fp32": {"accuracy": 0.9}}, {"fp32": {"status": "runs"}}, 0.0, True, [])
    assert plan == {"firmware_schemes": ["fp32"], "recover": False, "reason": "", "loss_points": None}


def test_the_worst_layers_have_the_largest_error_in_steps_by_the_debuggers_own_statistics(trained):
    import io

    import pandas as pd

    from tinyml_quant.recovery import _debugger

    model, test_images, _, representative, _ = trained
    debugger = _debugger(model, representative, test_images[:16])
    debugger.run()
    dump = io.StringIO()
    debugger.layer_statistics_dump(dump)
    statistics = pd.read_csv(io.StringIO(dump.getvalue())).set_index("tensor_name")
    in_steps = np.sqrt(statistics.mean_squared_error) / statistics.scale
    largest = in_steps.sort_values(ascending=False).index[:3]
    worst = worst_layers(model, representative, test_images[:16], 3)
    assert [layer["tensor"] for layer in worst] == list(largest)
    assert [layer["rmse_in_steps"] for layer in worst] == pytest.approx(list(in_steps[largest]))
    assert [layer["operator"] for layer in worst] == list(statistics.op_name[largest])


def test_the_float_fallback_keeps_the_worst_layers_float(trained):
    model, test_images, labels, representative, paths = trained
    worst = worst_layers(model, representative, test_images[:16], 2)
    assert len(worst) == 2 and worst[0]["rmse_in_steps"] >= worst[1]["rmse_in_steps"] > 0
    flatbuffer, layers = float_fallback(model, representative, test_images[:16], 2)
    assert [layer["tensor"] for layer in layers] == [layer["tensor"] for layer in worst]
    interpreter = load_interpreter(flatbuffer)
    tensors = {detail["name"]: detail for detail in interpreter.get_tensor_details()}
    for layer in layers:
        assert np.dtype(tensors[layer["tensor"]]["dtype"]) == np.float32, layer
    integer = [detail for detail in tensors.values() if np.dtype(detail["dtype"]) == np.int8]
    assert integer, "the other layers stay int8"
    reference, _ = predict(load_interpreter(paths["fp32"]), test_images, 20)
    outputs, _ = predict(interpreter, test_images, 20)
    assert np.mean(outputs.argmax(1) == reference.argmax(1)) >= 0.95


def test_the_output_layers_error_equals_one_computed_from_the_two_models_outputs(trained):
    """The last matched layer is the model's output: its figures, recomputed from both models' outputs."""
    _, test_images, _, _, paths = trained
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


def test_the_layer_error_job_measures_its_seeded_sample_and_names_the_variant(trained, tmp_path, caplog):
    import pandas as pd

    from tinyml_quant.datasets import seeded_subset
    from tinyml_quant.layer_error import run_layer_error

    _, test_images, labels, _, paths = trained
    dataset = save_as_prepared(tmp_path / "toy.npz", test_images, labels)
    variant = {"dataset": "toy", "model": "resnet_v1", "scheme": "int8"}
    with caplog.at_level("INFO", logger="tinyml_quant.layer_error"):
        returned = run_layer_error(paths["int8"], paths["fp32"], dataset, 6, 2, variant, tmp_path / "errors.csv")
    written = pd.read_csv(tmp_path / "errors.csv")
    expected = layer_errors(paths["int8"], paths["fp32"], test_images[seeded_subset(len(labels), 6, 2)])
    assert list(written.columns) == ["dataset", "model", "scheme", "images", *expected.columns]
    assert (written[["dataset", "model", "scheme"]] == ["toy", "resnet_v1", "int8"]).all().all()
    assert (written.images == 6).all() and len(returned) == len(written)
    pd.testing.assert_frame_equal(written[expected.columns], expected, check_exact=False, rtol=1e-5)  # six digits
    worst = expected.loc[expected.rmse_in_steps.idxmax()]
    assert f"largest error {worst.rmse_in_steps:.2f} steps at {worst.tensor}" in caplog.text


def test_the_recovery_job_records_the_fallbacks_accuracy_size_and_tflm_verdict(trained, tmp_path, monkeypatch):
    import json

    from tinyml_quant import recovery
    from tinyml_quant.datasets import seeded_subset
    from tinyml_quant.recovery import run_recovery

    # What the job hands LiteRT and TFLM (its scheme, threads, batch size and seeded sample), recorded on the way.
    calls = {}

    def spy(name):
        real = getattr(recovery, name)

        def record(*args):
            calls[name] = args
            return real(*args)

        monkeypatch.setattr(recovery, name, record)

    for name in ("evaluation_interpreters", "predict", "measure_micro"):
        spy(name)

    model, test_images, labels, _, paths = trained
    model.save(tmp_path / "model.keras")
    dataset = save_as_prepared(tmp_path / "toy.npz", test_images, labels)
    (tmp_path / "int8.json").write_text(
        json.dumps({"dataset": "toy", "model": "resnet_v1", "accuracy": 0.5, "file_bytes": 1234})
    )
    (tmp_path / "fp32.json").write_text(json.dumps({"dataset": "toy", "model": "resnet_v1", "accuracy": 0.75}))
    calibration = {"calibration_images": 30, "calibration_seed": 1}
    outputs = (tmp_path / "recovered.tflite", tmp_path / "recovered.json")
    record = run_recovery(
        tmp_path / "model.keras",
        dataset,
        tmp_path / "int8.json",
        tmp_path / "fp32.json",
        calibration,
        2,
        10,
        3,
        12,
        16,
        1,
        "asked for",
        *outputs,
    )
    assert json.loads(outputs[1].read_text()) == json.loads(json.dumps(record))
    debug_sample = test_images[seeded_subset(len(labels), 10, 3)]
    worst = worst_layers(model, calibration_images(255 - test_images, 30, 1), debug_sample, 2)  # the training split
    assert [layer["tensor"] for layer in record["float_layers"]] == [layer["tensor"] for layer in worst]
    assert [layer["rmse_in_steps"] for layer in record.pop("float_layers")] == pytest.approx(
        [layer["rmse_in_steps"] for layer in worst]
    )
    recovered, _ = predict(load_interpreter(outputs[0]), test_images, 16)
    micro = record.pop("micro")
    assert record == {
        "dataset": "toy",
        "model": "resnet_v1",
        "scheme": "int8",
        "reason": "asked for",
        "debug_images": 10,
        "reference_accuracy": 0.75,
        "quantized_accuracy": 0.5,
        "accuracy": pytest.approx(np.mean(recovered.argmax(1) == labels)),
        "test_images": len(labels),
        "file_bytes": outputs[0].stat().st_size,
        "quantized_file_bytes": 1234,
    }
    assert set(micro) == {"status", "arena_bytes", "unsupported_operator", "agreement"}
    assert micro["status"] == "runs" and micro["agreement"]["images"] == 12
    # The agreement sample is the seeded one, with its labels: LiteRT's accuracy on it, recomputed.
    sample = seeded_subset(len(labels), 12, 3)
    litert_accuracy = np.mean(recovered[sample].argmax(1) == labels[sample])
    assert micro["agreement"]["litert_accuracy"] == pytest.approx(litert_accuracy)
    assert calls["evaluation_interpreters"] == (outputs[0], "int8", 1) and calls["predict"][2] == 16
    _, micro_images, micro_labels = calls["measure_micro"]
    assert (micro_images == test_images[sample]).all() and (micro_labels == labels[sample]).all()
