"""The quantization schemes of the study: the one list of their names, and what each one is.

Every table, figure, config check and rule takes its schemes from here, in
this order. Needs neither TensorFlow nor Snakemake.
"""

from dataclasses import dataclass

CONVERTER = "TFLite converter"
EDGE_QUANTIZER = "AI Edge Quantizer"
MICRO_COMPRESSION = "TFLite Micro compression"


@dataclass(frozen=True)
class Scheme:
    name: str
    tool: str  # what makes the variant
    weights: str  # how its weights are stored
    activations: str  # what its layers compute in
    calibrated: bool  # whether it needs representative training images
    qat_of: str = ""  # a QAT scheme: the post-training scheme whose grid it fine-tunes on and whose tool it uses
    mixed_of: str = ""  # a mixed-precision variant: the scheme whose worst layers it raises one step


SCHEME_LIST = (
    Scheme("fp32", CONVERTER, "float32", "float32", False),
    Scheme("dynamic_range", CONVERTER, "int8 per channel (tensors of 1,024 elements and more)", "float32", False),
    Scheme("float16", CONVERTER, "float16", "float32", False),
    Scheme("int8", CONVERTER, "int8 per channel", "int8", True),
    Scheme("int16x8", CONVERTER, "int8 per channel", "int16", True),
    Scheme("int8_per_tensor", EDGE_QUANTIZER, "int8, one scale per tensor", "int8", True),
    Scheme(
        "int4",
        EDGE_QUANTIZER,
        "int4 CONV_2D (per channel) and FULLY_CONNECTED (per tensor), int8 DEPTHWISE_CONV_2D",
        "int8",
        True,
    ),
    # int4 made again with each other weight algorithm of the AI Edge Quantizer, on int4's calibration:
    # only the ranges of the 4-bit weights differ, so each is compared with int4 image by image.
    Scheme("int4_octav", EDGE_QUANTIZER, "int4's, each 4-bit range clipped by OCTAV", "int8", True),
    Scheme("int4_mse", EDGE_QUANTIZER, "int4's, each 4-bit scale from the weights' RMS (MSE)", "int8", True),
    # Not calibrated itself: it bins the int8 variant's weights.
    Scheme(
        "int8_lut",
        MICRO_COMPRESSION,
        "int8's, binned to conversion.int8_lut.values_per_channel values a channel, as table indices",
        "int8",
        False,
    ),
    # Quantization-aware training (tinyml_quant.qat): the trained model fine-tuned with its post-training
    # scheme's weights simulated, then made by that scheme's tool, calibrated as that scheme is.
    Scheme("int8_qat", CONVERTER, "int8's, fine-tuned on their int8 grid", "int8", True, "int8"),
    Scheme("int4_qat", EDGE_QUANTIZER, "int4's (min/max ranges), fine-tuned on their 4-bit grid", "int8", True, "int4"),
    Scheme(
        "int8_lut_qat",
        MICRO_COMPRESSION,
        "int8_lut's, fine-tuned with each channel on its table of values",
        "int8",
        False,
        "int8_lut",
    ),
)
SCHEMES = tuple(scheme.name for scheme in SCHEME_LIST)
BY_NAME = {scheme.name: scheme for scheme in SCHEME_LIST}
(
    REFERENCE_SCHEME,  # the unquantized model, which every variant is compared with
    DYNAMIC_RANGE,
    FLOAT16,
    FULL_INTEGER,
    INTEGER_16X8,
    PER_TENSOR,
    INT4,
    INT4_OCTAV,
    INT4_MSE,
    LUT,
    INT8_QAT,
    INT4_QAT,
    LUT_QAT,
) = SCHEMES
# Each QAT scheme and the post-training scheme it recovers.
QAT_SCHEMES = {scheme.name: scheme.qat_of for scheme in SCHEME_LIST if scheme.qat_of}
# The schemes each tool makes from the trained model or the fp32 file (the QAT schemes have their own stage).
CONVERTER_SCHEMES = tuple(s.name for s in SCHEME_LIST if s.tool == CONVERTER and not s.qat_of)
EDGE_QUANTIZER_SCHEMES = tuple(s.name for s in SCHEME_LIST if s.tool == EDGE_QUANTIZER and not s.qat_of)
# Schemes calibrated on training images with their own settings (conversion.<scheme> in the config).
CALIBRATED_SCHEMES = tuple(scheme.name for scheme in SCHEME_LIST if scheme.calibrated)
# Schemes whose layers compute in integers, so that the per-layer error stage compares each layer with fp32.
INTEGER_SCHEMES = tuple(scheme.name for scheme in SCHEME_LIST if scheme.activations.startswith("int"))

