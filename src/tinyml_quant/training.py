"""Training: a seeded, deterministic Keras 3 ``fit`` on a prepared dataset."""

import csv
import logging
import math
from pathlib import Path

from . import __version__
from .datasets import load_prepared
from .files import atomic_path, write_json

logger = logging.getLogger(__name__)


def configure_tensorflow(threads, seed=None):
    """Pin TensorFlow to ``threads`` CPU threads and, with a seed, make it deterministic."""
    import keras
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        # TensorFlow fixes its thread pools at first use: a process that already
        # ran TensorFlow (a notebook, a test session) keeps the pools it has.
        logger.warning(
            "TensorFlow is already initialized with %d intra-op threads; cannot change it to %d",
            tf.config.threading.get_intra_op_parallelism_threads(), threads,
        )
    if seed is not None:
        keras.utils.set_random_seed(seed)
        tf.config.experimental.enable_op_determinism()


def _augment_fn(padding, flip, image_shape, seed):
    """Per-image random crop (after zero padding) and horizontal flip, from stateless seeds."""
    import tensorflow as tf

    def augment(index, image, label):
        image_seed = tf.stack([tf.constant(seed, tf.int64), index])
        if padding:
            padded = tf.image.pad_to_bounding_box(
                image, padding, padding, image_shape[0] + 2 * padding, image_shape[1] + 2 * padding
            )
            image = tf.image.stateless_random_crop(padded, image_shape, seed=image_seed)
        if flip:
            image = tf.image.stateless_random_flip_left_right(image, seed=image_seed + 1)
        return image, label

    return augment


def make_datasets(x_train, y_train, settings, augmentation, seed):
    """Shuffled, augmented training batches and plain validation batches (``tf.data``, prefetched)."""
    import numpy as np
    import tensorflow as tf

    order = np.random.default_rng(seed).permutation(len(y_train))
    validation_size = int(round(len(order) * settings["validation_split"]))
    train_index, validation_index = order[validation_size:], order[:validation_size]
    batch_size = settings["batch_size"]
    images = tf.constant(x_train[train_index])
    labels = tf.constant(y_train[train_index])
    train = tf.data.Dataset.from_tensor_slices((images, labels))
    train = train.shuffle(len(train_index), seed=seed, reshuffle_each_iteration=True)
    train = train.enumerate().map(
        lambda index, pair: (index, tf.cast(pair[0], tf.float32), pair[1]), num_parallel_calls=tf.data.AUTOTUNE
    )
    padding = augmentation.get("random_crop_padding", 0)
    flip = augmentation.get("horizontal_flip", False)
    train = train.map(_augment_fn(padding, flip, x_train.shape[1:], seed), num_parallel_calls=tf.data.AUTOTUNE)
    train = train.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    validation = None
    if validation_size:
        validation = tf.data.Dataset.from_tensor_slices(
            (x_train[validation_index].astype("float32"), y_train[validation_index])
        ).batch(batch_size)
    return train, validation, len(train_index)


def make_optimizer(settings, steps_per_epoch):
    import keras

    rate = settings["learning_rate"]
    if settings["lr_schedule"] == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(rate, decay_steps=max(1, steps_per_epoch * settings["epochs"]))
    if settings["optimizer"] == "adam":
        return keras.optimizers.Adam(rate)
    if settings["optimizer"] == "adamw":
        return keras.optimizers.AdamW(rate, weight_decay=1e-4)
    if settings["optimizer"] == "sgd":
        return keras.optimizers.SGD(rate, momentum=0.9, nesterov=True)
    raise ValueError(f"training.optimizer: unknown optimizer {settings['optimizer']!r}; use adam, adamw or sgd")


class TrainingDiverged(RuntimeError):
    pass


def train(dataset, model_name, architecture, settings, augmentation, threads=1, callbacks=()):
    """Build and fit ``model_name`` on ``dataset`` (a PreparedDataset).

    Returns ``(model, history_rows, test_metrics)``. Raises TrainingDiverged
    when the loss becomes NaN, naming the settings to look at. ``callbacks``
    are extra Keras callbacks for ``fit`` (the benchmark times epochs with one).
    """
    import keras

    from .architectures import build_model

    seed = settings["seed"]
    configure_tensorflow(threads, seed)
    model = build_model(model_name, dataset.x_train.shape[1:], len(dataset.class_names), **architecture)
    train_batches, validation_batches, train_count = make_datasets(
        dataset.x_train, dataset.y_train, settings, augmentation, seed
    )
    steps_per_epoch = math.ceil(train_count / settings["batch_size"])
    model.compile(
        optimizer=make_optimizer(settings, steps_per_epoch),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    logger.info("training %s on %s: %d parameters, settings %s", model.name, dataset.name, model.count_params(), settings)
    history = model.fit(
        train_batches,
        validation_data=validation_batches,
        epochs=settings["epochs"],
        callbacks=[keras.callbacks.TerminateOnNaN(), *callbacks],
        verbose=2,
    )
    losses = history.history["loss"]
    if len(losses) < settings["epochs"] or not all(math.isfinite(loss) for loss in losses):
        raise TrainingDiverged(
            f"training {model_name} on {dataset.name} diverged (loss {losses[-1]} in epoch {len(losses)}); "
            f"no model was saved. Check training.learning_rate={settings['learning_rate']}, "
            f"training.optimizer={settings['optimizer']}, training.lr_schedule={settings['lr_schedule']} "
            f"and training.batch_size={settings['batch_size']} (or their training.per_model.{model_name} overrides)"
        )
    rows = [
        {"epoch": epoch + 1, **{key: float(values[epoch]) for key, values in history.history.items()}}
        for epoch in range(len(losses))
    ]
    loss, accuracy = model.evaluate(
        dataset.x_test.astype("float32"), dataset.y_test, batch_size=settings["batch_size"], verbose=0
    )
    test_metrics = {
        "dataset": dataset.provenance["dataset"],
        "dataset_name": dataset.name,
        "model": model_name,
        "parameters": int(model.count_params()),
        "test_images": int(len(dataset.y_test)),
        "test_loss": float(loss),
        "test_accuracy": float(accuracy),
        "seed": seed,
        "settings": settings,
        "architecture": architecture,
    }
    return model, rows, test_metrics


def write_history(rows, path):
    with atomic_path(path) as temporary, open(temporary, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def run_training(dataset_path, model_name, architecture, settings, augmentation, threads,
                 model_path, history_path, metrics_path):  # fmt: skip
    """Snakemake entry point: train, then write model, history CSV and test metrics."""
    import keras
    import tensorflow as tf

    dataset = load_prepared(dataset_path)
    model, rows, test_metrics = train(dataset, model_name, architecture, settings, augmentation, threads)
    test_metrics["versions"] = {"tensorflow": tf.__version__, "keras": keras.__version__, "workflow": __version__}
    with atomic_path(model_path) as temporary:
        model.save(temporary)
    write_history(rows, history_path)
    write_json(metrics_path, test_metrics)
    logger.info("test accuracy %.4f", test_metrics["test_accuracy"])
    return Path(model_path)
