"""TFLite conversion: one pure ``convert(model, scheme, ...) -> bytes`` per post-training scheme.

``SCHEMES`` is the one list of scheme names, in the order tables show them.
"""

import logging

import numpy as np

from .datasets import load_prepared, seeded_subset
from .files import write_bytes
from .runtime import configure_tensorflow, load_keras_model

logger = logging.getLogger(__name__)

SCHEMES = ("fp32", "dynamic_range", "float16", "int8", "int16x8")
# REFERENCE_SCHEME: the unquantized model, which every variant is compared with.
REFERENCE_SCHEME, DYNAMIC_RANGE, FLOAT16, FULL_INTEGER, INTEGER_16X8 = SCHEMES
CALIBRATED_SCHEMES = (FULL_INTEGER, INTEGER_16X8)


def calibration_images(images, count, seed):
    """``count`` training images chosen with ``seed``, as float32 (the models' input type)."""
    if count < 1:
        raise ValueError(f"calibration_images must be at least 1, got {count}")
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

    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; known schemes: {list(SCHEMES)}")
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


def run_conversion(model_path, dataset_path, scheme, settings, threads, output_path):
    """Snakemake entry point: load the trained model, convert it, write the ``.tflite`` file."""
    configure_tensorflow(threads)
    model = load_keras_model(model_path)
    representative = None
    if scheme in CALIBRATED_SCHEMES:
        dataset = load_prepared(dataset_path)
        representative = calibration_images(
            dataset.x_train, settings["calibration_images"], settings["calibration_seed"]
        )
    flatbuffer = convert(model, scheme, representative)
    write_bytes(output_path, flatbuffer)
    logger.info("%s: %d bytes", output_path, len(flatbuffer))
