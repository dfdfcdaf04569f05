"""TFLite Micro measurement: the arena, unsupported variants, agreement with LiteRT, and a crashing child."""

import json

import numpy as np
import pytest

from tinyml_quant import micro
from tinyml_quant.conversion import convert
from tinyml_quant.datasets import seeded_subset
from tinyml_quant.micro import (
    UNSUPPORTED,
    allocates,
    compare_outputs,
    measure_micro,
    run_micro_measurement,
)

from synthetic import save_as_prepared, write_variant

IMAGE_SHAPE = (16, 16, 1)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, (12, *IMAGE_SHAPE)).astype(np.uint8)


@pytest.fixture(scope="module")
def flatbuffers(images):
    """An untrained custom CNN, converted with the schemes these tests need.

    The wider copy has weight tensors of 1024 elements and more, which the
    dynamic-range scheme quantizes (smaller ones stay float), so it really
    contains the hybrid float-input, int8-weight convolutions.
    """
    from tinyml_quant.architectures import build_model
    from tinyml_quant.runtime import configure_tensorflow

    configure_tensorflow(threads=1, seed=0)
    model = build_model("custom", IMAGE_SHAPE, 4, base_filters=4)
    representative = images[:8].astype(np.float32)
    converted = {scheme: convert(model, scheme, representative) for scheme in ("fp32", "float16", "int8")}
    wide = build_model("custom", IMAGE_SHAPE, 4, base_filters=16)
    converted["dynamic_range"] = convert(wide, "dynamic_range", representative)
    return converted


def write_prepared_dataset(path, images):
    """A prepared dataset of ``images`` in both splits, labelled 0, 1, 2, 3, 0, ..."""
    return save_as_prepared(path, images, np.arange(len(images)) % 4, dataset="synthetic", name="synthetic (test)")


VARIANT = {"dataset": "synthetic", "model": "custom", "scheme": "fp32"}


@pytest.fixture(scope="module")
def int8_measurement(flatbuffers, images):
    return measure_micro(flatbuffers["int8"], images, np.arange(len(images)) % 4)


def test_arena_is_the_smallest_that_allocates(flatbuffers, int8_measurement):
    arena = int8_measurement["arena_bytes"]
    assert int8_measurement["status"] == "runs"
    assert int8_measurement["largest_failing_arena_bytes"] == arena - 1
    assert allocates(flatbuffers["int8"], arena)
    assert not allocates(flatbuffers["int8"], arena - 1)


def test_the_measurement_record_in_full(flatbuffers, int8_measurement):
    from tflite_micro import __version__ as tflm_version

    record = dict(int8_measurement)
    assert record.pop("agreement")["images"] == 12 and 0 < record.pop("measurement_seconds") < 60
    arena = record.pop("arena_bytes")
    assert isinstance(arena, int) and 0 < arena < micro.FIRST_ARENA_BYTES
    # A probe that crashed TFLM (the module docstring says how often) restarts the child once each.
    assert record.pop("worker_restarts") == len(record.pop("crashed_probe_bytes"))
    assert record == {
        "status": "runs",
        "flash_bytes": len(flatbuffers["int8"]),
        "unsupported_operator": None,
        "unsupported_node": None,
        "tflm_error": None,
        "gate": None,
        "wrong_output": None,
        "external_buffer_bytes": 0,
        "largest_failing_arena_bytes": arena - 1,
        "arena_probes": 21,  # the first, generous arena (1 MiB), then 20 halvings of the interval down to 1 byte
        "tflm_version": tflm_version,
    }


@pytest.fixture(scope="module")
def wide_activations():
    """An fp32 model whose one activation (256 x 256 x 16 floats, 4 MiB) needs more than the first arena."""
    import keras

    inputs = keras.Input((256, 256, 3))
    features = keras.layers.Conv2D(16, 3, padding="same")(inputs)
    return convert(keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(features)), "fp32")


