"""Evaluation with LiteRT: batches, interpreters side by side, the metrics and the evaluation record."""

import numpy as np
import pytest

from tinyml_quant.evaluation import classification_metrics, evaluation_interpreters, predict
from tinyml_quant.runtime import load_interpreter
from tinyml_quant.schemes import CONVERTER_SCHEMES

from synthetic import save_as_prepared, write_variant


def test_metrics_match_an_independent_count():
    predictions = np.array([0, 1, 1, 2, 2, 2, 0, 1])
    labels = np.array([0, 1, 2, 2, 2, 0, 0, 1])
    reference = np.array([0, 1, 2, 2, 1, 2, 1, 1])
    metrics = classification_metrics(predictions, labels, ["a", "b", "c"], reference)
    assert metrics["accuracy"] == 6 / 8
    assert metrics["agreement_with_fp32"] == 5 / 8
    assert metrics["per_class_accuracy"] == {"a": 2 / 3, "b": 2 / 2, "c": 2 / 3}
    assert metrics["confusion_matrix"] == [[2, 0, 1], [0, 2, 0], [0, 1, 2]]
    # Counts, not floats: the metrics JSON and the confusion CSV would show 2.0.
    assert {type(count) for row in metrics["confusion_matrix"] for count in row} == {int}


def test_per_class_accuracy_of_a_class_with_one_test_image_or_none():
    """A class's accuracy divides by its own image count, even of one; a class with no image gets 0, not NaN."""
    metrics = classification_metrics(np.array([0, 1, 2]), np.array([0, 0, 2]), ["a", "b", "c", "d"])
    assert metrics["per_class_accuracy"] == {"a": 1 / 2, "b": 0.0, "c": 1.0, "d": 0.0}
    assert "agreement_with_fp32" not in metrics  # no reference given: the fp32 variant's own record


@pytest.mark.parametrize("scheme", CONVERTER_SCHEMES)
def test_batched_evaluation_equals_one_image_at_a_time(trained, flatbuffers, scheme):
    _, test_images, _, _ = trained
    batched, _ = predict(load_interpreter(flatbuffers[scheme]), test_images, batch_size=33)
    single, _ = predict(load_interpreter(flatbuffers[scheme]), test_images, batch_size=1)
    np.testing.assert_array_equal(batched.argmax(1), single.argmax(1))


@pytest.mark.parametrize("scheme", CONVERTER_SCHEMES)
def test_interpreters_side_by_side_equal_one_image_at_a_time(trained, flatbuffers, scheme):
    _, test_images, _, _ = trained
    side_by_side, _ = predict([load_interpreter(flatbuffers[scheme]) for _ in range(3)], test_images, batch_size=33)
    batched, _ = predict(load_interpreter(flatbuffers[scheme]), test_images, batch_size=33)
    single, _ = predict(load_interpreter(flatbuffers[scheme]), test_images, batch_size=1)
    np.testing.assert_array_equal(side_by_side, batched)  # the same batches on the same kernels
    np.testing.assert_array_equal(side_by_side.argmax(1), single.argmax(1))


def test_single_threaded_schemes_get_one_interpreter_per_thread(flatbuffers):
    assert len(evaluation_interpreters(flatbuffers["int16x8"], "int16x8", threads=3)) == 3
    assert len(evaluation_interpreters(flatbuffers["int16x8"], "int16x8", threads=1)) == 1
    assert len(evaluation_interpreters(flatbuffers["int8"], "int8", threads=3)) == 1
    # One thread unless told: a caller that names no threads gets one interpreter, whatever the scheme.
    assert len(evaluation_interpreters(flatbuffers["int16x8"], "int16x8")) == 1


