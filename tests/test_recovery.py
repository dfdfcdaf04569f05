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


def test_the_recovery_job_records_the_fallbacks_accuracy_size_and_tflm_verdict(small_resnet, tmp_path, monkeypatch):
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

    model, test_images, labels, _, paths = small_resnet
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
