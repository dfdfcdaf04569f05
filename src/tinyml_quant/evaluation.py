"""Evaluation of TFLite variants with the LiteRT interpreter (``ai-edge-litert``)."""

import logging
import time
from pathlib import Path

import numpy as np

from .files import atomic_path, read_json, write_json

logger = logging.getLogger(__name__)


def load_interpreter(model, threads=1):
    """A LiteRT interpreter for a ``.tflite`` path or flatbuffer bytes; bad files raise ValueError naming them."""
    from ai_edge_litert.interpreter import Interpreter

    where = "model bytes" if isinstance(model, (bytes, bytearray)) else str(model)
    try:
        if isinstance(model, (bytes, bytearray)):
            interpreter = Interpreter(model_content=bytes(model), num_threads=threads)
        else:
            interpreter = Interpreter(model_path=str(model), num_threads=threads)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as error:
        raise ValueError(f"{where}: not a loadable TFLite model ({error})") from error
    return interpreter


def quantize_input(images, detail):
    """Float pixels to the input tensor's type, with the tensor's own scale and zero point."""
    dtype = detail["dtype"]
    if np.issubdtype(dtype, np.floating):
        return images.astype(dtype)
    scale, zero_point = detail["quantization"]
    info = np.iinfo(dtype)
    quantized = np.round(images.astype(np.float32) / scale) + zero_point
    return np.clip(quantized, info.min, info.max).astype(dtype)


def dequantize_output(values, detail):
    if np.issubdtype(values.dtype, np.floating):
        return values
    scale, zero_point = detail["quantization"]
    return (values.astype(np.float32) - zero_point) * scale


def predict(interpreter, images, batch_size=1):
    """Dequantized outputs for ``images`` and the seconds spent in ``invoke``.

    Runs batches of ``batch_size`` by resizing the input tensor; the last
    batch is zero-padded to full size so the tensors are allocated once.
    """
    input_detail = interpreter.get_input_details()[0]
    expected = tuple(input_detail["shape"][1:])
    if tuple(images.shape[1:]) != expected:
        raise ValueError(f"images of shape {images.shape[1:]} do not fit the model's input {expected}")
    batch_size = max(1, min(batch_size, len(images)))
    if input_detail["shape"][0] != batch_size:
        interpreter.resize_tensor_input(input_detail["index"], [batch_size, *expected])
        interpreter.allocate_tensors()
    input_detail = interpreter.get_input_details()[0]
    output_detail = interpreter.get_output_details()[0]
    outputs, seconds = [], 0.0
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        count = len(batch)
        if count < batch_size:
            batch = np.concatenate([batch, np.zeros((batch_size - count, *expected), batch.dtype)])
        interpreter.set_tensor(input_detail["index"], quantize_input(batch, input_detail))
        started = time.perf_counter()
        interpreter.invoke()
        seconds += time.perf_counter() - started
        outputs.append(dequantize_output(interpreter.get_tensor(output_detail["index"])[:count], output_detail))
    return np.concatenate(outputs), seconds


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


def run_evaluation(tflite_path, dataset_path, scheme, threads, batch_size,
                   metrics_path, predictions_path, fp32_predictions_path=None):  # fmt: skip
    """Snakemake entry point: evaluate one variant on the whole (prepared) test set."""
    from ai_edge_litert import __version__ as litert_version

    from .datasets import load_prepared

    dataset = load_prepared(dataset_path)
    interpreter = load_interpreter(tflite_path, threads)
    outputs, seconds = predict(interpreter, dataset.x_test, batch_size)
    predictions = outputs.argmax(axis=1)
    reference = predictions if fp32_predictions_path is None else np.load(fp32_predictions_path, allow_pickle=False)
    if len(reference) != len(predictions):
        raise ValueError(f"{fp32_predictions_path}: holds {len(reference)} predictions, expected {len(predictions)}")
    metrics = classification_metrics(predictions, dataset.y_test, dataset.class_names, reference)
    input_detail = interpreter.get_input_details()[0]
    metrics.update(
        {
            "dataset": dataset.provenance["dataset"],
            "dataset_name": dataset.name,
            "scheme": scheme,
            "file_bytes": Path(tflite_path).stat().st_size,
            "test_images": int(len(predictions)),
            "input_type": np.dtype(input_detail["dtype"]).name,
            "mean_inference_ms": 1000.0 * seconds / len(predictions),
            "timing": f"LiteRT on the host CPU, {threads} thread(s), batches of {batch_size}",
            "threads": threads,
            "litert_version": litert_version,
        }
    )
    with atomic_path(predictions_path) as temporary:
        np.save(temporary, predictions.astype(np.int16))
    write_json(metrics_path, metrics)
    logger.info("%s %s: accuracy %.4f", dataset.name, scheme, metrics["accuracy"])
    return metrics


def read_metrics(path):
    return read_json(path)
