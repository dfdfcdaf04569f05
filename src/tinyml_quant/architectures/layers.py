"""Pieces shared by the architectures.

No layer carries a weight regularizer: weight decay is a training setting
(``training.weight_decay``), applied by the optimizer to every kernel, so it is
the same for every architecture, the ``keras.applications`` MobileNets included.
"""

import keras
from keras import layers

# Batch-norm statistics must settle within the few hundred steps of a CPU-sized
# schedule; Keras' 0.99 (0.999 in MobileNetV2) leaves them near their initial
# values, and the trained model then fails at inference. 0.9 is PyTorch's default.
BATCH_NORM_MOMENTUM = 0.9


def batch_norm(name):
    return layers.BatchNormalization(momentum=BATCH_NORM_MOMENTUM, name=name)


def rescaled_input(input_shape, minimum_size=None):
    """Model input taking raw pixel values (0..255); optionally zero-padded to ``minimum_size``.

    Padding lives inside the model (not in the data) so every TFLite variant
    takes the dataset's own image size.
    """
    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    height, width = input_shape[:2]
    if minimum_size and (height < minimum_size or width < minimum_size):
        pad_height = max(0, minimum_size - height)
        pad_width = max(0, minimum_size - width)
        padding = ((pad_height // 2, pad_height - pad_height // 2), (pad_width // 2, pad_width - pad_width // 2))
        x = layers.ZeroPadding2D(padding, name="pad_to_minimum_size")(x)
    return inputs, x


def classifier_head(x, num_classes):
    x = layers.GlobalAveragePooling2D(name="global_pool")(x)
    # float32 whatever the training precision: class probabilities and their log in the loss need its range.
    return layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions")(x)


def convolution(filters, kernel_size, strides, name):
    return layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        name=f"{name}_conv",
    )


def conv_bn(x, filters, kernel_size=3, strides=1, activation="relu", name=None):
    x = convolution(filters, kernel_size, strides, name)(x)
    x = batch_norm(f"{name}_bn")(x)
    if activation:
        x = layers.Activation(activation, name=f"{name}_{activation}")(x)
    return x


def bn_conv(x, filters, kernel_size=3, strides=1, normalize=True, name=None):
    """Pre-activation unit: batch norm, ReLU, then convolution (He et al. 2016b)."""
    if normalize:
        x = batch_norm(f"{name}_bn")(x)
        x = layers.Activation("relu", name=f"{name}_relu")(x)
    return convolution(filters, kernel_size, strides, name)(x)