def test_the_agreement_column_compares_with_the_reference_predictions(trained, flatbuffers, tmp_path):
    """run_evaluation's agreement is with the fp32 variant's predictions, not with its own."""
    from ai_edge_litert import __version__ as litert_version

    from tinyml_quant.evaluation import run_evaluation

    _, test_images, test_labels, _ = trained
    save_as_prepared(tmp_path / "toy.npz", test_images, test_labels)
    write_variant(tmp_path / "int8.tflite", flatbuffers["int8"])
    reference = np.zeros(len(test_labels), np.int16)  # a reference that says class 0 everywhere
    np.save(tmp_path / "fp32.npy", reference)
    variant = {"dataset": "toy", "model": "custom", "scheme": "int8"}
    metrics = run_evaluation(
        tmp_path / "int8.tflite",
        tmp_path / "toy.npz",
        variant,
        1,
        25,
        tmp_path / "m.json",
        tmp_path / "p.npy",
        tmp_path / "fp32.npy",
    )
    predictions = np.load(tmp_path / "p.npy")
    assert metrics["agreement_with_fp32"] == pytest.approx(np.mean(predictions == 0))
    assert metrics["agreement_with_fp32"] < 0.6
    assert metrics["accuracy"] == pytest.approx(np.mean(predictions == test_labels))
    assert metrics["timing"] == "LiteRT on the host CPU, 1 thread(s), batches of 25"
    # The reference itself agrees with itself; int16x8 on two threads runs two interpreters side by side.
    write_variant(tmp_path / "fp32.tflite", flatbuffers["fp32"], "fp32")
    variant = {"dataset": "toy", "model": "custom", "scheme": "fp32"}
    arguments = (tmp_path / "toy.npz", variant, 1, 25, tmp_path / "f.json", tmp_path / "f.npy", None)
    assert run_evaluation(tmp_path / "fp32.tflite", *arguments)["agreement_with_fp32"] == 1.0
    write_variant(tmp_path / "int16x8.tflite", flatbuffers["int16x8"], "int16x8")
    variant = {"dataset": "toy", "model": "custom", "scheme": "int16x8"}
    arguments = (tmp_path / "toy.npz", variant, 2, 25, tmp_path / "i.json", tmp_path / "i.npy", tmp_path / "f.npy")
    side_by_side = run_evaluation(tmp_path / "int16x8.tflite", *arguments)
    assert side_by_side["timing"] == "LiteRT on the host CPU, 2 one-thread interpreters side by side, batches of 25"
    assert side_by_side["threads"] == 2 and side_by_side["input_type"] == "float32"
    assert side_by_side["dataset_name"] == "toy" and side_by_side["test_images"] == len(test_labels)
    assert side_by_side["file_bytes"] == len(flatbuffers["int16x8"])
    assert side_by_side["litert_version"] == litert_version  # the tables' litert_version column
    np.save(tmp_path / "objects.npy", np.asarray([object()] * len(test_labels)), allow_pickle=True)
    arguments = (
        tmp_path / "toy.npz",
        variant,
        1,
        25,
        tmp_path / "o.json",
        tmp_path / "o.npy",
        tmp_path / "objects.npy",
    )
    with pytest.raises(ValueError, match="allow_pickle=False"):  # a reference file is never unpickled
        run_evaluation(tmp_path / "int16x8.tflite", *arguments)
    np.save(tmp_path / "short.npy", reference[:5])
    with pytest.raises(ValueError, match="short.npy: holds 5 predictions"):
        run_evaluation(
            tmp_path / "int8.tflite",
            tmp_path / "toy.npz",
            variant,
            1,
            25,
            tmp_path / "m2.json",
            tmp_path / "p2.npy",
            tmp_path / "short.npy",
        )


def test_a_reference_of_one_row_is_refused_naming_the_file_before_evaluating(trained, flatbuffers, tmp_path):
    """One row broadcasts against every prediction: numpy itself would give an agreement, and a wrong one."""
    from tinyml_quant.evaluation import run_evaluation

    _, test_images, test_labels, _ = trained
    save_as_prepared(tmp_path / "toy.npz", test_images, test_labels)
    write_variant(tmp_path / "int8.tflite", flatbuffers["int8"])
    variant = {"dataset": "toy", "model": "custom", "scheme": "int8"}
    outputs = (tmp_path / "m.json", tmp_path / "p.npy")
    for name, reference in (("one.npy", np.zeros(1, np.int16)), ("column.npy", np.zeros((len(test_labels), 1)))):
        np.save(tmp_path / name, reference)
        with pytest.raises(ValueError) as refused:
            run_evaluation(tmp_path / "int8.tflite", tmp_path / "toy.npz", variant, 1, 25, *outputs, tmp_path / name)
        expected = "1 predictions" if name == "one.npy" else f"an array of shape ({len(test_labels)}, 1)"
        assert str(refused.value).startswith(f"{tmp_path / name}: holds {expected}, expected {len(test_labels)}")
        assert not any(path.exists() for path in outputs)


