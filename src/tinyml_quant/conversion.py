"""TFLite conversion: ``convert(model, scheme, ...) -> bytes`` for the schemes of the TFLite converter.

The schemes themselves, and which tool makes each, are in ``schemes``; the
AI Edge Quantizer's are in ``edge_quantizer``, the LUT-compressed variant in
``lut``.
"""

import logging

import numpy as np

from .datasets import load_prepared, seeded_subset
from .runtime import configure_tensorflow, load_interpreter, load_keras_model
from .schemes import (
    CALIBRATED_SCHEMES,
    CONVERTER,
    CONVERTER_SCHEMES,
    FLOAT16,
    FULL_INTEGER,
    INTEGER_16X8,
    REFERENCE_SCHEME,
)
from .variants import ToolFailure, converting

logger = logging.getLogger(__name__)


def calibration_images(images, count, seed):
    """``count`` training images chosen with ``seed``, as float32 (the models' input type)."""
    if count < 1:
        raise ValueError(f"calibration_images must be at least 1, got {count}")
    if count > len(images):
        raise ValueError(f"calibration_images ({count}) is more than the {len(images)} training images")
    return images[seeded_subset(len(images), count, seed)].astype(np.float32)


def converter_for(model, scheme, representative_images=None):
    """A ``tf.lite.TFLiteConverter`` for ``model`` set up for post-training ``scheme``.

    * fp32: no optimization;
    * dynamic_range: int8 weights, float activations;
    * float16: float16 weights;
    * int8: full integer, int8 input and output, calibrated on ``representative_images``;
    * int16x8: 16-bit activations, 8-bit weights, calibrated likewise (float input and output).
    """
    import tensorflow as tf

    if scheme not in CONVERTER_SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r} of the TFLite converter; its schemes: {list(CONVERTER_SCHEMES)}")
    if scheme in CALIBRATED_SCHEMES and (representative_images is None or len(representative_images) == 0):
        raise ValueError(f"scheme {scheme} needs representative images for calibration")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if scheme != REFERENCE_SCHEME:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if scheme == FLOAT16:
        converter.target_spec.supported_types = [tf.float16]
    if scheme in CALIBRATED_SCHEMES:

        def representative_dataset():
            for image in representative_images:
                yield [image[None]]

        converter.representative_dataset = representative_dataset
    if scheme == FULL_INTEGER:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    if scheme == INTEGER_16X8:
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        ]
    return converter


def convert(model, scheme, representative_images=None):
    """Convert a Keras model to a TFLite flatbuffer with post-training ``scheme`` (see ``converter_for``)."""
    return converter_for(model, scheme, representative_images).convert()


def converter_reason(error):
    """What the converter could not convert, from its own structured errors (operator, message, code).

    Its text also holds the whole MLIR function; ``ConverterError.errors``
    names the operator and the reason.
    """
    reasons = []
    for detail in getattr(error, "errors", None) or []:
        message = detail.error_message.split("\n")[0]
        code = type(detail).ErrorCode.Name(detail.error_code)
        reasons.append(f"{detail.operator.name or 'the model'}: {message} ({code})")
    return "; ".join(dict.fromkeys(reasons)) or f"{type(error).__name__}: {error}"


def loadable(flatbuffer, tool):
    """``flatbuffer`` if LiteRT prepares it; else ``ToolFailure``: the tool made a model no runtime can run."""
    try:
        load_interpreter(flatbuffer)
    except ValueError as error:
        raise ToolFailure(f"{tool} made a model LiteRT cannot prepare ({error.__cause__ or error})") from error
    return flatbuffer


def run_conversion(model_path, dataset_path, scheme, settings, threads, output_path):
    """Snakemake entry point: convert the trained model with ``scheme``; write the variant and its record.

    A model the converter cannot convert (an operator it cannot lower) is
    marked not converted with the converter's reason (``variants``).
    """
    configure_tensorflow(threads)
    model = load_keras_model(model_path)
    representative = None
    if scheme in CALIBRATED_SCHEMES:
        dataset = load_prepared(dataset_path)
        representative = calibration_images(
            dataset.x_train, settings["calibration_images"], settings["calibration_seed"]
        )
    with converting(output_path, CONVERTER, {"scheme": scheme, "settings": settings}) as made:
        try:
            flatbuffer = convert(model, scheme, representative)
        except Exception as error:  # the converter raises ConverterError, ValueError, ... for what it cannot lower
            raise ToolFailure(converter_reason(error)) from error
        made["flatbuffer"] = loadable(flatbuffer, CONVERTER)
    logger.info("%s: converted with %s", output_path, scheme)