def test_the_arena_grows_past_the_first_guess_up_to_its_limit(wide_activations):
    with pytest.raises(RuntimeError, match="model bytes: TFLite Micro could not allocate the model in 1048576 bytes"):
        measure_micro(wide_activations, max_arena_bytes=micro.FIRST_ARENA_BYTES)
    result = measure_micro(wide_activations, max_arena_bytes=16 << 20)
    assert 4 << 20 < result["arena_bytes"] < 16 << 20
    assert result["largest_failing_arena_bytes"] == result["arena_bytes"] - 1
    # 1 MiB and 4 MiB fail, 16 MiB allocates; then the bisection between the last two, replayed here.
    low, high, bisections = 4 << 20, 16 << 20, 0
    while high - low > 1:
        middle, bisections = (low + high) // 2, bisections + 1
        low, high = (low, middle) if middle >= result["arena_bytes"] else (middle, high)
    assert result["arena_probes"] == 3 + bisections
    assert allocates(wide_activations, result["arena_bytes"]) and not allocates(wide_activations, 4 << 20)


@pytest.mark.parametrize("limit", [micro.FIRST_ARENA_BYTES - 1, float(1 << 30), None])
def test_the_arena_limit_is_an_integer_no_smaller_than_the_first_guess(flatbuffers, limit):
    with pytest.raises(ValueError, match=rf"max_arena_bytes must be an integer of at least 1048576, got {limit!r}"):
        measure_micro(flatbuffers["int8"], max_arena_bytes=limit)


def test_flash_bytes_are_the_file_length(flatbuffers, int8_measurement):
    assert int8_measurement["flash_bytes"] == len(flatbuffers["int8"])


def test_int8_outputs_agree_with_litert_on_every_image(int8_measurement, images):
    agreement = int8_measurement["agreement"]
    assert agreement["images"] == len(images)
    assert agreement["top1_agreement"] == 1.0 and agreement["disagreeing_images"] == 0
    assert agreement["max_difference_steps"] <= 1
    assert agreement["tflm_accuracy"] == agreement["litert_accuracy"]


def test_a_disagreement_is_counted_not_hidden():
    detail = {"quantization": (0.5, -128)}
    litert = np.array([[10, 20, 5], [30, 2, 1], [0, 0, 9], [4, 3, 2]], np.int8)
    tflm = litert.copy()
    tflm[1] = [1, 40, 1]  # another class
    tflm[2, 0] = 3  # the same class, three steps off
    comparison = compare_outputs(tflm, litert, detail, labels=np.array([1, 0, 2, 1]))
    assert comparison["top1_agreement"] == 0.75 and comparison["disagreeing_images"] == 1
    assert comparison["max_difference_steps"] == 38
    assert comparison["max_abs_difference"] == pytest.approx(19.0)
    assert comparison["litert_accuracy"] == 0.75 and comparison["tflm_accuracy"] == 0.5


def test_float_outputs_have_no_steps():
    detail = {"quantization": (0.0, 0)}
    outputs = np.array([[0.1, 0.9], [0.8, 0.2]], np.float32)
    comparison = compare_outputs(outputs + 1e-6, outputs, detail)
    assert comparison["top1_agreement"] == 1.0 and comparison["max_difference_steps"] is None
    assert comparison["max_abs_difference"] == pytest.approx(1e-6, rel=0.1)
    # Without labels both accuracy keys are still there, as None: the same keys with or without labels.
    assert comparison["tflm_accuracy"] is None and comparison["litert_accuracy"] is None


def test_a_probe_that_crashes_tflm_is_a_failure_not_a_dead_caller(flatbuffers):
    # TFLM ends its process with a segmentation fault for arenas below its own records' size.
    assert not allocates(flatbuffers["fp32"], 16)


def test_search_resumes_after_a_crashed_probe(flatbuffers, monkeypatch):
    """A child that dies mid-search is replaced, and the crashed probe counts as a failure."""
    expected = measure_micro(flatbuffers["fp32"])
    real_run_worker = micro._run_worker
    calls = []

    def crash_at_the_first_failing_probe(request, folder):
        """Cut the first child's log as a segmentation fault would (crashes hit only failing sizes)."""
        events, returncode, stderr = real_run_worker(request, folder)
        calls.append(request)
        if len(calls) == 1:
            failing = next(i for i, event in enumerate(events) if event["event"] == "result" and not event["allocates"])
            return events[:failing], -11, "Segmentation fault"
        return events, returncode, stderr

    monkeypatch.setattr(micro, "_run_worker", crash_at_the_first_failing_probe)
    resumed = measure_micro(flatbuffers["fp32"])
    assert resumed["worker_restarts"] == 1 and len(resumed["crashed_probe_bytes"]) == 1
    assert calls[1]["high"] is not None  # the second child started from the first one's bounds
    assert resumed["arena_bytes"] == expected["arena_bytes"]


