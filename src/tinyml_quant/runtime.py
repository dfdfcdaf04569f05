"""The runtimes every stage shares: TensorFlow's set-up, Keras model files, LiteRT interpreters, and the
arithmetic between images and a TFLite model's quantized input and output tensors.

TensorFlow, Keras and LiteRT are imported inside the functions that need them
(see the package docstring).
"""

import logging

import numpy as np

logger = logging.getLogger(__name__)


def configure_tensorflow(threads, seed=None, op_determinism=True):
    """Pin TensorFlow to ``threads`` CPU threads and, with a seed, make it deterministic.

    With a seed, ops run one at a time (one inter-op thread), each on ``threads``
    threads: op determinism alone is not enough on CPU, where TensorFlow's
    scheduler runs independent ops side by side in an order that changes the
    trained weights (docs/training.md).
    """
    import keras
    import tensorflow as tf

    inter_op_threads = threads if seed is None else 1
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(inter_op_threads)
    except RuntimeError:
        # TensorFlow fixes its thread pools at first use: a process that already
        # ran TensorFlow (a notebook, a test session) keeps the pools it has.
        logger.warning(
            "TensorFlow is already initialized with %d intra-op threads; cannot change it to %d",
            tf.config.threading.get_intra_op_parallelism_threads(),
            threads,
        )
    if seed is not None:
        keras.utils.set_random_seed(seed)
        # Keras refuses XLA under op determinism; an XLA training asks for its ops without it.
        if op_determinism:
            tf.config.experimental.enable_op_determinism()


def load_keras_model(model_path):
    """A saved Keras model; a file Keras cannot load is a ValueError naming it."""
    import keras

    try:
        return keras.models.load_model(model_path, compile=False)
    except Exception as error:  # Keras raises many types for a damaged file
        raise ValueError(f"{model_path}: cannot load the trained model ({type(error).__name__}: {error})") from error


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


def image_shape(detail):
    """An input tensor's image shape (after the batch axis) as plain ints, as messages print them."""
    return tuple(int(size) for size in detail["shape"][1:])


def quantize_input(images, detail):
    """Float pixels to the input tensor's type, with the tensor's own scale and zero point.

    As TFLite's reference QUANTIZE kernel, which TFLite Micro runs: the
    quotient in float32, rounded half away from zero (``std::round``, where
    ``np.round`` rounds half to even), shifted, clamped to the type's range.
    """
    dtype = detail["dtype"]
    if np.issubdtype(dtype, np.floating):
        return images.astype(dtype)
    scale, zero_point = detail["quantization"]
    info = np.iinfo(dtype)
    quotients = images.astype(np.float32) / scale
    truncated = np.trunc(quotients)
    # A quotient's distance from its truncation is exact in float32; adding 0.5 first would
    # round the float just below 0.5 up to 1.
    rounded = np.where(np.abs(quotients - truncated) >= 0.5, truncated + np.sign(quotients), truncated)
    return np.clip(rounded + zero_point, info.min, info.max).astype(dtype)


def input_converter(detail, images_dtype):
    """``quantize_input`` for batches of one dtype, fast for uint8 pixels and an integer input tensor.

    ``quantize_input`` divides, rounds, shifts and clips every pixel in
    float32: for a small int8 model that took longer than the model's own
    ``invoke``. uint8 pixels have 256 values, so a table of ``quantize_input``
    of each gives the same numbers by lookup; and where the table is the pixel
    value plus a constant (the study's int8 models: scale 1, zero point -128),
    one wrapping uint8 addition gives them, reinterpreted as the tensor's type.
    """
    target = np.dtype(detail["dtype"])
    if np.dtype(images_dtype) != np.uint8 or np.issubdtype(target, np.floating):
        return lambda batch: quantize_input(batch, detail)
    table = quantize_input(np.arange(256, dtype=np.uint8), detail)
    offsets = np.unique(table.astype(np.int64) - np.arange(256))
    if target.itemsize == 1 and len(offsets) == 1:
        shift = np.uint8(int(offsets[0]) % 256)
        return lambda batch: (batch + shift).view(target)
    return lambda batch: np.take(table, batch)


def dequantize_output(values, detail):
    """An output tensor's values as real numbers: float outputs as they are, integer ones by their scale."""
    if np.issubdtype(values.dtype, np.floating):
        return values
    scale, zero_point = detail["quantization"]
    return (values.astype(np.float32) - zero_point) * scale
