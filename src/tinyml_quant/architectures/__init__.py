"""The built-in architectures, each a function of input shape, class count and size knobs.

Every model takes raw uint8-valued pixels as float32 and rescales them
itself, so the TFLite variants take the same images the datasets hold and the
int8 variant's input quantization maps pixel values almost one to one.

``ARCHITECTURES`` is the one list of built-in model names. Builders live in
submodules imported on first use, so naming and checking architectures (the
workflow does both while it parses its config) needs no TensorFlow.
"""

import importlib
import inspect

# name -> (submodule, builder function)
ARCHITECTURES = {
    "resnet_v1": ("resnet_v1", "resnet_v1"),
    "resnet_v2": ("resnet_v2", "resnet_v2"),
    "mobilenet_v1": ("mobilenets", "mobilenet_v1"),
    "mobilenet_v2": ("mobilenets", "mobilenet_v2"),
    "custom": ("custom", "custom_cnn"),
    "resnet8": ("resnet8", "resnet8"),
}

# ResNet depth = blocks per stage x convolutions per block x 3 stages + 2 (stem and classifier).
RESNET_CONVOLUTIONS_PER_BLOCK = {"resnet_v1": 2, "resnet_v2": 3}


def resnet_blocks_per_stage(name, depth):
    """Blocks per stage of ResNet ``name`` at ``depth``; ValueError unless depth = 3kn + 2 with n >= 1."""
    per_block = RESNET_CONVOLUTIONS_PER_BLOCK[name]
    step = 3 * per_block
    if not isinstance(depth, int) or depth < step + 2 or (depth - 2) % step:
        examples = ", ".join(str(step * n + 2) for n in range(1, 5))
        raise ValueError(f"{name} depth must be {step}n+2 with n >= 1 ({examples}, ...), got {depth!r}")
    return (depth - 2) // step


def _builder(name):
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown model {name!r}; built-in models: {sorted(ARCHITECTURES)}")
    module_name, function_name = ARCHITECTURES[name]
    return getattr(importlib.import_module(f"{__name__}.{module_name}"), function_name)


def check_knobs(name, knobs):
    """Raise ValueError naming the knob when ``knobs`` cannot build architecture ``name``.

    Checks what the config schema cannot: the ResNet depth formulas. Needs no TensorFlow.
    """
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown model {name!r}; built-in models: {sorted(ARCHITECTURES)}")
    if name in RESNET_CONVOLUTIONS_PER_BLOCK and "depth" in knobs:
        resnet_blocks_per_stage(name, knobs["depth"])


def build_model(name, input_shape, num_classes, **knobs):
    """Build architecture ``name``; ``knobs`` are its size settings from the config."""
    check_knobs(name, knobs)
    builder = _builder(name)
    unknown = set(knobs) - set(inspect.signature(builder).parameters)
    if unknown:
        raise ValueError(f"{name} has no knob {sorted(unknown)}")
    return builder(tuple(input_shape), int(num_classes), **knobs)
