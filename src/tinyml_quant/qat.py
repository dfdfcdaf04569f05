"""Quantization-aware training (QAT) in Keras 3: fine-tune a trained model on the grid its file will have.

Each QAT scheme (``schemes.QAT_SCHEMES``) fine-tunes the trained fp32 model
with the weights its post-training scheme deploys simulated in the forward
pass, then hands the fine-tuned model to that scheme's own tool. Three steps:

1. ``fold_batch_norm``: every batch normalization that directly follows a
   convolution or dense layer (its only consumer, linear activation) is folded
   into that layer's kernel and bias, as the TFLite converter folds it, so the
   grid trained on is the grid of the folded weights the file stores. Batch
   normalizations that cannot be folded (pre-activation ResNet v2's, which
   follow an addition) keep their statistics frozen while fine-tuning.
2. ``wrap``: each Conv2D, DepthwiseConv2D and Dense layer computes with its
   kernel fake-quantized (``keras.quantizers.fake_quant_with_min_max_vars``:
   symmetric, narrow range, range from the kernel's own maximum magnitude, as
   the tools' min/max ranges are; straight-through gradients) on the grid of
   ``weight_grid``: the bits and per-channel or per-tensor scales each tool
   gives that operator. For the LUT scheme each channel's weights are instead
   snapped to the nearest of its ``values_per_channel`` values (straight-through):
   a table fixed before fine-tuning, the LUT scheme's own k-means binning of the
   trained weights' int8 codes (``lut.kmeans_bins``), so fine-tuning starts from
   the post-training LUT variant's weights and learns the table they will be
   stored with. A table refitted during fine-tuning would move the grid
   under the weights trained on it.
   Activations are not simulated: each QAT variant is calibrated after
   fine-tuning exactly as its post-training scheme is.
3. ``project``: a plain Keras model (the folded architecture, no custom layer)
   whose kernels are the fake-quantized kernels requantized as the tool
   requantizes them (its min/max scale from the largest stored magnitude: a LUT
   channel whose largest table value no weight uses gets a finer scale), so the
   model whose accuracy the record gives is the file's, weight for weight
   (tests/test_qat.py reads the files back).

The epoch kept is the one with the best accuracy on the training split's
validation hold-out, the starting point (epoch 0) included; the test set
judges only the result.

Wrapped: Conv2D, DepthwiseConv2D, Dense. Any other layer with weights (LSTM,
attention, SeparableConv2D, a custom layer) makes the model unsupported
(``QATUnsupported``, the layer named); weightless layers pass through.
"""

import logging
import math
import time
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from .edge_quantizer import REDUCED_WEIGHTS
from .lut import INT8_RANGE, kmeans_bins
from .schemes import FULL_INTEGER, INT4, LUT, QAT_SCHEMES

logger = logging.getLogger(__name__)

# The Keras layers QAT wraps and the TFLite operator each becomes.
WRAPPED = {"Conv2D": "CONV_2D", "DepthwiseConv2D": "DEPTHWISE_CONV_2D", "Dense": "FULLY_CONNECTED"}
# Integer weights of every tool here are symmetric with narrow range: 8 bits -127..127, 4 bits -7..7.
DEFAULT_WEIGHTS = (8, "CHANNELWISE")
# The converter's int8 weights of the three operators are per channel (TensorFlow 2.21's converter).
CONVERTER_WEIGHTS = dict.fromkeys(WRAPPED.values(), DEFAULT_WEIGHTS)


class QATUnsupported(ValueError):
    """A model QAT cannot wrap; the message names the layer and why."""


class QATDiverged(FloatingPointError):
    """Fine-tuning's loss stopped being finite; the message names the setting to lower."""


@dataclass(frozen=True)
class Grid:
    """The grid of one layer's deployed weights."""

    bits: int
    per_channel: bool
    values_per_channel: int = 0  # LUT: each channel's weights are among this many values (0: no table)

    @property
    def levels(self):
        return 2 ** (self.bits - 1) - 1  # narrow range: -levels..levels


