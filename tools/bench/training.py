"""Training throughput: the workflow's ``train`` against a bare ``model.fit``, against the roofline, and what it costs.

Each measurement runs in its own process (``machine.in_child``), so it gets
its own Keras backend, thread pools and environment (oneDNN on or off).
Throughput is training images over the median wall time of the steady-state
epochs (the first, which traces and compiles, is left out).
"""

import csv
import io
import statistics
from collections import defaultdict
from pathlib import Path

import numpy as np

# Training does about three times a forward pass's work: the forward pass, and the gradients
# with respect to the activations and to the weights, each about as costly.
TRAINING_PASSES = 3


def _subset(dataset, train_images, test_images=256):
    import dataclasses

    from tinyml_quant.datasets import seeded_subset

    chosen = seeded_subset(len(dataset.y_train), train_images, 0)
    # Seeded, not the first images: a split may be stored class by class (the CIFAR-10 mirror is).
    tested = seeded_subset(len(dataset.y_test), test_images, 0)
    return dataclasses.replace(
        dataset,
        x_train=dataset.x_train[chosen],
        y_train=dataset.y_train[chosen],
        x_test=dataset.x_test[tested],
        y_test=dataset.y_test[tested],
    )


def train_step(
    kind,
    dataset_path,
    model_name,
    architecture,
    settings,
    threads,
    train_images,
    inter_op_threads=None,
    test_images=256,
):
    """Train ``model_name`` on ``train_images`` seeded training images; per-epoch wall seconds and images.

    ``kind``: "workflow" (``tinyml_quant.training.train`` as the rule runs it,
    on the Keras backend, XLA and precision its ``settings`` name: the child's
    environment must choose the same backend, ``backends.backend_environment``),
    or "bare" (a plain ``model.fit`` on in-memory float32 arrays, no
    determinism, with Keras augmentation layers in front of the model:
    RandomTranslation by up to the crop padding, zero filled, nearest pixel, and
    RandomFlip).
    ``inter_op_threads``: TensorFlow's pools fixed before the workflow's training
    sets them (it keeps pools a process already has): the workflow's seeded
    training with ops side by side, as it ran before seeded runs got one inter-op thread.
    """
    import keras

    from tinyml_quant import training
    from tinyml_quant.architectures import build_model
    from tinyml_quant.datasets import load_prepared

    dataset = _subset(load_prepared(dataset_path), train_images, test_images)
    timer = training.EpochTimer()
    outcome = {}
    if inter_op_threads is not None:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(inter_op_threads)
        tf.constant(0.0) + 1.0  # the first op fixes the pools
    if kind == "workflow":
        model, history, metrics = training.train(dataset, model_name, architecture, settings, threads, [timer])
        trained_images = metrics["training_images"]
        outcome = {
            "test_accuracy": metrics["test_accuracy"],
            "weights_sha256": weights_digest(model),
            "backend": metrics["backend"],
        }
    elif kind == "bare":
        training.configure_tensorflow(threads)  # no seed: no op determinism, as a plain script would run
        keras.utils.set_random_seed(settings["seed"])
        shape = dataset.x_train.shape[1:]
        front = [keras.Input(shape)]
        padding = settings["augmentation"].get("random_crop_padding", 0)
        if padding:
            front.append(
                keras.layers.RandomTranslation(
                    padding / shape[0], padding / shape[1], fill_mode="constant", interpolation="nearest"
                )
            )
        if settings["augmentation"].get("horizontal_flip"):
            front.append(keras.layers.RandomFlip("horizontal"))
        model = keras.Sequential([*front, build_model(model_name, shape, len(dataset.class_names), **architecture)])
        # Whole batches only, as the workflow trains (see tinyml_quant.training.make_datasets).
        steps = int(len(dataset.y_train) * (1 - settings["validation_split"])) // settings["batch_size"]
        trained_images = steps * settings["batch_size"]
        model.compile(optimizer=training.make_optimizer(settings, steps), loss="sparse_categorical_crossentropy")
        model.fit(
            dataset.x_train[:trained_images].astype("float32"),
            dataset.y_train[:trained_images],
            batch_size=settings["batch_size"],
            epochs=settings["epochs"],
            validation_data=(dataset.x_train[trained_images:].astype("float32"), dataset.y_train[trained_images:]),
            callbacks=[timer],
            verbose=0,
        )
    else:
        raise ValueError(f"unknown training kind {kind!r}")
    return {"epoch_wall_s": list(timer.seconds), "train_images": int(trained_images), **outcome}