def scripted_children(monkeypatch, *children):
    """Replace the TFLM child process by scripted ``(events, returncode, stderr)``, one per start; record requests."""
    requests = []

    def run_worker(request, folder):
        requests.append(request)
        return children[min(len(requests), len(children)) - 1]

    monkeypatch.setattr(micro, "_run_worker", run_worker)
    return requests


def probe_event(arena_bytes, allocates=None):
    """A line of the child's progress log: a probe begun, or its result."""
    if allocates is None:
        return {"event": "probe", "arena_bytes": arena_bytes}
    return {"event": "result", "arena_bytes": arena_bytes, "allocates": allocates, "message": ""}


def test_a_child_that_fails_without_a_crash_is_an_error_naming_the_model(flatbuffers, tmp_path, monkeypatch):
    path = tmp_path / "int8.tflite"
    path.write_bytes(flatbuffers["int8"])
    scripted_children(monkeypatch, ([], 1, "ModuleNotFoundError: No module named 'tflite_micro'\n"))
    message = (
        f"{path}: the TFLite Micro child process failed: TFLite Micro's process ended with exit status 1: "
        "ModuleNotFoundError: No module named 'tflite_micro'"
    )
    with pytest.raises(RuntimeError) as raised:
        measure_micro(path)
    assert str(raised.value) == message
    scripted_children(monkeypatch, ([], -9, "Killed"))  # killed before it logged anything: not TFLM's crash
    with pytest.raises(RuntimeError, match="process ended with signal 9: Killed"):
        measure_micro(path)
    # A child that exits normally in the middle of its search is not a crash either, whatever it logged.
    requests = scripted_children(monkeypatch, ([probe_event(micro.FIRST_ARENA_BYTES)], 0, ""))
    with pytest.raises(RuntimeError, match="child process failed: TFLite Micro's process ended with exit status 0"):
        measure_micro(path)
    assert len(requests) == 1  # not restarted as after a crash


def test_a_crash_at_every_arena_or_in_invoke_is_unsupported_not_an_error(flatbuffers, monkeypatch):
    first = micro.FIRST_ARENA_BYTES
    requests = scripted_children(monkeypatch, ([probe_event(first)], -11, "Segmentation fault"))
    result = measure_micro(flatbuffers["int8"], max_arena_bytes=first * micro.GROWTH - 1)
    assert result["status"] == UNSUPPORTED and result["arena_bytes"] is None
    assert result["tflm_error"] == "TFLite Micro's process ended with signal 11: Segmentation fault"
    assert (result["unsupported_operator"], result["crashed_probe_bytes"], len(requests)) == (None, [], 1)
    # With room to grow, the same crash is a failed probe, and the next child starts above it.
    requests = scripted_children(
        monkeypatch,
        ([probe_event(first)], -11, "Segmentation fault"),
        ([probe_event(4 * first), probe_event(4 * first, True), {"event": "invoke"}], -6, "Aborted"),
    )
    result = measure_micro(flatbuffers["int8"], max_arena_bytes=first * micro.GROWTH)
    assert [(request["low"], request["high"]) for request in requests] == [(0, None), (first, None)]
    assert result["status"] == UNSUPPORTED and result["tflm_error"].endswith("signal 6: Aborted")
    assert result["crashed_probe_bytes"] == [first] and result["worker_restarts"] == 1
    assert result["arena_probes"] == 2  # the crashed one and the one that allocated


def test_a_child_crashing_at_every_start_is_given_up_after_the_restart_limit(flatbuffers, monkeypatch):
    requests = scripted_children(monkeypatch, ([probe_event(micro.FIRST_ARENA_BYTES, True), probe_event(5)], -11, ""))
    with pytest.raises(RuntimeError, match=f"model bytes: TFLite Micro crashed {micro.WORKER_RESTARTS + 1} times"):
        measure_micro(flatbuffers["int8"])
    assert len(requests) == micro.WORKER_RESTARTS + 1
    assert requests[1]["low"] == 5 and requests[1]["high"] == micro.FIRST_ARENA_BYTES