def weight_grid(base_scheme, operator, values_per_channel=16):
    """The grid ``base_scheme``'s tool gives the weights of ``operator`` (a TFLite operator name)."""
    if base_scheme == INT4:
        bits, kind = REDUCED_WEIGHTS[INT4].get(operator, DEFAULT_WEIGHTS)
        return Grid(bits, kind == "CHANNELWISE")
    if base_scheme in (FULL_INTEGER, LUT):
        bits, kind = CONVERTER_WEIGHTS[operator]
        return Grid(bits, kind == "CHANNELWISE", values_per_channel if base_scheme == LUT else 0)
    raise ValueError(f"no QAT for scheme {base_scheme!r}; QAT schemes: {sorted(QAT_SCHEMES)}")


def _channels_last(kernel, kind):
    """``kernel`` as (elements, channels): the output channels TFLite quantizes along are the last axis.

    DepthwiseConv2D's (h, w, in, multiplier) kernel becomes TFLite's
    (1, h, w, in x multiplier): channel ``c x multiplier + m``, the order a reshape keeps.
    """
    return ops.reshape(
        kernel, (-1, kernel.shape[-2] * kernel.shape[-1] if kind == "DepthwiseConv2D" else kernel.shape[-1])
    )


def _bound(flat, grid):
    magnitude = ops.abs(flat)
    return ops.max(magnitude, axis=0) if grid.per_channel else ops.max(magnitude)


def simulate(kernel, grid, kind, table=None):
    """``kernel`` on ``grid`` (straight-through gradients); ``table``: a LUT grid's values, (values, channels)."""
    flat = _channels_last(kernel, kind)
    if grid.values_per_channel:
        # Each weight goes to the nearest value of its channel's fixed table.
        nearest = ops.argmin(ops.abs(flat[:, None, :] - table[None, :, :]), axis=1)
        snapped = ops.take_along_axis(table, nearest, axis=0)
        return ops.reshape(flat + ops.stop_gradient(snapped - flat), kernel.shape)
    bound = ops.stop_gradient(ops.maximum(_bound(flat, grid), 1e-12))
    quantized = keras.quantizers.fake_quant_with_min_max_vars(
        flat, -bound, bound, num_bits=grid.bits, narrow_range=True, axis=-1 if grid.per_channel else None
    )
    return ops.reshape(quantized, kernel.shape)


def _flat(kernel, kind):
    kernel = np.asarray(kernel, np.float64)
    return kernel.reshape(-1, kernel.shape[-2] * kernel.shape[-1] if kind == "DepthwiseConv2D" else kernel.shape[-1])


def lut_table(kernel, kind, grid):
    """Each channel's ``grid.values_per_channel`` values, in the kernel's units, as (values, channels) float32.

    The LUT scheme's own binning (``lut.kmeans_bins``) of the channel's int8
    codes at the converter's min/max scale: the values the post-training LUT
    variant stores. Its largest value is usually inside the channel's range;
    ``requantize`` gives the file's finer scale.
    """
    flat = _flat(kernel, kind)
    step = np.maximum(np.abs(flat).max(axis=0), 1e-12) / grid.levels
    codes = np.clip(np.round(flat / step), *INT8_RANGE).astype(np.int8)
    table = np.zeros((grid.values_per_channel, flat.shape[1]), np.float32)
    for channel in range(flat.shape[1]):
        centres = np.unique(kmeans_bins(codes[:, channel], grid.values_per_channel)).astype(np.float64)
        # Repeats pad a short table; a repeated value is never a different choice.
        table[:, channel] = np.resize(centres, grid.values_per_channel) * step[channel]
    return table


def requantize(kernel, grid, kind):
    """``kernel`` as the tool stores it: rounded on ``grid`` at the min/max scale of its own largest magnitude."""
    flat = _flat(kernel, kind)
    bound = np.abs(flat).max(axis=0) if grid.per_channel else np.abs(flat).max()
    step = np.maximum(bound, 1e-12) / grid.levels
    return (np.round(flat / step) * step).reshape(np.shape(kernel)).astype(np.float32)


