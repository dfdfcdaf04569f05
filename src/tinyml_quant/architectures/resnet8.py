"""MLPerf Tiny's image-classification model: the ResNet-8 of its v1.1 reference (``resnet_v1_eembc``).

A 3x3 stem, then three residual stacks of two 3x3 convolutions each, with 16,
32 and 64 filters at strides 1, 2 and 2; where the shape changes, the shortcut
is a 1x1 convolution of stride 2 (with a bias, without batch norm); average
pooling over the last 8x8 map and one dense layer. On CIFAR-10 that is 77,706 weights and
biases and 12.5 M multiply-accumulates once batch norm is folded: the counts of
MLPerf Tiny's own ``pretrainedResnet_quant.tflite`` (checked in the tests).
Two changes, neither in the arithmetic: the input is raw pixels, rescaled
inside the model like every built-in model here, and the 8x8 average pooling is
a global one (TFLite's ``MEAN``; the reference's ``AVERAGE_POOL_2D`` and
``RESHAPE`` need a fixed batch size, which LiteRT's batched evaluation resizes).
"""

import keras
from keras import layers

from .layers import batch_norm, rescaled_input

STACK_FILTERS = (16, 32, 64)


def _convolution(filters, kernel_size, strides, name):
    return layers.Conv2D(
        filters, kernel_size, strides=strides, padding="same", kernel_initializer="he_normal", name=name
    )


def resnet8(input_shape, num_classes):
    inputs, x = rescaled_input(input_shape)
    x = _convolution(STACK_FILTERS[0], 3, 1, "stem_conv")(x)
    x = layers.Activation("relu", name="stem_relu")(batch_norm("stem_bn")(x))
    for stack, filters in enumerate(STACK_FILTERS):
        strides = 1 if stack == 0 else 2
        name = f"stack{stack + 1}"
        y = _convolution(filters, 3, strides, f"{name}_a_conv")(x)
        y = layers.Activation("relu", name=f"{name}_a_relu")(batch_norm(f"{name}_a_bn")(y))
        y = batch_norm(f"{name}_b_bn")(_convolution(filters, 3, 1, f"{name}_b_conv")(y))
        if strides != 1:
            x = _convolution(filters, 1, strides, f"{name}_shortcut")(x)
        x = layers.Activation("relu", name=f"{name}_out")(layers.Add(name=f"{name}_add")([x, y]))
    x = layers.GlobalAveragePooling2D(name="average_pool")(x)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name="resnet8_mlperf_tiny")
