"""MobileNet v1 and v2 from keras.applications, untrained (``weights=None``), with a width multiplier.

Both need inputs of at least 32x32, so MNIST's 28x28 digits are zero-padded
to 32x32 inside the model.
"""

import keras

from .layers import classifier_head, rescaled_input, settle_batch_norm

MINIMUM_SIZE = 32


def _mobilenet(application, input_shape, num_classes, alpha, name):
    inputs, x = rescaled_input(input_shape, minimum_size=MINIMUM_SIZE)
    backbone = application(
        input_shape=tuple(x.shape[1:]), alpha=alpha, include_top=False, weights=None, pooling=None
    )
    x = settle_batch_norm(backbone)(x)
    return keras.Model(inputs, classifier_head(x, num_classes), name=name)


def mobilenet_v1(input_shape, num_classes, alpha=0.25):
    return _mobilenet(keras.applications.MobileNet, input_shape, num_classes, alpha, f"mobilenet_v1_{alpha}")


def mobilenet_v2(input_shape, num_classes, alpha=0.35):
    return _mobilenet(keras.applications.MobileNetV2, input_shape, num_classes, alpha, f"mobilenet_v2_{alpha}")
