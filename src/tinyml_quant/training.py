"""Training: a seeded, deterministic Keras 3 ``fit`` on a prepared dataset, on any Keras backend.

The input pipeline and augmentation are NumPy (``TrainingBatches``), so the
same code trains under TensorFlow or JAX (``training.backend``; the backend is
chosen before Keras is imported, by ``backends.select_backend``), and a JAX
training imports no TensorFlow.

A training recipe is a plain dict of settings (``training`` in the config,
merged per dataset and model by ``tinyml_quant.config.training_settings``):

* ``seed``: weights, shuffling, the validation split and augmentation;
* ``epochs``, ``batch_size``;
* ``optimizer``: ``sgd`` (with ``momentum`` and ``nesterov``) or ``adam``;
* ``learning_rate``: the peak rate; ``lr_schedule``: ``cosine`` (decays to 0
  by the last step) or ``constant``; ``warmup_epochs``: a linear ramp from 0 to
  the peak first (fractions allowed);
* ``weight_decay``: decoupled weight decay of every kernel (Loshchilov and
  Hutter; Adam with it is AdamW); batch-norm parameters and biases are exempt;
* ``label_smoothing``: of the cross-entropy targets;
* ``validation_split``: the fraction of training images held out (seeded) to
  report validation accuracy per epoch; 0 trains on all;
* ``augmentation``: ``random_crop_padding`` (zero padding, then a random crop
  back to size) and ``horizontal_flip``;
* ``backend`` (``tensorflow`` or ``jax``) and ``accelerator`` (``auto``,
  ``cpu`` or ``gpu``): where it trains (``backends``); ``jit_compile``: XLA
  for TensorFlow's training step (JAX always compiles).
"""

import csv
import logging
import math
import time

import keras
import numpy as np

from . import __version__
from .architectures import build_model
from .backends import BackendError, backend_version, check_accelerator
from .datasets import load_prepared
from .files import atomic_path, write_json
from .runtime import configure_tensorflow

logger = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "adam")
# Keras dtype policies a model may train in; the saved model is float32 either way.
PRECISIONS = ("float32", "mixed_bfloat16")
LR_SCHEDULES = ("cosine", "constant")
# Weight decay shrinks kernels; batch-norm scales and shifts and biases are left alone.
WEIGHT_DECAY_EXEMPT = ("gamma", "beta", "bias")


def split_validation(count, fraction, seed):
    """``(training indices, validation indices)``: a seeded random ``fraction`` held out."""
    order = np.random.default_rng(seed).permutation(count)
    validation_size = int(round(count * fraction))
    return np.sort(order[validation_size:]), np.sort(order[:validation_size])


def augment_batch(images, rng, padding, flip):
    """Random crop after zero padding, and horizontal flip, of a whole batch at once (NumPy, any backend).

    A crop of the zero-padded image is a shift by up to ``padding`` pixels
    with zeros shifted in: each image's crop is read from the padded batch by
    one gather (pixels are copied, never blended). ``rng`` (a NumPy Generator
    seeded by the training seed, the epoch and the batch's position) draws the
    offsets and flips, so a batch is a function of those three alone.
    """
    count, height, width = images.shape[:3]
    if padding:
        padded = np.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
        rows, columns = (rng.integers(0, 2 * padding + 1, count) for _ in range(2))
        row_index = rows[:, None] + np.arange(height)
        column_index = columns[:, None] + np.arange(width)
        images = padded[np.arange(count)[:, None, None], row_index[:, :, None], column_index[:, None, :]]
    if flip:
        flipped = rng.random(count) < 0.5
        images = np.where(flipped[:, None, None, None], images[:, :, ::-1], images)
    return images


class TrainingBatches(keras.utils.PyDataset):
    """Shuffled, augmented, one-hot training batches of a fixed size, seeded, on every Keras backend.

    Each epoch draws a new permutation of the training images from
    ``(seed, epoch)``, and each batch its augmentation from ``(seed, epoch,
    batch)``, so the batches do not depend on who asks for them or when. Only
    whole batches: the last, smaller one of an epoch is left out (each epoch
    reshuffles, so no image is left out for good). A training step on a smaller
    batch than the ones before corrupts the heap in TensorFlow 2.21's oneDNN
    kernels on this project's CPUs (two threads; reproduced with a ResNet-8 on
    81 images, batch 32, and tested), and oneDNN is twice as fast as TensorFlow
    without it. One worker, no processes: a batch is a few milliseconds of
    NumPy, and the epoch counter must be the trainer's.
    """

    def __init__(self, images, labels, batch_size, num_classes, seed, padding=0, flip=False):
        super().__init__(workers=1, use_multiprocessing=False)
        self.images, self.labels = images, labels
        self.batch_size, self.num_classes, self.seed = batch_size, num_classes, seed
        self.padding, self.flip = padding, flip
        self.epoch = 0

    def __len__(self):
        return len(self.labels) // self.batch_size

    def order(self):
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.labels))

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of {len(self)}")
        chosen = self.order()[index * self.batch_size : (index + 1) * self.batch_size]
        images = self.images[chosen]
        if self.padding or self.flip:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            images = augment_batch(images, rng, self.padding, self.flip)
        return images.astype(np.float32), one_hot(self.labels[chosen], self.num_classes)

    def on_epoch_end(self):
        self.epoch += 1