class RecordingInterpreter:
    """LiteRT's interpreter interface around a known function, recording what ``predict`` asks of it.

    The output of image ``i`` (all pixels ``i``) is int8 ``[i, 2i, -i]`` with scale 0.5 and
    zero point -1; each ``invoke`` costs 1 + its first pixel seconds on its thread's clock.
    """

    def __init__(self, clock):
        self.clock, self.shape, self.resizes, self.allocations, self.inputs = clock, [1, 2, 2, 1], [], 0, []

    def get_input_details(self):
        return [{"index": 0, "shape": np.array(self.shape), "dtype": np.float32, "quantization": (0.0, 0)}]

    def get_output_details(self):
        return [{"index": 5, "shape": np.array([self.shape[0], 3]), "dtype": np.int8, "quantization": (0.5, -1)}]

    def resize_tensor_input(self, index, shape):
        assert index == 0
        self.resizes.append(list(shape))
        self.shape = list(shape)

    def allocate_tensors(self):
        self.allocations += 1

    def set_tensor(self, index, value):
        assert index == 0 and value.shape == tuple(self.shape) and value.dtype == np.float32
        self.inputs.append(value.copy())

    def invoke(self):
        self.clock.now = getattr(self.clock, "now", 0.0) + 1 + float(self.inputs[-1][0, 0, 0, 0])
        pixel = self.inputs[-1][:, 0, 0, 0].astype(np.int8)
        self.output = np.stack([pixel, 2 * pixel, -pixel], axis=1)

    def get_tensor(self, index):
        assert index == 5
        return self.output


def test_predict_runs_one_image_per_invoke_unless_told(monkeypatch):
    import threading
    import time

    clock = threading.local()
    monkeypatch.setattr(time, "perf_counter", lambda: getattr(clock, "now", 0.0))
    images = np.zeros((3, 2, 2, 1), np.float32)
    interpreter = RecordingInterpreter(clock)
    _, seconds = predict(interpreter, images)
    assert [len(batch) for batch in interpreter.inputs] == [1, 1, 1] and interpreter.resizes == []
    assert seconds == 3  # one second an invoke, one invoke an image
    predict(interpreter, images, batch_size=0)  # a batch size below one is taken as one
    assert [len(batch) for batch in interpreter.inputs] == [1] * 6 and interpreter.resizes == []


def test_predict_pads_the_last_batch_dequantizes_and_times_the_busiest_interpreter(monkeypatch):
    import threading
    import time

    # time.perf_counter is replaced for the whole process while this test runs (monkeypatch restores it);
    # one clock per thread: side-by-side interpreters each time their own invokes.
    clock = threading.local()
    monkeypatch.setattr(time, "perf_counter", lambda: getattr(clock, "now", 0.0))
    images = np.arange(7, dtype=np.float32)[:, None, None, None] * np.ones((1, 2, 2, 1), np.float32)
    expected = (np.stack([np.arange(7), 2 * np.arange(7), -np.arange(7)], axis=1) + 1) * 0.5

    alone = RecordingInterpreter(clock)
    outputs, seconds = predict(alone, images, batch_size=3)
    np.testing.assert_array_equal(outputs, expected)
    assert outputs.dtype == np.float32
    assert seconds == (1 + 0) + (1 + 3) + (1 + 6)  # batches starting at images 0, 3 and 6
    assert alone.resizes == [[3, 2, 2, 1]] and alone.allocations == 1
    np.testing.assert_array_equal(alone.inputs[2], np.concatenate([images[6:], np.zeros((2, 2, 2, 1))]))
    predict(alone, images, batch_size=3)
    assert alone.resizes == [[3, 2, 2, 1]], "a model already at the batch size is not resized again"

    pair = [RecordingInterpreter(clock) for _ in range(2)]
    outputs, seconds = predict(pair, images, batch_size=3)
    np.testing.assert_array_equal(outputs, expected)
    assert seconds == (1 + 0) + (1 + 6)  # the first interpreter takes batches 0 and 2, the second batch 1
    assert [len(each.inputs) for each in pair] == [2, 1]
    four = [RecordingInterpreter(clock) for _ in range(4)]
    outputs, seconds = predict(four, images, batch_size=3)
    np.testing.assert_array_equal(outputs, expected)
    assert seconds == 1 + 6 and [len(each.inputs) for each in four] == [1, 1, 1, 0]
    assert four[3].resizes == [], "only as many interpreters as batches are prepared"

    whole = RecordingInterpreter(clock)
    outputs, _ = predict(whole, images, batch_size=50)
    np.testing.assert_array_equal(outputs, expected)
    assert whole.resizes == [[7, 2, 2, 1]]  # one batch of all seven images, not fifty
    with pytest.raises(ValueError, match=r"images of shape \(3, 2, 1\) do not fit the model's input \(2, 2, 1\)"):
        predict(RecordingInterpreter(clock), np.zeros((4, 3, 2, 1), np.float32))


