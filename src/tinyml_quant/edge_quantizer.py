"""The schemes of Google's AI Edge Quantizer (``ai-edge-quantizer``), made from the fp32 ``.tflite`` variant.

Both are static (full-integer) quantizations, int8 activations, int8 input and
output, calibrated on the same seeded training images as the converter's int8:

* ``int8_per_tensor``: int8 weights with one scale per tensor instead of one
  per output channel, the known weak spot of depthwise convolutions;
* ``int4``: 4-bit weights where TensorFlow Lite Micro has 4-bit kernels:
  ``CONV_2D`` per channel, ``FULLY_CONNECTED`` per tensor (its only 4-bit
  form there); ``DEPTHWISE_CONV_2D`` stays 8-bit per channel (neither the
  quantizer nor TFLite Micro has a 4-bit depthwise convolution).

**Weight ranges of the 4-bit weights** (``conversion.int4.weight_algorithm``
for ``int4``; ``int4_octav`` and ``int4_mse`` have their own), each the
quantizer's algorithm for the weights of ``CONV_2D`` and ``FULLY_CONNECTED``,
symmetric, zero point 0:

* ``min_max`` (``min_max_uniform_quantize``): scale = max|w| / 7, nothing clipped;
* ``octav`` (``OCTAV``): the clipping c of Sakr et al. 2022 (eq. 6), the
  fixed point of c = sum(|w| >= c) / (4^-4 / 3 * n + count(|w| >= c)),
  which minimises the expected squared error of clipping plus rounding;
  scale = c / 7;
* ``mse`` (``MSE``): no search, a closed form: scale = 0.37755 * RMS(w)
  (the quantizer's constant for 4 bits), which clips where max|w| > 2.64
  RMS(w) and *widens* the grid beyond min/max's where max|w| is below it.

The 8-bit weights (``DEPTHWISE_CONV_2D``, layers kept at 8 bits) and every
activation keep min/max: the algorithms differ only where the 4-bit rounding
loses accuracy. The quantizer rounds into [-8, 7]: a weight clipped below
-7 scale may take -8.

Calibration keeps each tensor's minimum and maximum over the whole
calibration set (``qsv_utils.min_max_update``). The quantizer's default, a
moving average of each sample's range, shrinks the ranges of tensors whose
extremes come from few images: on this study's models it collapsed activation
ranges until a model's outputs were constant.

**Weights inline.** Once a model's weight buffers of 1 KiB or more add up
to 256 KiB, the quantizer (0.10.0, ``ModelModifier._serialize_model``)
stores them after the flatbuffer, at ``Buffer.offset`` with ``Buffer.data``
empty: the schema's layout for files over 2 GB. LiteRT follows the offsets;
TensorFlow Lite Micro reads only ``Buffer.data``, so it places those
weights in its arena, never fills them and computes with whatever bytes
are there, without an error (tflite-micro issue #3196). ``quantize``
therefore writes every buffer back inline (``graph.inline_buffers``);
LiteRT's outputs are the same bytes.

``higher_precision`` names layers (by their output tensor) that keep the
scheme's better form: 8-bit per-channel weights. The mixed-precision variant
of ``recovery`` uses it for a variant's worst layers.
"""

import logging
import re

import numpy as np

from .datasets import load_prepared
from .graph import inline_buffers
from .schemes import (
    EDGE_QUANTIZER,
    EDGE_QUANTIZER_SCHEMES,
    INT4,
    INT4_ALGORITHM_SCHEMES,
    MIN_MAX,
    MSE,
    OCTAV,
    PER_TENSOR,
    WEIGHT_ALGORITHMS,
)
from .variants import ToolFailure, converting, read_variant

logger = logging.getLogger(__name__)

# The operators whose weights a scheme stores at reduced precision, with (bits, granularity).
REDUCED_WEIGHTS = {
    INT4: {"CONV_2D": (4, "CHANNELWISE"), "FULLY_CONNECTED": (4, "TENSORWISE")},
    PER_TENSOR: dict.fromkeys(("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"), (8, "TENSORWISE")),
}
REDUCED_WEIGHTS.update(dict.fromkeys(INT4_ALGORITHM_SCHEMES, REDUCED_WEIGHTS[INT4]))
# The quantizer's name (ai_edge_quantizer.algorithm_manager.AlgorithmName) of each weight algorithm.
ALGORITHM_KEYS = {MIN_MAX: "min_max_uniform_quantize", OCTAV: "OCTAV", MSE: "MSE"}


def weight_algorithm(scheme, algorithm=None):
    """The algorithm of ``scheme``'s reduced weights: an int4 twin's own, ``algorithm`` (or min/max) for int4.

    ``algorithm`` is refused where the scheme fixes another one: int4's twins
    have theirs, ``int8_per_tensor`` keeps min/max.
    """
    fixed = INT4_ALGORITHM_SCHEMES.get(scheme, None if scheme == INT4 else MIN_MAX)
    if algorithm is not None and algorithm not in WEIGHT_ALGORITHMS:
        raise ValueError(f"unknown weight algorithm {algorithm!r}; known: {list(WEIGHT_ALGORITHMS)}")
    if fixed is not None and algorithm not in (None, fixed):
        raise ValueError(f"scheme {scheme} quantizes its weights with {fixed}, not {algorithm}")
    return fixed or algorithm or MIN_MAX