class _FakeQuantKernel:
    """Mixin: ``kernel`` reads as its fake-quantized self; the float kernel stays the trained variable."""

    grid = None
    table = None

    @property
    def kernel(self):
        raw = self._kernel
        if self.grid is None:
            return raw
        return simulate(raw, self.grid, self._qat_kind, self.table)

    @kernel.setter
    def kernel(self, value):  # DepthwiseConv2D's build assigns ``kernel``; Conv2D's and Dense's ``_kernel``
        self._kernel = value

    def build(self, input_shape):
        super().build(input_shape)
        if self.grid is not None and self.grid.values_per_channel:
            shape = self._kernel.shape
            channels = shape[-2] * shape[-1] if self._qat_kind == "DepthwiseConv2D" else shape[-1]
            self.table = self.add_weight(
                shape=(self.grid.values_per_channel, channels), initializer="zeros", trainable=False, name="lut_table"
            )

    def fit_table(self):
        """The LUT table of the kernel as it is now; fine-tuning keeps it."""
        if self.table is not None:
            self.table.assign(lut_table(ops.convert_to_numpy(self._kernel), self._qat_kind, self.grid))

    def deployed_kernel(self):
        """The kernel the tool's file holds: the simulated kernel, requantized as the tool does."""
        return requantize(ops.convert_to_numpy(self.kernel), self.grid, self._qat_kind)


class QATConv2D(_FakeQuantKernel, keras.layers.Conv2D):
    _qat_kind = "Conv2D"


class QATDepthwiseConv2D(_FakeQuantKernel, keras.layers.DepthwiseConv2D):
    _qat_kind = "DepthwiseConv2D"


class QATDense(_FakeQuantKernel, keras.layers.Dense):
    _qat_kind = "Dense"


QAT_LAYERS = {layer._qat_kind: layer for layer in (QATConv2D, QATDepthwiseConv2D, QATDense)}


