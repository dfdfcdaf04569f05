"""Winning accuracy back: a quantized variant made again with its worst layers one step up in precision.

Each scheme that can lose accuracy has its own step up, made by its own tool:

* ``int8``: the worst layers kept in float (float fallback). TensorFlow's
  quantization debugger (``tf.lite.experimental.QuantizationDebugger``) ranks
  the layers by their own error (RMSE over the layer's quantization scale,
  each fed quantized inputs) on a seeded sample of test images; the worst go
  on its deny-list (``denylisted_nodes``) and ``get_nondebug_quantized_model``
  gives the selectively quantized model, with quantize and dequantize
  operators between the float and the int8 layers and float input and output.
* ``int4``: the worst 4-bit layers at 8-bit per-channel weights, and
  ``int8_per_tensor``: the worst layers per channel, both through the AI Edge
  Quantizer's per-layer recipe (``edge_quantizer``);
* ``int8_lut``: the worst layers neither binned nor compressed (``lut``).

For the last three the layers are ranked by the per-layer error stage
(``layer_error``: each layer's error in its own quantization steps against
fp32), among the layers the scheme reduced. Whether TensorFlow Lite Micro runs
the mixed model is measured, not assumed, and reported either way.
"""

import io
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from .conversion import calibration_images, calibration_key, converter_for, converter_reason, loadable
from .datasets import load_prepared, seeded_subset
from .edge_quantizer import REDUCED_WEIGHTS, quantized_variant
from .evaluation import evaluation_interpreters, predict
from .files import atomic_path, read_json, write_bytes, write_json
from .lut import WEIGHTED_OPERATORS, binned_model, compress, verify_decoding
from .micro import measure_micro
from .runtime import configure_tensorflow, load_keras_model
from .schemes import CALIBRATED_SCHEMES, FULL_INTEGER, INT4, LUT, PER_TENSOR
from .variants import CONVERTED, NOT_CONVERTED, NotConverted, ToolFailure, read_variant

logger = logging.getLogger(__name__)

# The schemes that have a mixed-precision variant, and what it keeps at higher precision.
RECOVERY_METHODS = {
    FULL_INTEGER: "worst layers kept in float",
    PER_TENSOR: "worst layers with per-channel weights",
    INT4: "worst layers with 8-bit weights",
    LUT: "worst layers neither binned nor compressed",
}
# The layers each scheme stores at reduced precision, which its mixed variant may raise again.
REDUCED_OPERATORS = {
    **{scheme: tuple(operators) for scheme, operators in REDUCED_WEIGHTS.items()},
    LUT: WEIGHTED_OPERATORS,
}


def _debugger(model, calibration, debug_images, denylisted_nodes=None):
    import tensorflow as tf

    def debug_dataset():
        for image in debug_images:
            yield [image[None].astype(np.float32)]

    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=denylisted_nodes or None)
    converter = converter_for(model, FULL_INTEGER, calibration)
    return tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=debug_dataset, debug_options=options
    )


def worst_layers(model, calibration, debug_images, count):
    """The ``count`` int8 layers with the largest own error (RMSE / scale), as ``[{"tensor", "operator", ...}]``."""
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


def worst_reduced_layers(layer_errors, scheme, count):
    """The ``count`` layers of ``scheme``'s reduced operators with the largest error in their own steps."""
    candidates = layer_errors[layer_errors.operator.isin(REDUCED_OPERATORS[scheme])]
    worst = candidates.sort_values("rmse_in_steps", ascending=False).head(count)
    return [
        {"tensor": row.tensor, "operator": row.operator, "rmse_in_steps": float(row.rmse_in_steps)}
        for row in worst.itertuples()
    ]


def mixed_variant(scheme, sources, representative, debug_sample, count, threads, check_images):
    """``(LiteRT flatbuffer, device flatbuffer, layers)`` of ``scheme``'s mixed-precision variant.

    ``sources`` holds what each scheme starts from: ``model`` (the Keras
    model), ``fp32`` and ``int8`` (variant flatbuffers), ``layer_errors``
    (the variant's per-layer error table) and, for int4, ``weight_algorithm``.
    """
    if scheme == FULL_INTEGER:
        try:
            flatbuffer, layers = float_fallback(sources["model"], representative, debug_sample, count)
        except Exception as error:  # the debugger converts the model again: the converter's errors
            raise ToolFailure(converter_reason(error)) from error
        loadable(flatbuffer, "TensorFlow's quantization debugger")
        return flatbuffer, flatbuffer, layers
    layers = worst_reduced_layers(sources["layer_errors"], scheme, count)
    if scheme == LUT:
        settings = sources["lut_settings"]
        kept = {layer["tensor"] for layer in layers}
        binned, tensors = binned_model(sources["int8"], settings["values_per_channel"], kept)
        if not tensors:  # the layers kept were the only ones compression made smaller
            return binned, binned, layers
        compressed = compress(binned, tensors, settings["values_per_channel"])
        verify_decoding(compressed, binned, check_images)
        return binned, compressed, layers
    higher = [(layer["tensor"], layer["operator"]) for layer in layers]
    flatbuffer = quantized_variant(
        sources["fp32"], scheme, representative, higher, threads, sources.get("weight_algorithm")
    )
    return flatbuffer, flatbuffer, layers