def scope_regex(tensor_name):
    """The quantizer's pattern for the one operator whose output tensor is ``tensor_name``.

    The quantizer names an operator's scope by its output tensors, each
    followed by ``;``.
    """
    return f"^{re.escape(tensor_name)};"


def quantizer_for(fp32_flatbuffer, scheme, higher_precision=(), algorithm=None):
    """An ``ai_edge_quantizer.quantizer.Quantizer`` with ``scheme``'s static recipe.

    Every supported operator gets int8 activations and int8 per-channel
    weights (min/max); the operators of ``REDUCED_WEIGHTS[scheme]`` then get
    the scheme's weights, their ranges by ``weight_algorithm(scheme,
    algorithm)``, except the layers named in ``higher_precision`` (output
    tensor names), which keep int8 per-channel min/max weights.
    """
    from ai_edge_quantizer import qtyping, quantizer

    if scheme not in EDGE_QUANTIZER_SCHEMES:
        known = list(EDGE_QUANTIZER_SCHEMES)
        raise ValueError(f"unknown scheme {scheme!r} of the AI Edge Quantizer; its schemes: {known}")
    reduced_algorithm = ALGORITHM_KEYS[weight_algorithm(scheme, algorithm)]
    operations, granularity = qtyping.TFLOperationName, qtyping.QuantGranularity
    made = quantizer.Quantizer(bytearray(fp32_flatbuffer))
    made.add_static_config(".*", operations.ALL_SUPPORTED, activation_num_bits=8, weight_num_bits=8)
    for operation, (bits, kind) in REDUCED_WEIGHTS[scheme].items():
        made.add_static_config(
            ".*",
            operations(operation),
            8,
            weight_num_bits=bits,
            weight_granularity=granularity(kind),
            algorithm_key=reduced_algorithm,
        )
    for tensor_name, operation in higher_precision:
        made.add_static_config(
            scope_regex(tensor_name), operations(operation), 8, 8, weight_granularity=granularity.CHANNELWISE
        )
    return made


def calibrate(made, fp32_flatbuffer, representative_images, threads=1):
    """Each tensor's range over all of ``representative_images`` (minimum and maximum, not a moving average)."""
    from ai_edge_quantizer import calibrator, recipe_manager
    from ai_edge_quantizer.utils import qsv_utils

    from .runtime import load_interpreter

    (name,) = load_interpreter(fp32_flatbuffer).get_signature_runner().get_input_details()
    recipe = recipe_manager.RecipeManager()
    recipe.load_quantization_recipe(made.get_quantization_recipe())
    ranges = calibrator.Calibrator(
        bytes(fp32_flatbuffer), num_threads=threads, qsv_update_func=qsv_utils.min_max_update
    )
    samples = [{name: image[None].astype(np.float32)} for image in representative_images]
    ranges.calibrate({"serving_default": samples}, recipe)
    return ranges.get_model_qsvs()


def quantize(fp32_flatbuffer, scheme, representative_images, higher_precision=(), threads=1, algorithm=None):
    """The fp32 flatbuffer quantized with ``scheme`` (module docstring), ``algorithm`` for int4's weights; its bytes."""
    if representative_images is None or len(representative_images) == 0:
        raise ValueError(f"scheme {scheme} needs representative images for calibration")
    made = quantizer_for(fp32_flatbuffer, scheme, higher_precision, algorithm)
    ranges = calibrate(made, fp32_flatbuffer, representative_images, threads)
    return inline_buffers(bytes(made.quantize(ranges, enable_progress_report=False).quantized_model))


def quantized_variant(fp32_flatbuffer, scheme, representative_images, higher_precision=(), threads=1, algorithm=None):
    """``quantize``, with what the quantizer cannot do (or a model LiteRT cannot prepare) as ``ToolFailure``."""
    from .conversion import loadable

    weight_algorithm(scheme, algorithm)  # a wrong setting is the caller's error, not the tool's
    try:
        flatbuffer = quantize(fp32_flatbuffer, scheme, representative_images, higher_precision, threads, algorithm)
    except Exception as error:  # the quantizer raises ValueError, RuntimeError, ... for what it does not support
        raise ToolFailure(f"{type(error).__name__}: {error}") from error
    return loadable(flatbuffer, EDGE_QUANTIZER)


def run_quantization(fp32_path, dataset_path, scheme, settings, threads, output_path, higher_precision=()):
    """Snakemake entry point: quantize the fp32 variant with ``scheme``; write the variant and its record.

    ``settings``: the scheme's calibration and, for the int4 schemes, ``weight_algorithm``
    (``config.conversion_settings``).
    """
    from .conversion import calibration_images, calibration_key

    dataset = load_prepared(dataset_path)
    representative = calibration_images(
        dataset.x_train, settings["calibration_images"], settings["calibration_seed"], calibration_key(scheme)
    )
    details = {"scheme": scheme, "settings": settings, "higher_precision": [list(layer) for layer in higher_precision]}
    with converting(output_path, EDGE_QUANTIZER, details) as made:
        made["flatbuffer"] = quantized_variant(
            read_variant(fp32_path), scheme, representative, higher_precision, threads, settings.get("weight_algorithm")
        )
    logger.info(
        "%s: quantized with %s (weights: %s)",
        output_path,
        scheme,
        weight_algorithm(scheme, settings.get("weight_algorithm")),
    )