def one_hot(labels, num_classes):
    return np.eye(num_classes, dtype=np.float32)[labels]


def make_datasets(x_train, y_train, settings, num_classes):
    """Training batches (``TrainingBatches``) and the validation images and one-hot labels (or None).

    Labels are one-hot, so label smoothing applies. Returns ``(train,
    validation or None, training image count)``.
    """
    seed = settings["seed"]
    train_index, validation_index = split_validation(len(y_train), settings["validation_split"], seed)
    if len(train_index) < settings["batch_size"]:
        raise ValueError(
            f"training.batch_size ({settings['batch_size']}) is larger than the {len(train_index)} training images "
            "left after the validation split; lower it for this dataset (training.per_dataset.<dataset>.batch_size)"
        )
    augmentation = settings.get("augmentation") or {}
    train = TrainingBatches(
        x_train[train_index],
        y_train[train_index],
        settings["batch_size"],
        num_classes,
        seed,
        padding=int(augmentation.get("random_crop_padding", 0)),
        flip=bool(augmentation.get("horizontal_flip", False)),
    )
    validation = None
    if len(validation_index):
        validation = (
            x_train[validation_index].astype(np.float32),
            one_hot(y_train[validation_index], num_classes),
        )
    return train, validation, len(train_index)


def learning_rate_schedule(settings, steps_per_epoch):
    """Warm-up (linear from 0) to ``learning_rate``, then cosine decay to 0 or a constant rate.

    Both are Keras' own ``CosineDecay`` (constant: ``alpha=1``, a cosine that
    decays to itself), so a saved model's optimizer reloads without custom code.
    """
    total_steps = max(1, steps_per_epoch * settings["epochs"])
    warmup_steps = min(total_steps - 1, int(round(settings["warmup_epochs"] * steps_per_epoch)))
    peak = settings["learning_rate"]
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup_steps else peak,
        decay_steps=total_steps - warmup_steps,
        alpha=1.0 if settings["lr_schedule"] == "constant" else 0.0,
        warmup_target=peak if warmup_steps else None,
        warmup_steps=warmup_steps,
    )


def make_optimizer(settings, steps_per_epoch):
    rate = learning_rate_schedule(settings, steps_per_epoch)
    weight_decay = settings["weight_decay"] or None
    if settings["optimizer"] == "sgd":
        optimizer = keras.optimizers.SGD(
            rate, momentum=settings["momentum"], nesterov=settings["nesterov"], weight_decay=weight_decay
        )
    elif settings["optimizer"] == "adam":
        optimizer = keras.optimizers.Adam(rate, weight_decay=weight_decay)
    else:
        raise ValueError(f"training.optimizer: unknown optimizer {settings['optimizer']!r}; use one of {OPTIMIZERS}")
    if weight_decay:
        optimizer.exclude_from_weight_decay(var_names=list(WEIGHT_DECAY_EXEMPT))
    return optimizer


def build_model_in(precision, model_name, input_shape, num_classes, architecture):
    """``build_model`` under Keras' dtype policy ``precision``, the global policy restored afterwards."""
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(precision)
    try:
        return build_model(model_name, input_shape, num_classes, **architecture)
    finally:
        keras.mixed_precision.set_dtype_policy(previous)


def as_float32(model, model_name, input_shape, num_classes, architecture):
    """The same network built in float32 with ``model``'s weights (a mixed policy keeps its weights in float32).

    Conversion, evaluation and every variant then start from a plain float32
    model, whatever precision it trained in.
    """
    plain = build_model_in("float32", model_name, input_shape, num_classes, architecture)
    plain.set_weights(model.get_weights())
    return plain


class TrainingDiverged(RuntimeError):
    pass


class EpochTimer(keras.callbacks.Callback):
    """Wall seconds of each epoch, training and validation together."""

    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.started)


