"""The five architectures of the study, each a function of input shape, class count and size knobs.

Every model takes raw uint8-valued pixels as float32 and rescales them
itself, so the TFLite variants take the same images the datasets hold and the
int8 variant's input quantization maps pixel values almost one to one.
"""

import importlib

# name -> (module, builder); imported lazily so listing models needs no TensorFlow.
BUILDERS = {
    "resnet_v1": ("resnet_v1", "resnet_v1"),
    "resnet_v2": ("resnet_v2", "resnet_v2"),
    "mobilenet_v1": ("mobilenets", "mobilenet_v1"),
    "mobilenet_v2": ("mobilenets", "mobilenet_v2"),
    "custom": ("custom", "custom_cnn"),
}


def build_model(name, input_shape, num_classes, **knobs):
    """Build architecture ``name``; ``knobs`` are its size settings from the config."""
    if name not in BUILDERS:
        raise ValueError(f"unknown model {name!r}; known models: {sorted(BUILDERS)}")
    module_name, function_name = BUILDERS[name]
    module = importlib.import_module(f"{__name__}.{module_name}")
    return getattr(module, function_name)(tuple(input_shape), int(num_classes), **knobs)
