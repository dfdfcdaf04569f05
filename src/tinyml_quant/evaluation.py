"""Evaluation of TFLite variants with the LiteRT interpreter (``ai-edge-litert``)."""

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .datasets import load_prepared
from .fetch import published_path
from .files import atomic_path, read_json, write_json
from .runtime import dequantize_output, image_shape, input_converter, load_interpreter
from .schemes import INTEGER_16X8
from .statistics import wilson_interval
from .variants import CONVERTED, NotConverted, not_converted_fields, read_variant

logger = logging.getLogger(__name__)


# Schemes whose LiteRT kernels use one thread whatever ``num_threads`` says: int16x8 runs
# TFLite's reference integer kernels (no XNNPACK delegate, no multi-threaded kernels), so a
# job with more threads evaluates with that many interpreters side by side instead
# (``python -m tools.bench`` measures both ways for every scheme).
SINGLE_THREADED_SCHEMES = (INTEGER_16X8,)


def evaluation_interpreters(model, scheme, threads=1):
    """The interpreters that evaluate ``scheme`` with ``threads`` threads in all.

    One interpreter with ``threads`` threads, except for SINGLE_THREADED_SCHEMES:
    ``threads`` one-thread interpreters, which ``predict`` runs side by side.
    """
    if scheme in SINGLE_THREADED_SCHEMES and threads > 1:
        return [load_interpreter(model, 1) for _ in range(threads)]
    return [load_interpreter(model, threads)]


def fixed_batch_size(interpreter):
    """The batch size a model's input is fixed at (a Keras model built with one), or None when it can be resized.

    LiteRT cannot resize such an input: its graph holds the size (XNNPACK's
    delegate fails to reshape, an LSTM's loop is unrolled for it).
    """
    signature = interpreter.get_input_details()[0].get("shape_signature")  # the shape as built; -1: resizable
    return None if signature is None or len(signature) == 0 or signature[0] == -1 else int(signature[0])


def predict(interpreter, images, batch_size=1):
    """Dequantized outputs for ``images`` and the seconds spent in ``invoke``.

    Runs batches of ``batch_size`` by resizing the input tensor, or of the
    model's own batch size when its input is fixed (``fixed_batch_size``);
    the last batch is zero-padded to full size so the tensors are allocated once.
    ``interpreter`` may be a list of interpreters of one model: each then
    takes every n-th batch in its own thread (LiteRT releases the GIL in
    ``invoke``), and the seconds are those of the busiest one. Every image
    gets the same kernels either way, so the outputs do not depend on it.
    """
    interpreters = list(interpreter) if isinstance(interpreter, (list, tuple)) else [interpreter]
    input_detail = interpreters[0].get_input_details()[0]
    expected = image_shape(input_detail)
    if tuple(images.shape[1:]) != expected:
        raise ValueError(f"images of shape {images.shape[1:]} do not fit the model's input {expected}")
    batch_size = fixed_batch_size(interpreters[0]) or max(1, min(batch_size, len(images)))
    starts = list(range(0, len(images), batch_size))
    interpreters = interpreters[: len(starts)]
    for each in interpreters:
        if each.get_input_details()[0]["shape"][0] != batch_size:
            each.resize_tensor_input(input_detail["index"], [batch_size, *expected])
            each.allocate_tensors()
    outputs = [None] * len(starts)

    def run(worker):
        each = interpreters[worker]
        input_detail = each.get_input_details()[0]
        output_detail = each.get_output_details()[0]
        convert = input_converter(input_detail, images.dtype)
        seconds = 0.0
        for number in range(worker, len(starts), len(interpreters)):
            batch = images[starts[number] : starts[number] + batch_size]
            count = len(batch)
            if count < batch_size:
                batch = np.concatenate([batch, np.zeros((batch_size - count, *expected), batch.dtype)])
            each.set_tensor(input_detail["index"], convert(batch))
            started = time.perf_counter()
            each.invoke()
            seconds += time.perf_counter() - started
            outputs[number] = dequantize_output(each.get_tensor(output_detail["index"])[:count], output_detail)
        return seconds

    if len(interpreters) == 1:
        seconds = [run(0)]
    else:
        with ThreadPoolExecutor(len(interpreters)) as pool:
            seconds = list(pool.map(run, range(len(interpreters))))
    return np.concatenate(outputs), max(seconds)


def classification_metrics(predictions, labels, class_names, reference_predictions=None):
    """Accuracy, per-class accuracy, confusion matrix and agreement with a reference's predictions."""
    num_classes = len(class_names)
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    per_class = confusion.diagonal() / np.maximum(confusion.sum(axis=1), 1)
    metrics = {
        "accuracy": float(np.mean(predictions == labels)),
        "per_class_accuracy": {name: float(value) for name, value in zip(class_names, per_class)},
        "confusion_matrix": confusion.tolist(),
    }
    if reference_predictions is not None:
        metrics["agreement_with_fp32"] = float(np.mean(predictions == reference_predictions))
    return metrics


