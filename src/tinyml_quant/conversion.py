"""TFLite conversion: ``convert(model, scheme, ...) -> bytes`` for the schemes of the TFLite converter.

The schemes themselves, and which tool makes each, are in ``schemes``; the
AI Edge Quantizer's are in ``edge_quantizer``, the LUT-compressed variant in
``lut``.
"""

import logging
import tempfile
from pathlib import Path

import numpy as np

from .children import run_child, signal_name
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
    calibration_scheme,
)
from .variants import ToolFailure, converting

logger = logging.getLogger(__name__)


def calibration_key(scheme):
    """The config key of ``scheme``'s calibration size, as messages name it (int4's for its algorithm twins)."""
    return f"conversion.{calibration_scheme(scheme)}.calibration_images"


def calibration_images(images, count, seed, key="calibration_images"):
    """``count`` training images chosen with ``seed``, as float32 (the models' input type).

    ``key`` names the setting in errors. The config check refuses a size
    above a training split it can count before any job (``config.train_images``);
    a dataset counted only when it is prepared (a ``.tar.gz``, a URL) is
    refused here.
    """
    if count < 1:
        raise ValueError(f"{key} must be at least 1, got {count}")
    if count > len(images):
        raise ValueError(f"{key}: {count} is more than the {len(images)} training images; lower it")
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


# The converter's child process (``conversion_worker``), and how long one conversion may take there.
WORKER_MODULE = "tinyml_quant.conversion_worker"
WORKER_TIMEOUT_SECONDS = 1800


def convert_in_child(model_path, scheme, representative_images=None, threads=1):
    """``convert`` of the Keras model at ``model_path``, run in a child process; ``ToolFailure`` when it cannot.

    The converter's refusal is its reason (``converter_reason``); a converter
    that ends its process with a signal is a refusal too, naming the signal.
    """
    with tempfile.TemporaryDirectory(prefix="converter-") as folder:
        images_path, output_path = Path(folder) / "images.npy", Path(folder) / "model.tflite"
        if representative_images is not None:
            np.save(images_path, representative_images)
        request = {
            "model_path": str(Path(model_path).resolve()),
            "scheme": scheme,
            "images_path": str(images_path) if representative_images is not None else None,
            "output_path": str(output_path),
            "threads": threads,
        }
        events, returncode, stderr = run_child(WORKER_MODULE, request, folder, WORKER_TIMEOUT_SECONDS)
        final = events[-1] if events else {"event": None}
        if final["event"] == "done" and returncode == 0:
            return output_path.read_bytes()
    if final["event"] == "refused":
        raise ToolFailure(final["reason"])
    if returncode < 0 and final["event"] == "converting":
        raise ToolFailure(f"the converter crashed with {signal_name(returncode)}")
    # Not the converter: the child could not start, load the model or write its file.
    raise RuntimeError(f"the converter's child process ended with {signal_name(returncode)}: {stderr.strip()[-500:]}")


def loadable(flatbuffer, tool):
    """``flatbuffer`` if LiteRT prepares it; else ``ToolFailure``: the tool made a model no runtime can run."""
    try:
        load_interpreter(flatbuffer)
    except ValueError as error:
        raise ToolFailure(f"{tool} made a model LiteRT cannot prepare ({error.__cause__ or error})") from error
    return flatbuffer


def run_conversion(
    model_path, dataset_path, scheme, settings, threads, output_path, isolated=False, calibration_setting=None
):
    """Snakemake entry point: convert the trained model with ``scheme``; write the variant and its record.

    A model the converter cannot convert (an operator it cannot lower) is
    marked not converted with the converter's reason (``variants``).
    ``isolated`` (a model imported from outside the workflow) converts in a
    child process (``convert_in_child``), so that a converter that crashes on
    it marks the variant, naming the signal, instead of ending the job.
    ``calibration_setting`` names the calibration size's key in errors
    (``calibration_key(scheme)`` by default).
    """
    configure_tensorflow(threads)
    representative = None
    if scheme in CALIBRATED_SCHEMES:
        dataset = load_prepared(dataset_path)
        representative = calibration_images(
            dataset.x_train,
            settings["calibration_images"],
            settings["calibration_seed"],
            calibration_setting or calibration_key(scheme),
        )
    with converting(output_path, CONVERTER, {"scheme": scheme, "settings": settings}) as made:
        if isolated:
            flatbuffer = convert_in_child(model_path, scheme, representative, threads)
        else:
            model = load_keras_model(model_path)
            try:
                flatbuffer = convert(model, scheme, representative)
            except Exception as error:  # the converter raises ConverterError, ValueError, ... for what it cannot lower
                raise ToolFailure(converter_reason(error)) from error
        made["flatbuffer"] = loadable(flatbuffer, CONVERTER)
    logger.info("%s: converted with %s", output_path, scheme)
