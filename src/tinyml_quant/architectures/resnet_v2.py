"""ResNet v2 for CIFAR (He et al. 2016b): pre-activation bottleneck blocks, depth 9n+2.

Follows the Keras CIFAR-10 ResNet example: three stages of n bottlenecks
(1x1, 3x3, 1x1 convolutions), output widths 4, 8 and 16 times ``base_filters``.
"""

import keras
from keras import layers

from . import resnet_blocks_per_stage
from .layers import batch_norm, bn_conv, classifier_head, conv_bn, rescaled_input


def resnet_v2(input_shape, num_classes, depth=11, base_filters=16):
    blocks_per_stage = resnet_blocks_per_stage("resnet_v2", depth)
    inputs, x = rescaled_input(input_shape)
    x = conv_bn(x, base_filters, name="stem")
    filters_in = base_filters
    for stage in range(3):
        filters_out = filters_in * (4 if stage == 0 else 2)
        for block in range(blocks_per_stage):
            name = f"stage{stage + 1}_block{block + 1}"
            first = block == 0
            strides = 2 if stage > 0 and first else 1
            # The stem already ends in BN+ReLU, so the very first unit skips its own.
            normalize = not (stage == 0 and first)
            y = bn_conv(x, filters_in, kernel_size=1, strides=strides, normalize=normalize, name=f"{name}_a")
            y = bn_conv(y, filters_in, name=f"{name}_b")
            y = bn_conv(y, filters_out, kernel_size=1, name=f"{name}_c")
            if first:
                x = bn_conv(x, filters_out, kernel_size=1, strides=strides, normalize=False, name=f"{name}_shortcut")
            x = layers.Add(name=f"{name}_add")([x, y])
        filters_in = filters_out
    x = batch_norm("final_bn")(x)
    x = layers.Activation("relu", name="final_relu")(x)
    return keras.Model(inputs, classifier_head(x, num_classes), name=f"resnet{depth}_v2")