def train(dataset, model_name, architecture, settings, threads=1, callbacks=()):
    """Build and fit ``model_name`` on ``dataset`` (a PreparedDataset).

    Returns ``(model, history_rows, test_metrics)``. Raises TrainingDiverged
    when the loss becomes NaN, naming the settings to look at. ``callbacks``
    are extra Keras callbacks for ``fit``.
    """
    seed = settings["seed"]
    backend = keras.backend.backend()
    wanted = settings.get("backend", "tensorflow")
    if backend != wanted:
        raise BackendError(
            f"training.backend is {wanted!r} but Keras was imported with the {backend!r} backend: choose it "
            "with tinyml_quant.backends.select_backend before importing tinyml_quant.training (or Keras)"
        )
    device = check_accelerator(backend, settings.get("accelerator", "auto"))
    jit_compile = backend == "tensorflow" and settings.get("jit_compile", False)
    if backend == "tensorflow":
        configure_tensorflow(threads, seed, op_determinism=not jit_compile)
    else:
        # Python's, NumPy's and Keras' own seed generator (weights, dropout): the backend's ops are
        # deterministic on a CPU; on a GPU, XLA's reductions may not be (docs/training.md).
        keras.utils.set_random_seed(seed)
    num_classes = len(dataset.class_names)
    precision = settings.get("precision", "float32")
    if precision not in PRECISIONS:
        raise ValueError(f"training.precision: unknown precision {precision!r}; use one of {PRECISIONS}")
    model = build_model_in(precision, model_name, dataset.x_train.shape[1:], num_classes, architecture)
    train_batches, validation_batches, train_count = make_datasets(
        dataset.x_train, dataset.y_train, settings, num_classes
    )
    steps_per_epoch = train_count // settings["batch_size"]
    model.compile(
        optimizer=make_optimizer(settings, steps_per_epoch),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=settings["label_smoothing"]),
        metrics=["accuracy"],
        # Keras' default on TensorFlow: XLA unless op determinism is on, as seeded training has it. XLA
        # training runs without it, seeded, one op at a time (its reruns are tested for equal weights).
        **({"jit_compile": True} if jit_compile else {}),
    )
    logger.info(
        "training %s on %s with Keras' %s backend on the %s: %d parameters, %d training images, settings %s",
        model.name,
        dataset.name,
        backend,
        device,
        model.count_params(),
        train_count,
        settings,
    )
    timer = EpochTimer()
    history = model.fit(
        train_batches,
        validation_data=validation_batches,
        validation_batch_size=settings["batch_size"],
        epochs=settings["epochs"],
        callbacks=[keras.callbacks.TerminateOnNaN(), timer, *callbacks],
        verbose=2,
    )
    losses = history.history["loss"]
    if len(losses) < settings["epochs"] or not all(math.isfinite(loss) for loss in losses):
        raise TrainingDiverged(
            f"training {model_name} on {dataset.name} diverged (loss {losses[-1]} in epoch {len(losses)}); "
            f"no model was saved. Check training.learning_rate={settings['learning_rate']}, "
            f"training.optimizer={settings['optimizer']}, training.lr_schedule={settings['lr_schedule']} "
            f"and training.batch_size={settings['batch_size']} (or their per_dataset/per_model overrides "
            f"for {model_name})"
        )
    rows = [
        {
            "epoch": epoch + 1,
            **{key: float(values[epoch]) for key, values in history.history.items()},
            "seconds": timer.seconds[epoch],
        }
        for epoch in range(len(losses))
    ]
    if precision != "float32":
        model = as_float32(model, model_name, dataset.x_train.shape[1:], num_classes, architecture)
    probabilities = model.predict(dataset.x_test.astype("float32"), batch_size=settings["batch_size"], verbose=0)
    test_metrics = {
        "dataset": dataset.provenance["dataset"],
        "dataset_name": dataset.name,
        "model": model_name,
        "source": "trained here",
        "parameters": int(model.count_params()),
        "test_images": int(len(dataset.y_test)),
        "test_accuracy": float(np.mean(probabilities.argmax(axis=1) == dataset.y_test)),
        "training_images": int(train_count),
        "seed": seed,
        "backend": backend,
        "device": device,
        "settings": settings,
        "architecture": architecture,
        "epoch_seconds_median": float(np.median(timer.seconds)),
        "final_epoch": rows[-1],
    }
    return model, rows, test_metrics


def write_history(rows, path):
    with atomic_path(path) as temporary, open(temporary, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def run_training(dataset_path, model_name, architecture, settings, threads, model_path, history_path, metrics_path):
    """Snakemake entry point: train, then write model, history CSV and test metrics."""
    dataset = load_prepared(dataset_path)
    model, rows, test_metrics = train(dataset, model_name, architecture, settings, threads)
    backend = test_metrics["backend"]
    test_metrics["versions"] = {backend: backend_version(backend), "keras": keras.__version__, "workflow": __version__}
    with atomic_path(model_path) as temporary:
        model.save(temporary)
    write_history(rows, history_path)
    write_json(metrics_path, test_metrics)
    logger.info("test accuracy %.4f", test_metrics["test_accuracy"])