def load_reference_predictions(path, count):
    """The fp32 variant's ``count`` predictions from ``path``; None when it was not converted (an empty file).

    Anything but one prediction per test image is refused naming the file: numpy would broadcast a
    single row against every prediction, and the agreement would come out a plausible number, wrong.
    """
    reference = np.load(path, allow_pickle=False)
    if reference.size == 0:  # the fp32 variant was not converted: nothing to agree with
        return None
    if reference.ndim != 1:
        raise ValueError(f"{path}: holds an array of shape {reference.shape}, expected {count} predictions")
    if len(reference) != count:
        raise ValueError(f"{path}: holds {len(reference)} predictions, expected {count}")
    return reference


def _evaluated(tflite_path, dataset, scheme, threads, batch_size, reference_predictions_path):
    """``(metrics, predictions)`` of the ``.tflite`` file at ``tflite_path`` on the whole test set of ``dataset``.

    ``reference_predictions_path`` holds the fp32 variant's predictions, which the agreement is
    computed with (None: the file is the reference itself).
    """
    from ai_edge_litert import __version__ as litert_version

    # Checked before the test set runs: a bad reference would otherwise cost a whole evaluation.
    if reference_predictions_path is not None:
        reference = load_reference_predictions(reference_predictions_path, len(dataset.y_test))
    interpreters = evaluation_interpreters(tflite_path, scheme, threads)
    outputs, seconds = predict(interpreters, dataset.x_test, batch_size)
    predictions = outputs.argmax(axis=1)
    if reference_predictions_path is None:
        reference = predictions
    metrics = classification_metrics(predictions, dataset.y_test, dataset.class_names, reference)
    input_detail = interpreters[0].get_input_details()[0]
    layout = (
        f"{threads} thread(s)"
        if len(interpreters) == 1
        else f"{len(interpreters)} one-thread interpreters side by side"
    )
    metrics.update(
        {
            "status": CONVERTED,
            "dataset_name": dataset.name,
            "file_bytes": Path(tflite_path).stat().st_size,
            "test_images": int(len(predictions)),
            "input_type": np.dtype(input_detail["dtype"]).name,
            "mean_inference_ms": 1000.0 * seconds / len(predictions),
            "timing": f"LiteRT on the host CPU, {layout}, batches of {fixed_batch_size(interpreters[0]) or batch_size}",
            "threads": threads,
            "litert_version": litert_version,
        }
    )
    return metrics, predictions


def _write_evaluation(metrics, predictions, metrics_path, predictions_path):
    """The record, naming its per-image predictions (beside it) so that a report joins them through it."""
    metrics["predictions_file"] = Path(predictions_path).name
    with atomic_path(predictions_path) as temporary:
        np.save(temporary, predictions.astype(np.int16))
    write_json(metrics_path, metrics)


def run_evaluation(
    tflite_path, dataset_path, variant, threads, batch_size, metrics_path, predictions_path, reference_predictions_path
):
    """Snakemake entry point: evaluate one variant on the whole (prepared) test set.

    ``variant`` names it (``dataset``, ``model``, ``scheme``); ``reference_predictions_path``
    holds the fp32 variant's predictions (None for the fp32 variant itself).
    """
    dataset = load_prepared(dataset_path)
    try:
        read_variant(tflite_path)
    except NotConverted as error:
        metrics = {**variant, **not_converted_fields(error), "accuracy": None, "dataset_name": dataset.name}
        _write_evaluation(metrics, np.zeros(0, np.int16), metrics_path, predictions_path)
        return metrics
    metrics, predictions = _evaluated(
        tflite_path, dataset, variant["scheme"], threads, batch_size, reference_predictions_path
    )
    metrics.update(variant)
    _write_evaluation(metrics, predictions, metrics_path, predictions_path)
    logger.info("%s %s: accuracy %.4f", dataset.name, variant["scheme"], metrics["accuracy"])
    return metrics


def run_published_evaluation(
    manifest_path,
    dataset_path,
    variant,
    threads,
    batch_size,
    metrics_path,
    predictions_path,
    reference_predictions_path,
):
    """Snakemake entry point: a published model's own int8 file, as it is, on the whole (prepared) test set.

    ``manifest_path`` is the published model's fetch manifest; ``variant`` names the imported model
    it is compared with (``dataset``, ``model``, ``seed``, ``scheme``), and
    ``reference_predictions_path`` holds that model's fp32 predictions. The record adds the
    accuracy's 95 % Wilson interval and which file this is.
    """
    manifest = read_json(manifest_path)
    path = published_path(manifest, manifest["int8_file"])
    dataset = load_prepared(dataset_path)
    metrics, predictions = _evaluated(path, dataset, variant["scheme"], threads, batch_size, reference_predictions_path)
    correct = int(np.sum(predictions == dataset.y_test))
    low, high = wilson_interval(correct, len(predictions))
    metrics.update(
        {
            **variant,
            "source": f"{manifest['int8_file']} as published ({manifest['description']}, {manifest['origin']})",
            "published_model": manifest["published_model"],
            "file": manifest["int8_file"],
            "sha256": manifest["files"][manifest["int8_file"]]["sha256"],
            "accuracy_ci_low": low,
            "accuracy_ci_high": high,
        }
    )
    _write_evaluation(metrics, predictions, metrics_path, predictions_path)
    logger.info("%s %s: accuracy %.4f", dataset.name, metrics["source"], metrics["accuracy"])
    return metrics
