"""Winning accuracy back: the worst layers of a quantized variant kept at higher precision."""

import numpy as np
import pytest

from tinyml_quant.conversion import calibration_images
from tinyml_quant.evaluation import predict
from tinyml_quant.recovery import float_fallback, worst_layers
from tinyml_quant.runtime import load_interpreter

from synthetic import save_as_prepared


def test_the_worst_layers_have_the_largest_error_in_steps_by_the_debuggers_own_statistics(small_resnet):
    import io

    import pandas as pd

    from tinyml_quant.recovery import _debugger

    model, test_images, _, representative, _ = small_resnet
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


def test_the_float_fallback_keeps_the_worst_layers_float(small_resnet):
    model, test_images, labels, representative, paths = small_resnet
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


def _write_metrics(path, accuracy, **extra):
    import json

    path.write_text(json.dumps({"dataset": "toy", "model": "resnet_v1", "seed": 0, "accuracy": accuracy, **extra}))
    return path


def test_the_int8_recovery_job_records_the_fallbacks_accuracy_size_and_tflm_verdict(
    small_resnet, tmp_path, monkeypatch
):
    import json

    from tinyml_quant import recovery
    from tinyml_quant.datasets import seeded_subset
    from tinyml_quant.recovery import run_recovery

    # What the job hands LiteRT and TFLM (its scheme, threads, batch size and seeded sample), recorded on the way.
    calls = {}

    def spy(name):
        real = getattr(recovery, name)

        def record(*args, **keywords):
            calls[name] = args
            return real(*args, **keywords)

        monkeypatch.setattr(recovery, name, record)

    for name in ("evaluation_interpreters", "predict", "measure_micro"):
        spy(name)

    model, test_images, labels, _, variants = small_resnet
    model.save(tmp_path / "model.keras")
    paths = {
        "model": tmp_path / "model.keras",
        "dataset": save_as_prepared(tmp_path / "toy.npz", test_images, labels),
        "fp32": variants["fp32"],
        "int8": variants["int8"],
        "quantized_metrics": _write_metrics(tmp_path / "int8.json", 0.5),
        "reference_metrics": _write_metrics(tmp_path / "fp32.json", 0.75),
        "quantized_device_record": variants["int8"].with_suffix(".json"),
    }
    settings = {
        "calibration": {"calibration_images": 30, "calibration_seed": 1},
        "layers": 2,
        "debug_images": 10,
        "sample_seed": 3,
        "agreement_images": 12,
        "agreement_seed": 5,
        "batch_size": 16,
        "gate": {"min_top1_agreement": 0.95, "max_output_steps": 64},
    }
    outputs = {name: tmp_path / f"recovered.{name}" for name in ("tflite", "device", "metrics")}
    outputs["predictions"] = tmp_path / "recovered.predictions.npy"
    record = run_recovery("int8", paths, settings, 1, "asked for", outputs)
    assert json.loads(outputs["metrics"].read_text()) == json.loads(json.dumps(record))
    debug_sample = test_images[seeded_subset(len(labels), 10, 3)]
    worst = worst_layers(model, calibration_images(255 - test_images, 30, 1), debug_sample, 2)  # the training split
    assert [layer["tensor"] for layer in record["layers"]] == [layer["tensor"] for layer in worst]
    assert [layer["rmse_in_steps"] for layer in record.pop("layers")] == pytest.approx(
        [layer["rmse_in_steps"] for layer in worst]
    )
    recovered, _ = predict(load_interpreter(outputs["tflite"]), test_images, 16)
    micro = record.pop("micro")
    assert record == {
        "dataset": "toy",
        "model": "resnet_v1",
        "seed": 0,
        "scheme": "int8",
        "status": "converted",
        "method": "worst layers kept in float",
        "reason": "asked for",
        "debug_images": 10,
        "reference_accuracy": 0.75,
        "quantized_accuracy": 0.5,
        "accuracy": pytest.approx(np.mean(recovered.argmax(1) == labels)),
        "test_images": len(labels),
        "file_bytes": outputs["device"].stat().st_size,
        "quantized_file_bytes": variants["int8"].stat().st_size,
        "predictions_file": "recovered.predictions.npy",
    }
    # The per-image predictions the record names: the mixed file's own, as LiteRT gives them again.
    np.testing.assert_array_equal(np.load(outputs["predictions"]), recovered.argmax(1))
    assert outputs["device"].read_bytes() == outputs["tflite"].read_bytes()
    assert set(micro) == {"status", "arena_bytes", "unsupported_operator", "agreement", "wrong_output"}
    assert micro["status"] == "runs" and micro["agreement"]["images"] == 12 and micro["wrong_output"] is None
    # The agreement sample is TFLite Micro's seeded one, with its labels: LiteRT's accuracy on it, recomputed.
    sample = seeded_subset(len(labels), 12, 5)
    litert_accuracy = np.mean(recovered[sample].argmax(1) == labels[sample])
    assert micro["agreement"]["litert_accuracy"] == pytest.approx(litert_accuracy)
    assert calls["evaluation_interpreters"] == (outputs["tflite"], "int8", 1) and calls["predict"][2] == 16
    _, micro_images, micro_labels = calls["measure_micro"]
    assert (micro_images == test_images[sample]).all() and (micro_labels == labels[sample]).all()


