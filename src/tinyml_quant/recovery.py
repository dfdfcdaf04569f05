"""Winning accuracy back: an int8 variant converted again with its worst layers kept in float.

The layers come from TensorFlow's quantization debugger
(``tf.lite.experimental.QuantizationDebugger``) run on the int8 converter with
a seeded sample of test images: each layer's own (not accumulated) error, as
RMSE over the layer's quantization scale, the measure TensorFlow's debugging
guide ranks suspect layers by. The ``recovery_float_layers`` worst go on the
debugger's deny-list (``denylisted_nodes``), and ``get_nondebug_quantized_model``
gives the selectively quantized model: those layers float, the rest int8, with
quantize and dequantize operators between them and float input and output.
That is a mixed model; whether TensorFlow Lite Micro runs it is measured, not
assumed, and reported either way.
"""

import io
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from .conversion import FULL_INTEGER, calibration_images, converter_for
from .datasets import load_prepared, seeded_subset
from .evaluation import evaluation_interpreters, predict
from .files import read_json, write_bytes, write_json
from .micro import measure_micro
from .runtime import configure_tensorflow, load_keras_model

logger = logging.getLogger(__name__)

# The scheme whose converter has a deny-list: full-integer quantization.
RECOVERED_SCHEME = FULL_INTEGER


def _debugger(model, calibration, debug_images, denylisted_nodes=None):
    import tensorflow as tf

    def debug_dataset():
        for image in debug_images:
            yield [image[None].astype(np.float32)]

    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=denylisted_nodes or None)
    converter = converter_for(model, RECOVERED_SCHEME, calibration)
    return tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=debug_dataset, debug_options=options
    )


def worst_layers(model, calibration, debug_images, count):
    """The ``count`` layers with the largest own error (RMSE / scale), as ``[{"tensor", "rmse_in_steps"}]``."""
    debugger = _debugger(model, calibration, debug_images)
    debugger.run()
    dump = io.StringIO()
    debugger.layer_statistics_dump(dump)  # CSV: op_name, mean_squared_error, scale, tensor_name, ...
    dump.seek(0)
    statistics = pd.read_csv(dump)
    statistics["rmse_in_steps"] = np.sqrt(statistics.mean_squared_error) / statistics.scale
    worst = statistics.sort_values("rmse_in_steps", ascending=False).head(count)
    return [
        {"tensor": row.tensor_name, "operator": row.op_name, "rmse_in_steps": float(row.rmse_in_steps)}
        for row in worst.itertuples()
    ]


def float_fallback(model, calibration, debug_images, count):
    """``(flatbuffer, layers kept in float)``: ``model`` quantized as int8 except its ``count`` worst layers."""
    layers = worst_layers(model, calibration, debug_images, count)
    debugger = _debugger(model, calibration, debug_images, [layer["tensor"] for layer in layers])
    return debugger.get_nondebug_quantized_model(), layers


def run_recovery(
    model_path,
    dataset_path,
    quantized_metrics_path,
    reference_metrics_path,
    calibration,
    float_layers,
    debug_images,
    sample_seed,
    agreement_images,
    batch_size,
    threads,
    reason,
    tflite_path,
    metrics_path,
):
    """Snakemake entry point: convert with the float fallback, evaluate on the whole test set, measure on TFLM."""
    configure_tensorflow(threads)
    dataset = load_prepared(dataset_path)
    model = load_keras_model(model_path)
    representative = calibration_images(
        dataset.x_train, calibration["calibration_images"], calibration["calibration_seed"]
    )
    debug_sample = dataset.x_test[seeded_subset(len(dataset.y_test), debug_images, sample_seed)]
    flatbuffer, layers = float_fallback(model, representative, debug_sample, float_layers)
    write_bytes(tflite_path, flatbuffer)
    outputs, _ = predict(evaluation_interpreters(tflite_path, RECOVERED_SCHEME, threads), dataset.x_test, batch_size)
    accuracy = float(np.mean(outputs.argmax(axis=1) == dataset.y_test))
    sample = seeded_subset(len(dataset.y_test), agreement_images, sample_seed)
    micro = measure_micro(tflite_path, dataset.x_test[sample], dataset.y_test[sample])
    quantized, reference = read_json(quantized_metrics_path), read_json(reference_metrics_path)
    record = {
        "dataset": quantized["dataset"],
        "model": quantized["model"],
        "scheme": RECOVERED_SCHEME,
        "reason": reason,
        "float_layers": layers,
        "debug_images": int(len(debug_sample)),
        "reference_accuracy": reference["accuracy"],
        "quantized_accuracy": quantized["accuracy"],
        "accuracy": accuracy,
        "test_images": int(len(dataset.y_test)),
        "file_bytes": Path(tflite_path).stat().st_size,
        "quantized_file_bytes": quantized["file_bytes"],
        "micro": {key: micro[key] for key in ("status", "arena_bytes", "unsupported_operator", "agreement")},
    }
    write_json(metrics_path, record)
    logger.info(
        "%s: %d layers in float: accuracy %.4f (int8 %.4f, fp32 %.4f); TFLite Micro: %s",
        tflite_path,
        len(layers),
        accuracy,
        quantized["accuracy"],
        reference["accuracy"],
        micro["status"],
    )
    return record
