"""A compact CNN for microcontrollers.

Design choices, each for a small MCU running TFLite Micro:

* a plain 3x3 stem, then depthwise-separable blocks: most of the compute of a
  3x3 convolution for a ninth of its weights;
* downsampling by stride-2 depthwise convolutions, early, so the largest
  activation tensors (which set the peak RAM) exist only in the first layers;
* ReLU and batch norm only: both fold into the convolutions at conversion,
  and every operator used has an int8 kernel in TFLite Micro;
* global average pooling instead of a flatten + large dense layer.

With ``base_filters=16`` it has about 11 k parameters (docs/models.md).
"""

import keras
from keras import layers

from .layers import batch_norm, classifier_head, conv_bn, rescaled_input


def _separable(x, filters, strides, name):
    x = layers.DepthwiseConv2D(3, strides=strides, padding="same", use_bias=False, name=f"{name}_dw")(x)
    x = batch_norm(f"{name}_dw_bn")(x)
    x = layers.Activation("relu", name=f"{name}_dw_relu")(x)
    return conv_bn(x, filters, kernel_size=1, name=f"{name}_pw")


def custom_cnn(input_shape, num_classes, base_filters=16):
    inputs, x = rescaled_input(input_shape)
    x = conv_bn(x, base_filters, strides=1, name="stem")
    plan = [(2 * base_filters, 2), (2 * base_filters, 1), (4 * base_filters, 2), (4 * base_filters, 1)]
    for index, (filters, strides) in enumerate(plan):
        x = _separable(x, filters, strides, name=f"block{index + 1}")
    return keras.Model(inputs, classifier_head(x, num_classes), name=f"custom_cnn_{base_filters}")