def weights_digest(model):
    """SHA-256 of every weight of ``model``, in order: equal digests, equal models."""
    import hashlib

    digest = hashlib.sha256()
    for weights in model.get_weights():
        digest.update(np.ascontiguousarray(weights).tobytes())
    return digest.hexdigest()


def train_and_save(dataset_path, model_name, architecture, settings, threads, train_images, model_path):
    """In a child: train ``model_name`` as the workflow does, on a subset, and save it (the evaluation timings' model).

    Here, not in ``__main__``: a spawned child imports the function by its module.
    """
    from tinyml_quant.datasets import load_prepared
    from tinyml_quant.training import train

    model, _, _ = train(_subset(load_prepared(dataset_path), train_images), model_name, architecture, settings, threads)
    model.save(model_path)


def images_per_second(run):
    steady = run["epoch_wall_s"][1:] or run["epoch_wall_s"]
    return run["train_images"] / statistics.median(steady)


def achieved_gflops(images_per_s, forward_macs):
    """Training GFLOP/s from images/s: 2 FLOPs per multiply-accumulate, ``TRAINING_PASSES`` passes."""
    return images_per_s * forward_macs * 2 * TRAINING_PASSES / 1e9


def forward_macs(model_name, architecture, input_shape, num_classes=10):
    """Multiply-accumulates of one forward pass, counted by the graph stage on the model's fp32 TFLite file."""
    from tinyml_quant.architectures import build_model
    from tinyml_quant.conversion import convert
    from tinyml_quant.graph import analyze_graph

    return analyze_graph(convert(build_model(model_name, input_shape, num_classes, **architecture), "fp32"))["macs"]


# --------------------------------------------------------------------------- where a step's time goes


def read_onednn_log(log_path, skip_first=0.5):
    """``{(primitive, propagation): milliseconds}`` from a run with ``ONEDNN_VERBOSE=1``, its later part only.

    oneDNN writes one comma-separated record per executed primitive
    (``onednn_verbose,...,exec,cpu,<primitive>,<implementation>,<propagation>,...,<milliseconds>``),
    a documented machine-readable format. With two equal epochs, the later
    half of the records is the steady second epoch.
    """
    records = []
    for line in Path(log_path).read_text(errors="replace").splitlines():
        if not line.startswith("onednn_verbose,") or ",exec," not in line:
            continue
        fields = next(csv.reader(io.StringIO(line)))
        position = fields.index("exec")
        try:
            milliseconds = float(fields[-1])
        except ValueError:
            continue
        # exec, engine, primitive, implementation, propagation kind, ...
        records.append((fields[position + 2], fields[position + 4], milliseconds))
    totals = defaultdict(float)
    for primitive, propagation, milliseconds in records[int(len(records) * skip_first) :]:
        totals[(primitive, propagation)] += milliseconds
    return dict(totals)


def cost_shares(totals):
    """Per primitive and propagation kind, its share of all oneDNN time, largest first."""
    whole = sum(totals.values()) or 1.0
    return sorted(((key, value, 100 * value / whole) for key, value in totals.items()), key=lambda row: -row[1])


def standard_deviation_percent(values):
    return 100 * float(np.std(values) / np.mean(values)) if len(values) > 1 else 0.0