def test_the_evaluation_record_gives_the_mean_invoke_time_per_image(trained, flatbuffers, tmp_path, monkeypatch):
    import itertools
    import json
    import time

    from tinyml_quant.evaluation import run_evaluation

    _, test_images, test_labels, _ = trained
    save_as_prepared(tmp_path / "toy.npz", test_images, test_labels)
    write_variant(tmp_path / "fp32.tflite", flatbuffers["fp32"], "fp32")
    ticks = itertools.count()
    monkeypatch.setattr(time, "perf_counter", lambda: float(next(ticks)))  # every invoke takes one second
    variant = {"dataset": "toy", "model": "custom", "scheme": "fp32"}
    outputs = (tmp_path / "m.json", tmp_path / "p.npy", None)
    metrics = run_evaluation(tmp_path / "fp32.tflite", tmp_path / "toy.npz", variant, 1, 30, *outputs)
    assert len(test_labels) == 100
    assert metrics["mean_inference_ms"] == 1000.0 * 4 / 100  # four batches of 30 (the last padded) for 100 images
    assert json.loads((tmp_path / "m.json").read_text()) == metrics
    predictions = np.load(tmp_path / "p.npy", allow_pickle=False)
    assert predictions.dtype == np.int16 and len(predictions) == 100


def test_mlperf_tinys_own_int8_file_is_evaluated_as_published(tmp_path, published_mirror, cifar10_sample):
    """Its int8 input (scale 1, zero point -128) takes the raw pixels; the record has the accuracy, its Wilson
    interval, the test images, the file's pinned checksum, and the agreement with the fp32 predictions given."""
    from tinyml_quant.datasets import save_prepared
    from tinyml_quant.evaluation import run_published_evaluation
    from tinyml_quant.fetch import PUBLISHED_MODELS, fetch_published_model
    from tinyml_quant.statistics import wilson_interval

    model = PUBLISHED_MODELS["mlperf_tiny_resnet8"]
    sample = cifar10_sample
    fetch_published_model("mlperf_tiny_resnet8", tmp_path / "manifest.json", mirror=str(published_mirror))
    save_prepared(
        tmp_path / "d.npz",
        sample.x_train,
        sample.y_train,
        sample.x_test,
        sample.y_test,
        sample.class_names,
        sample.provenance,
    )
    # MLPerf's own fp32 file's predictions, as the study's fp32 variant of the imported model gives them.
    fp32 = load_interpreter(published_mirror / model.mirror_folder / model.fp32_file)
    reference = predict(fp32, sample.x_test, 10)[0].argmax(axis=1)
    np.save(tmp_path / "fp32.npy", reference.astype(np.int16))
    variant = {"dataset": "cifar10", "model": "mlperf_resnet8", "seed": 42, "scheme": "int8"}
    record = run_published_evaluation(
        tmp_path / "manifest.json",
        tmp_path / "d.npz",
        variant,
        1,
        250,
        tmp_path / "m.json",
        tmp_path / "p.npy",
        tmp_path / "fp32.npy",
    )
    predictions = np.load(tmp_path / "p.npy")
    correct = int((predictions == sample.y_test).sum())
    assert record["accuracy"] == correct / 30 and record["test_images"] == 30 and correct >= 18  # about 80 %
    assert (record["accuracy_ci_low"], record["accuracy_ci_high"]) == wilson_interval(correct, 30)
    assert record["agreement_with_fp32"] == np.mean(predictions == reference) >= 0.8
    assert record["input_type"] == "int8" and record["file"] == model.int8_file
    assert record["sha256"] == next(source.sha256 for source in model.files if source.name == model.int8_file)
    assert {key: record[key] for key in variant} == variant and record["predictions_file"] == "p.npy"