def leaves(model):
    """Every layer of ``model``, those of models nested in it (the keras.applications MobileNets) included."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from leaves(layer)
        else:
            yield layer


def _by_name(model):
    return {layer.name: layer for layer in leaves(model)}


def check_supported(model):
    """Raise ``QATUnsupported`` naming the first layer with weights QAT does not wrap."""
    for layer in leaves(model):
        kind = type(layer).__name__
        if kind in WRAPPED or kind in ("BatchNormalization", "InputLayer") or not layer.weights:
            continue
        raise QATUnsupported(
            f"layer {layer.name!r} ({kind}) has weights QAT does not simulate; it wraps {sorted(WRAPPED)} "
            "and folds or freezes BatchNormalization"
        )


def _producer(layer):
    """The one layer feeding ``layer`` (None when it has several inputs or calls)."""
    if len(layer._inbound_nodes) != 1:
        return None
    parents = layer._inbound_nodes[0].parent_nodes
    return parents[0].operation if len(parents) == 1 else None


def folding_pairs(model):
    """``{layer name: batch norm name}`` of every batch normalization the converter would fold."""
    pairs = {}
    for layer in leaves(model):
        if type(layer).__name__ != "BatchNormalization":
            continue
        producer = _producer(layer)
        if (
            producer is not None
            and type(producer).__name__ in WRAPPED
            and len(producer._outbound_nodes) == 1
            and len(producer._inbound_nodes) == 1
            and producer.get_config().get("activation") in ("linear", None)
            and layer.axis in ([-1], [len(producer.output.shape) - 1], -1)
        ):
            pairs[producer.name] = layer.name
    return pairs


def folded_weights(layer, batch_norm):
    """``(kernel, bias)`` of ``layer`` with ``batch_norm`` folded in: y = g (x - mean) + beta, g = gamma / sd."""
    kernel = ops.convert_to_numpy(layer.kernel).astype(np.float64)
    bias = ops.convert_to_numpy(layer.bias).astype(np.float64) if layer.use_bias else 0.0
    gamma = ops.convert_to_numpy(batch_norm.gamma) if batch_norm.scale else 1.0
    beta = ops.convert_to_numpy(batch_norm.beta) if batch_norm.center else 0.0
    mean = ops.convert_to_numpy(batch_norm.moving_mean)
    scale = gamma / np.sqrt(ops.convert_to_numpy(batch_norm.moving_variance) + batch_norm.epsilon)
    shaped = scale.reshape(kernel.shape[-2:]) if type(layer).__name__ == "DepthwiseConv2D" else scale
    return (kernel * shaped).astype(np.float32), ((bias - mean) * scale + beta).astype(np.float32)


def _call(layer, *args, **kwargs):
    # A folded batch norm's Identity takes no mask; the graph recorded the batch norm's call arguments.
    if isinstance(layer, keras.layers.Identity):
        kwargs.pop("mask", None)
        kwargs.pop("training", None)
    return layer(*args, **kwargs)


def _clone(model, replace):
    return keras.models.clone_model(model, clone_function=replace, call_function=_call, recursive=True)


def fold_batch_norm(model):
    """``model`` with each foldable batch normalization folded into the layer before it (an Identity left)."""
    pairs = folding_pairs(model)
    folded_into = {norm: layer for layer, norm in pairs.items()}

    def replace(layer):
        config = layer.get_config()
        if layer.name in pairs:
            return type(layer).from_config({**config, "use_bias": True})
        if layer.name in folded_into:
            return keras.layers.Identity(name=layer.name)
        return type(layer).from_config(config)

    folded = _clone(model, replace)
    originals, targets = _by_name(model), _by_name(folded)
    for layer in leaves(model):
        target = targets[layer.name]
        if layer.name in pairs:
            target.set_weights(list(folded_weights(layer, originals[pairs[layer.name]])))
        elif layer.name not in folded_into and layer.weights:
            target.set_weights(layer.get_weights())
    return folded


def wrap(folded, base_scheme, values_per_channel=16):
    """``folded`` with each wrapped layer fake-quantizing its kernel as ``base_scheme`` deploys it."""

    def replace(layer):
        kind = type(layer).__name__
        if kind in WRAPPED:
            wrapped = QAT_LAYERS[kind].from_config(layer.get_config())
            wrapped.grid = weight_grid(base_scheme, WRAPPED[kind], values_per_channel)
            return wrapped
        if kind == "BatchNormalization":
            return type(layer).from_config({**layer.get_config(), "trainable": False})  # frozen statistics
        return type(layer).from_config(layer.get_config())

    check_supported(folded)
    model = _clone(folded, replace)
    targets = _by_name(model)
    for layer in leaves(folded):
        target = targets[layer.name]
        if isinstance(target, _FakeQuantKernel):  # its own variables first; a LUT table after them
            target._kernel.assign(layer.kernel)
            if layer.use_bias:
                target.bias.assign(layer.bias)
        elif layer.weights:
            target.set_weights(layer.get_weights())
    for layer in leaves(model):
        if isinstance(layer, _FakeQuantKernel):
            layer.fit_table()
    return model


class KeepBest(keras.callbacks.Callback):
    """At the end, the weights of the epoch with the best validation accuracy, the starting point included."""

    def __init__(self, start_accuracy):
        super().__init__()
        self.accuracies = [start_accuracy]
        self.best_epoch = 0
        self.weights = None

    def on_train_begin(self, logs=None):
        self.weights = self.model.get_weights()

    def on_epoch_end(self, epoch, logs=None):
        accuracy = (logs or {}).get("val_accuracy")
        if accuracy is None or not math.isfinite(logs.get("loss", math.nan)):
            return
        self.accuracies.append(float(accuracy))
        if accuracy > self.accuracies[self.best_epoch]:
            self.best_epoch, self.weights = epoch + 1, self.model.get_weights()

    def on_train_end(self, logs=None):
        self.model.set_weights(self.weights)


def project(model, folded):
    """A plain model of ``folded``'s architecture whose kernels are ``model``'s kernels as the tool stores them."""
    deployed = _clone(folded, lambda layer: type(layer).from_config(layer.get_config()))
    targets = _by_name(deployed)
    for layer in leaves(model):
        if not layer.weights:
            continue
        target = targets[layer.name]
        if isinstance(layer, _FakeQuantKernel):
            weights = [layer.deployed_kernel()]
            if layer.use_bias:
                weights.append(ops.convert_to_numpy(layer.bias))
            target.set_weights(weights)
        else:
            target.set_weights(layer.get_weights())
    return deployed


def accuracy(model, images, labels, batch_size):
    probabilities = model.predict(images.astype("float32"), batch_size=batch_size, verbose=0)
    return float(np.mean(probabilities.argmax(axis=1) == labels))


def finetune(model, dataset, base_scheme, training_settings, qat_settings, threads=1, values_per_channel=16):
    """Fine-tune ``model`` with ``base_scheme``'s weights simulated; ``(deployed model, record)``.

    ``training_settings``: the model's own training recipe (batch size,
    augmentation, optimizer, seed: ``config.training_settings``), with
    ``qat_settings``' ``epochs`` and ``learning_rate`` (no warm-up).
    """
    from .runtime import configure_tensorflow
    from .training import make_datasets, make_optimizer

    settings = {
        **training_settings,
        "epochs": qat_settings["epochs"],
        "learning_rate": qat_settings["learning_rate"],
        "warmup_epochs": 0,
    }
    if keras.backend.backend() == "tensorflow":
        configure_tensorflow(threads, settings["seed"])
    else:
        keras.utils.set_random_seed(settings["seed"])
    check_supported(model)
    folded = fold_batch_norm(model)
    wrapped = wrap(folded, base_scheme, values_per_channel)
    num_classes = len(dataset.class_names)
    before = accuracy(project(wrapped, folded), dataset.x_test, dataset.y_test, settings["batch_size"])
    seconds, selection = 0.0, {"validation_accuracies": [], "selected_epoch": 0}
    if settings["epochs"] > 0:
        train_batches, validation, count = make_datasets(dataset.x_train, dataset.y_train, settings, num_classes)
        wrapped.compile(
            optimizer=make_optimizer(settings, count // settings["batch_size"]),
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=settings["label_smoothing"]),
            metrics=["accuracy"],
        )
        callbacks = [keras.callbacks.TerminateOnNaN()]
        if validation is not None:
            start = wrapped.evaluate(*validation, batch_size=settings["batch_size"], verbose=0, return_dict=True)
            callbacks.append(KeepBest(float(start["accuracy"])))
        started = time.perf_counter()
        history = wrapped.fit(
            train_batches, validation_data=validation, epochs=settings["epochs"], callbacks=callbacks, verbose=2
        )
        seconds = time.perf_counter() - started
        if not all(math.isfinite(loss) for loss in history.history["loss"]):
            raise QATDiverged(
                f"QAT of {model.name} diverged (a loss of {history.history['loss'][-1]}); "
                f"lower qat.learning_rate ({settings['learning_rate']})"
            )
        if validation is not None:
            selection = {"validation_accuracies": callbacks[-1].accuracies, "selected_epoch": callbacks[-1].best_epoch}
        else:
            selection = {"validation_accuracies": [], "selected_epoch": settings["epochs"]}
    deployed = project(wrapped, folded)
    record = {
        "base_scheme": base_scheme,
        "epochs": settings["epochs"],
        "learning_rate": settings["learning_rate"],
        "folded_batch_norms": sorted(folding_pairs(model).values()),
        "frozen_batch_norms": sorted(
            layer.name for layer in leaves(wrapped) if type(layer).__name__ == "BatchNormalization"
        ),
        "wrapped_layers": {
            layer.name: {"operator": WRAPPED[layer._qat_kind], **vars(layer.grid)}
            for layer in leaves(wrapped)
            if isinstance(layer, _FakeQuantKernel)
        },
        "keras_accuracy_before": before,
        "keras_accuracy": accuracy(deployed, dataset.x_test, dataset.y_test, settings["batch_size"]),
        "training_seconds": seconds,
        **selection,
    }
    logger.info(
        "QAT %s of %s: epoch %d kept (validation accuracies %s); Keras test accuracy %.4f before, %.4f after",
        base_scheme,
        model.name,
        selection["selected_epoch"],
        selection["validation_accuracies"],
        before,
        record["keras_accuracy"],
    )
    return deployed, record