def test_every_probe_counts_once_the_finished_ones_and_the_crashed_one(flatbuffers, monkeypatch):
    first = micro.FIRST_ARENA_BYTES
    scripted_children(
        monkeypatch,
        ([probe_event(first), probe_event(first, False), probe_event(4 * first)], -11, "Segmentation fault"),
        ([probe_event(16 * first), probe_event(16 * first, True), {"event": "invoke"}], -6, "Aborted"),
    )
    result = measure_micro(flatbuffers["int8"], max_arena_bytes=16 * first)
    assert result["crashed_probe_bytes"] == [4 * first] and result["worker_restarts"] == 1
    assert result["arena_probes"] == 3


def test_the_search_bounds_are_the_tightest_the_childs_log_shows_in_any_order():
    state = {"low": 0, "high": None}
    events = [
        probe_event(4096, False),
        probe_event(32768, True),
        probe_event(65536, True),
        probe_event(16384, False),
        probe_event(8192, False),
        probe_event(24576),  # begun, never finished: the caller's to judge
    ]
    assert micro._follow_events(events, state) is None
    assert state == {"low": 16384, "high": 32768}
    final = {"event": "done", "arena_bytes": 20000}
    assert micro._follow_events([probe_event(20000, True), final, probe_event(1, False)], state) == final
    assert state == {"low": 16384, "high": 20000}  # nothing after the final event is read


def test_a_probe_child_is_judged_by_how_it_ended(flatbuffers, monkeypatch):
    """A probe's child that crashed (a signal) after it began is "does not allocate"; any other end is an error."""
    scripted_children(monkeypatch, ([probe_event(64)], -11, "Segmentation fault"))
    assert allocates(flatbuffers["int8"], 64) is False
    scripted_children(monkeypatch, ([probe_event(64)], 0, "x" * 600 + "the end"))
    with pytest.raises(RuntimeError) as raised:  # exited cleanly without a result: the child is broken
        allocates(flatbuffers["int8"], 64)
    assert str(raised.value).endswith(": TFLite Micro's process ended with exit status 0: " + ("x" * 493 + "the end"))
    scripted_children(monkeypatch, ([], -9, "Killed"))  # killed before it began: not TFLM's crash
    with pytest.raises(RuntimeError, match="process ended with signal 9: Killed$"):
        allocates(flatbuffers["int8"], 64)


def test_an_empty_arena_is_a_no_and_a_probe_child_killed_before_it_logs_is_an_error(flatbuffers, monkeypatch):
    assert allocates(flatbuffers["int8"], 0) is False  # TFLM ends its process: a crash counts as no
    scripted_children(monkeypatch, ([], -9, "Killed"))
    with pytest.raises(RuntimeError, match="the TFLite Micro child process failed: .* signal 9: Killed"):
        allocates(flatbuffers["int8"], 1 << 20)


@pytest.mark.parametrize("arena_bytes", [-1, 1.5, True, "100"])
def test_a_probe_size_is_a_non_negative_integer(flatbuffers, arena_bytes):
    with pytest.raises(ValueError, match=f"arena_bytes must be a non-negative integer, got {arena_bytes!r}$"):
        allocates(flatbuffers["int8"], arena_bytes)


def test_a_missing_file_and_outputs_of_another_shape_are_named(tmp_path):
    with pytest.raises(ValueError, match=f"^{tmp_path / 'absent.tflite'}: cannot read the TFLite file"):
        measure_micro(tmp_path / "absent.tflite")
    with pytest.raises(ValueError, match=r"^TFLM gave outputs of shape \(2, 3\), LiteRT \(2, 4\)$"):
        compare_outputs(np.zeros((2, 3), np.int8), np.zeros((2, 4), np.int8), {"quantization": (1.0, 0)})


def test_a_probe_child_that_cannot_start_is_an_error_not_a_no(flatbuffers, monkeypatch):
    monkeypatch.setattr(micro, "WORKER_MODULE", "no_such_module_here")
    with pytest.raises(RuntimeError, match="child process failed: TFLite Micro's process ended with exit status 1"):
        allocates(flatbuffers["int8"], 1 << 20)


