"""ResNet v1 for CIFAR (He et al. 2016, section 4.2): depth 6n+2, three stages of n basic blocks."""

import keras
from keras import layers

from . import resnet_blocks_per_stage
from .layers import classifier_head, conv_bn, rescaled_input


def resnet_v1(input_shape, num_classes, depth=20, base_filters=16):
    blocks_per_stage = resnet_blocks_per_stage("resnet_v1", depth)
    inputs, x = rescaled_input(input_shape)
    x = conv_bn(x, base_filters, name="stem")
    filters = base_filters
    for stage in range(3):
        for block in range(blocks_per_stage):
            name = f"stage{stage + 1}_block{block + 1}"
            strides = 2 if stage > 0 and block == 0 else 1
            y = conv_bn(x, filters, strides=strides, name=f"{name}_a")
            y = conv_bn(y, filters, activation=None, name=f"{name}_b")
            if strides != 1:
                # Projection shortcut where the shape changes (option B).
                x = conv_bn(x, filters, kernel_size=1, strides=strides, activation=None, name=f"{name}_shortcut")
            x = layers.Add(name=f"{name}_add")([x, y])
            x = layers.Activation("relu", name=f"{name}_out")(x)
        filters *= 2
    return keras.Model(inputs, classifier_head(x, num_classes), name=f"resnet{depth}_v1")