def test_the_int4_mixed_variant_raises_the_worst_4_bit_layers_of_the_layer_error_table(small_resnet, tmp_path):
    import pandas as pd
    from test_edge_quantizer import weight_types

    from tinyml_quant.edge_quantizer import quantize
    from tinyml_quant.layer_error import layer_errors
    from tinyml_quant.recovery import mixed_variant
    from tinyml_quant.variants import read_variant

    _, test_images, _, representative, variants = small_resnet
    fp32 = read_variant(variants["fp32"])
    (tmp_path / "int4.tflite").write_bytes(quantize(fp32, "int4", representative))
    errors = pd.DataFrame(layer_errors(tmp_path / "int4.tflite", variants["fp32"], test_images[:8]))
    convolutions = errors[errors.operator == "CONV_2D"].sort_values("rmse_in_steps", ascending=False)
    flatbuffer, device, layers = mixed_variant(
        "int4", {"fp32": fp32, "layer_errors": errors}, representative, None, 2, 1, test_images[:4]
    )
    assert [layer["tensor"] for layer in layers] == list(convolutions.tensor[:2])
    assert flatbuffer == device
    kinds = weight_types(flatbuffer)["CONV_2D"]
    assert kinds == {("INT4", "per channel"), ("INT8", "per channel")}


def test_the_int4_mixed_variant_keeps_int4s_weight_algorithm_on_the_layers_it_leaves_at_4_bits(small_resnet, tmp_path):
    import pandas as pd
    from test_edge_quantizer import stored_weights

    from tinyml_quant.edge_quantizer import quantize
    from tinyml_quant.layer_error import layer_errors
    from tinyml_quant.recovery import mixed_variant
    from tinyml_quant.variants import read_variant

    _, test_images, _, representative, variants = small_resnet
    fp32 = read_variant(variants["fp32"])
    octav = quantize(fp32, "int4_octav", representative)
    (tmp_path / "int4.tflite").write_bytes(octav)
    errors = pd.DataFrame(layer_errors(tmp_path / "int4.tflite", variants["fp32"], test_images[:8]))
    sources = {"fp32": fp32, "layer_errors": errors, "weight_algorithm": "octav"}
    flatbuffer, _, layers = mixed_variant("int4", sources, representative, None, 2, 1, test_images[:4])
    mixed, whole = stored_weights(flatbuffer), stored_weights(octav)
    kept = [name for name, weights in mixed.items() if weights[0] == "INT4"]
    assert kept and not {layer["tensor"] for layer in layers} & set(kept)
    for name in kept:  # joined by output tensor: each 4-bit layer as in the OCTAV variant, scales and values
        np.testing.assert_array_equal(mixed[name][2], whole[name][2])
        np.testing.assert_array_equal(mixed[name][1], whole[name][1])


def test_a_mixed_variant_the_quantizer_cannot_make_is_recorded_with_its_reason(small_resnet, tmp_path, monkeypatch):
    import json

    import pandas as pd

    from tinyml_quant import edge_quantizer
    from tinyml_quant.recovery import run_recovery

    def refuse(*args, **keywords):
        raise RuntimeError("Unsupported op: CUSTOM_OP")  # as the quantizer says of a layer it cannot handle

    monkeypatch.setattr(edge_quantizer, "quantize", refuse)
    _, test_images, labels, _, variants = small_resnet
    (tmp_path / "errors.csv").write_text(
        pd.DataFrame({"tensor": ["t"], "operator": ["CONV_2D"], "rmse_in_steps": [1.0]}).to_csv(index=False)
    )
    paths = {
        "dataset": save_as_prepared(tmp_path / "toy.npz", test_images, labels),
        "fp32": variants["fp32"],
        "layer_errors": tmp_path / "errors.csv",
        "quantized_metrics": _write_metrics(tmp_path / "int4.json", 0.5),
        "reference_metrics": _write_metrics(tmp_path / "fp32.json", 0.75),
        "quantized_device_record": variants["int8"].with_suffix(".json"),
    }
    settings = {"calibration": {"calibration_images": 8, "calibration_seed": 0}, "layers": 1, "debug_images": 4}
    settings |= {"sample_seed": 0, "agreement_images": 4, "agreement_seed": 0, "batch_size": 16}
    settings |= {"gate": {"min_top1_agreement": 0.95, "max_output_steps": 64}}
    outputs = {name: tmp_path / f"mixed.{name}" for name in ("tflite", "device", "metrics")}
    outputs["predictions"] = tmp_path / "mixed.predictions.npy"
    record = run_recovery("int4", paths, settings, 1, "asked for", outputs)
    assert record["status"] == "not converted"
    assert record["reason_not_made"] == "RuntimeError: Unsupported op: CUSTOM_OP" and record["reason"] == "asked for"
    assert json.loads(outputs["metrics"].read_text()) == record
    assert outputs["tflite"].read_bytes() == outputs["device"].read_bytes() == b""
    assert record["predictions_file"] == "mixed.predictions.npy" and np.load(outputs["predictions"]).size == 0