def run_recovery(scheme, paths, settings, threads, reason, output_paths):
    """Snakemake entry point: make ``scheme``'s mixed variant, evaluate it on the whole test set, measure it on TFLM.

    ``paths``: ``model``, ``dataset``, ``fp32``, ``int8``, ``layer_errors``,
    ``quantized_metrics``, ``reference_metrics``, ``quantized_device_record``
    (the conversion record of what a device stores of the scheme's variant); ``settings``: the
    calibration of the scheme, ``layers`` (how many to raise), the
    ``debug_images`` and ``sample_seed`` of the diagnostics, the
    ``agreement_images`` and ``agreement_seed`` of TFLite Micro's sample (the
    variants' own), ``batch_size``, and for the LUT scheme ``lut``;
    ``output_paths``: ``tflite``, ``device``, ``metrics``, ``predictions`` (its
    per-image predictions, which the record names, so that the report tests its
    change against fp32 on the same images: empty when it was not made).
    """
    configure_tensorflow(threads)
    dataset = load_prepared(paths["dataset"])
    calibration = settings["calibration"]
    # The LUT variant is calibrated as the int8 variant it bins.
    calibrated = scheme if scheme in CALIBRATED_SCHEMES else FULL_INTEGER
    representative = calibration_images(
        dataset.x_train, calibration["calibration_images"], calibration["calibration_seed"], calibration_key(calibrated)
    )
    debug_sample = dataset.x_test[seeded_subset(len(dataset.y_test), settings["debug_images"], settings["sample_seed"])]
    sample = seeded_subset(len(dataset.y_test), settings["agreement_images"], settings["agreement_seed"])
    sources = {
        "model": load_keras_model(paths["model"]) if scheme == FULL_INTEGER else None,
        "fp32": read_variant(paths["fp32"]),
        "int8": read_variant(paths["int8"]) if scheme == LUT else None,
        "layer_errors": pd.read_csv(paths["layer_errors"]) if scheme != FULL_INTEGER else None,
        "lut_settings": settings.get("lut"),
        # The int4 variant's own weight algorithm: its mixed variant differs only in the layers raised.
        "weight_algorithm": calibration.get("weight_algorithm"),
    }
    quantized, reference = read_json(paths["quantized_metrics"]), read_json(paths["reference_metrics"])
    record = {
        "dataset": quantized["dataset"],
        "model": quantized["model"],
        "seed": quantized["seed"],
        "scheme": scheme,
        "method": RECOVERY_METHODS[scheme],
        "reason": reason,
        "reference_accuracy": reference["accuracy"],
        "quantized_accuracy": quantized["accuracy"],
        # None when the scheme's device file could not be made (the LUT compressor failed).
        "quantized_file_bytes": read_json(paths["quantized_device_record"]).get("bytes"),
        "predictions_file": Path(output_paths["predictions"]).name,
    }
    try:
        flatbuffer, device, layers = mixed_variant(
            scheme, sources, representative, debug_sample, settings["layers"], threads, dataset.x_test[sample]
        )
    except (ToolFailure, NotConverted) as error:
        logger.warning("%s %s: no mixed variant: %s", record["model"], scheme, error)
        for name in ("tflite", "device"):
            write_bytes(output_paths[name], b"")
        _write_predictions(output_paths["predictions"], np.zeros(0, np.int16))
        record.update(status=NOT_CONVERTED, reason_not_made=str(error))
        write_json(output_paths["metrics"], record)
        return record
    write_bytes(output_paths["tflite"], flatbuffer)
    write_bytes(output_paths["device"], device)
    outputs, _ = predict(
        evaluation_interpreters(output_paths["tflite"], scheme, threads), dataset.x_test, settings["batch_size"]
    )
    predictions = outputs.argmax(axis=1)
    _write_predictions(output_paths["predictions"], predictions)
    accuracy = float(np.mean(predictions == dataset.y_test))
    micro = measure_micro(
        device, dataset.x_test[sample], dataset.y_test[sample], reference=flatbuffer, gate=settings["gate"]
    )
    record.update(
        {
            "status": CONVERTED,
            "layers": layers,
            "debug_images": int(len(debug_sample)),
            "accuracy": accuracy,
            "test_images": int(len(dataset.y_test)),
            "file_bytes": Path(output_paths["device"]).stat().st_size,
            "micro": {
                key: micro[key]
                for key in ("status", "arena_bytes", "unsupported_operator", "agreement", "wrong_output")
            },
        }
    )
    write_json(output_paths["metrics"], record)
    logger.info(
        "%s %s: %d layers raised: accuracy %.4f (%s %.4f, fp32 %.4f); TFLite Micro: %s",
        record["model"],
        scheme,
        len(layers),
        accuracy,
        scheme,
        quantized["accuracy"],
        reference["accuracy"],
        micro["status"],
    )
    return record


def _write_predictions(path, predictions):
    with atomic_path(path) as temporary:
        np.save(temporary, np.asarray(predictions).astype(np.int16))