def test_float16_is_unsupported_with_the_operator_named(flatbuffers):
    result = measure_micro(flatbuffers["float16"])
    assert result["status"] == UNSUPPORTED == "unsupported on TFLite Micro"
    assert result["unsupported_operator"] == "DEQUANTIZE"
    assert result["arena_bytes"] is None and result["agreement"] is None
    assert "DEQUANTIZE" in result["tflm_error"]
    assert result["flash_bytes"] == len(flatbuffers["float16"])


def test_dynamic_range_hybrid_convolution_is_unsupported(flatbuffers):
    result = measure_micro(flatbuffers["dynamic_range"])
    assert result["status"] == UNSUPPORTED
    assert result["unsupported_operator"] == "CONV_2D"
    assert "Hybrid models are not supported" in result["tflm_error"]


def test_a_refusal_is_recorded_with_tflm_own_words_one_clean_line_each():
    from tinyml_quant.micro import _unsupported

    message = (
        "  dequantize_common.cc:42 input->type == kTfLiteInt8 was not true.\r\n"
        "\r\nNode DEQUANTIZE (number 3) failed to prepare with status 1\r\n"
    )
    assert _unsupported({"arena_bytes": 1024}, message) == {
        "status": UNSUPPORTED,
        "arena_bytes": None,
        "unsupported_operator": "DEQUANTIZE",
        "unsupported_node": 3,
        "tflm_error": "dequantize_common.cc:42 input->type == kTfLiteInt8 was not true.\n"
        "Node DEQUANTIZE (number 3) failed to prepare with status 1",
    }


def test_corrupt_file_is_a_value_error_naming_it(flatbuffers, tmp_path):
    path = tmp_path / "corrupt.tflite"
    path.write_bytes(flatbuffers["fp32"][:200])
    with pytest.raises(ValueError, match="corrupt.tflite") as raised:
        measure_micro(path)
    # LiteRT's own reason in brackets, not the loader's whole message again.
    assert str(raised.value).count("not a loadable TFLite model") == 1
    assert not str(raised.value).endswith("(None)")
    with pytest.raises(ValueError, match="corrupt.tflite"):
        allocates(path, 100_000)


def test_image_of_the_wrong_shape_is_a_value_error(flatbuffers):
    with pytest.raises(ValueError, match=r"images of shape \(28, 28, 1\) do not fit the model's input"):
        measure_micro(flatbuffers["fp32"], np.zeros((1, 28, 28, 1), np.uint8))


def test_a_json_py_where_the_user_stands_does_not_reach_the_tflm_child(flatbuffers, tmp_path, monkeypatch):
    """``python -m`` puts its working folder first on ``sys.path``: the child runs in a folder of its own."""
    (tmp_path / "json.py").write_text("raise SystemExit('the json.py of the folder the user stands in')\n")
    monkeypatch.chdir(tmp_path)
    assert measure_micro(flatbuffers["int8"])["status"] == "runs"


def test_run_micro_measurement_writes_json(flatbuffers, images, tmp_path):
    from tinyml_quant.evaluation import predict
    from tinyml_quant.runtime import load_interpreter

    tflite_path = tmp_path / "fp32.tflite"
    write_variant(tflite_path, flatbuffers["fp32"], "fp32")
    dataset_path = write_prepared_dataset(tmp_path / "synthetic.npz", images)
    gate = {"min_top1_agreement": 0.95, "max_output_steps": 64}
    returned = run_micro_measurement(tflite_path, dataset_path, VARIANT, 5, 0, gate, tmp_path / "out" / "micro.json")
    written = json.loads((tmp_path / "out" / "micro.json").read_text())
    assert written == json.loads(json.dumps(returned))
    assert written["status"] == "runs" and written["arena_bytes"] > 0 and written["wrong_output"] is None
    assert written["gate"] == gate
    assert written["agreement"]["images"] == 5 and written["agreement"]["top1_agreement"] == 1.0
    assert written["dataset_name"] == "synthetic (test)" and written["sample"] == "5 test images, seed 0"
    assert written["tflite_path"] == str(tflite_path)
    assert {key: written[key] for key in VARIANT} == VARIANT
    # The sample is the seeded subset of the test split, images with their own labels.
    sample = seeded_subset(len(images), 5, 0)
    outputs, _ = predict(load_interpreter(tflite_path), images[sample])
    expected = np.mean(outputs.argmax(1) == (np.arange(len(images)) % 4)[sample])
    assert written["agreement"]["litert_accuracy"] == pytest.approx(expected)
