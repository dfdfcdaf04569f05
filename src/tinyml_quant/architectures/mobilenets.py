"""MobileNet v1 and v2 from ``keras.applications``, untrained (``weights=None``), with a width multiplier.

``stem_stride`` is the stride of the first convolution. 2 is the unmodified
``keras.applications`` network, built for 224x224 images: five stride-2 steps
bring a 32x32 image down to a 1x1 feature map. 1 is the usual small-input
adaptation (as in CIFAR versions of these networks): the same layers and
weights, the stem convolution at stride 1, so a 32x32 image ends in a 2x2 map
and every layer's feature map is twice as wide and high, at 4x the
multiply-accumulates and activation memory of the unmodified form.

Both need inputs of at least 32x32, so smaller images (MNIST's 28x28 digits)
are zero-padded to 32x32 inside the model.
"""

import keras

from .layers import BATCH_NORM_MOMENTUM, classifier_head, rescaled_input

MINIMUM_SIZE = 32
# The name keras.applications gives each network's first convolution.
STEM_LAYERS = {"mobilenet_v1": "conv1", "mobilenet_v2": "Conv1"}


def _backbone(application, name, input_shape, alpha, stem_stride):
    """``keras.applications`` network without its top, rebuilt from its config with the study's changes."""
    if stem_stride not in (1, 2):
        raise ValueError(f"{name} stem_stride must be 1 or 2, got {stem_stride!r}")
    original = application(input_shape=input_shape, alpha=alpha, include_top=False, weights=None, pooling=None)
    config = original.get_config()
    for layer in config["layers"]:
        if layer["class_name"] == "BatchNormalization":
            layer["config"]["momentum"] = BATCH_NORM_MOMENTUM
        if layer["config"]["name"] == STEM_LAYERS[name]:
            layer["config"]["strides"] = (stem_stride, stem_stride)
    return keras.Model.from_config(config)


def _mobilenet(application, name, input_shape, num_classes, alpha, stem_stride):
    inputs, x = rescaled_input(input_shape, minimum_size=MINIMUM_SIZE)
    x = _backbone(application, name, tuple(x.shape[1:]), alpha, stem_stride)(x)
    model_name = f"{name}_{alpha}" + ("" if stem_stride == 2 else f"_stem{stem_stride}")
    return keras.Model(inputs, classifier_head(x, num_classes), name=model_name)


def mobilenet_v1(input_shape, num_classes, alpha=0.25, stem_stride=2):
    return _mobilenet(keras.applications.MobileNet, "mobilenet_v1", input_shape, num_classes, alpha, stem_stride)


def mobilenet_v2(input_shape, num_classes, alpha=0.35, stem_stride=2):
    return _mobilenet(keras.applications.MobileNetV2, "mobilenet_v2", input_shape, num_classes, alpha, stem_stride)