# The mixed-precision variants of the recovery stage (tinyml_quant.recovery): a scheme's variant made again
# with its worst layers one step up in precision, by that scheme's tool. Not schemes of the grid (the
# deployment plan asks for them where a scheme loses accuracy), but variants every answer may choose.
MIXED_SUFFIX = "_mixed"
MIXED_LIST = (
    Scheme(
        f"{FULL_INTEGER}{MIXED_SUFFIX}",
        CONVERTER,
        "int8 per channel, the worst layers kept in float",
        "float32 in the layers kept in float, int8 elsewhere",
        True,
        mixed_of=FULL_INTEGER,
    ),
    Scheme(
        f"{PER_TENSOR}{MIXED_SUFFIX}",
        EDGE_QUANTIZER,
        "int8_per_tensor's, the worst layers per channel",
        "int8",
        True,
        mixed_of=PER_TENSOR,
    ),
    Scheme(
        f"{INT4}{MIXED_SUFFIX}", EDGE_QUANTIZER, "int4's, the worst 4-bit layers at 8 bits", "int8", True, mixed_of=INT4
    ),
    Scheme(
        f"{LUT}{MIXED_SUFFIX}",
        MICRO_COMPRESSION,
        "int8_lut's, the worst layers neither binned nor compressed",
        "int8",
        False,
        mixed_of=LUT,
    ),
)
MIXED_SCHEMES = {scheme.mixed_of: scheme.name for scheme in MIXED_LIST}
# Every variant's scheme, the grid's and the mixed ones, in the order the tables show them.
VARIANT_SCHEMES = (*SCHEMES, *MIXED_SCHEMES.values())
_VARIANT_BY_NAME = {scheme.name: scheme for scheme in (*SCHEME_LIST, *MIXED_LIST)}


def describe(name):
    """The ``Scheme`` of a variant's scheme name: a grid scheme's or a mixed-precision variant's."""
    try:
        return _VARIANT_BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown scheme {name!r}; known: {list(VARIANT_SCHEMES)}") from None


# The AI Edge Quantizer's algorithms for the ranges of the 4-bit weights (docs/schemes.md), as the
# config names them (conversion.int4.weight_algorithm).
WEIGHT_ALGORITHMS = (MIN_MAX, OCTAV, MSE) = ("min_max", "octav", "mse")
# The int4 schemes whose weight algorithm is their own; they share int4's settings (conversion.int4).
INT4_ALGORITHM_SCHEMES = {INT4_OCTAV: OCTAV, INT4_MSE: MSE}


def base_scheme(scheme):
    """The post-training scheme of ``scheme``: its own name, or the scheme a QAT scheme fine-tunes for."""
    return QAT_SCHEMES.get(scheme, scheme)


def settings_scheme(scheme):
    """The scheme whose settings (``conversion.<scheme>``) ``scheme`` is made with.

    int4's for its algorithm twins, a QAT scheme's post-training scheme's.
    """
    scheme = base_scheme(scheme)
    return INT4 if scheme in INT4_ALGORITHM_SCHEMES else scheme


def calibration_scheme(scheme):
    """The scheme whose calibration (``conversion.<scheme>.calibration_*``) makes ``scheme``.

    Its settings scheme's, except that the LUT schemes bin an int8 variant, calibrated as int8's.
    """
    return FULL_INTEGER if base_scheme(scheme) == LUT else settings_scheme(scheme)
