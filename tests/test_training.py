"""Training: the recipe's pieces (schedule, optimizer, augmentation, validation split), determinism, divergence."""

import numpy as np
import pytest

from tinyml_quant.datasets import PreparedDataset, save_prepared
from tinyml_quant.training import (
    TrainingDiverged,
    augment_batch,
    learning_rate_schedule,
    make_optimizer,
    run_training,
    split_validation,
    train,
)

TOY_SETTINGS = {
    "seed": 3,
    "epochs": 2,
    "batch_size": 32,
    "optimizer": "adam",
    "learning_rate": 0.01,
    "momentum": 0.9,
    "nesterov": True,
    "weight_decay": 0.0,
    "lr_schedule": "cosine",
    "warmup_epochs": 0,
    "label_smoothing": 0.1,
    "validation_split": 0.1,
    "augmentation": {"random_crop_padding": 2, "horizontal_flip": True},
}


def toy_dataset(count=256, seed=0):
    """Random 16x16 images of four classes: enough for a model to train, diverge or be compared."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count + 64, 16, 16, 1), dtype=np.uint8)
    labels = rng.integers(0, 4, count + 64)
    return PreparedDataset(
        images[:count],
        labels[:count],
        images[count:],
        labels[count:],
        ["a", "b", "c", "d"],
        {"dataset": "toy", "name": "toy (random)"},
    )


def test_warmup_then_cosine_decay_reaches_the_peak_and_ends_at_zero():
    schedule = learning_rate_schedule({**TOY_SETTINGS, "learning_rate": 0.1, "warmup_epochs": 1, "epochs": 4}, 10)
    rates = [float(schedule(step)) for step in range(41)]
    assert rates[0] == 0.0
    assert rates[5] == pytest.approx(0.05)  # halfway up the linear warm-up
    assert max(rates) == pytest.approx(0.1) and rates.index(max(rates)) == 10
    assert rates[25] == pytest.approx(0.05, abs=1e-3)  # halfway down the cosine
    assert rates[40] == pytest.approx(0.0, abs=1e-6)


def test_a_constant_schedule_stays_at_the_rate_after_its_warmup():
    schedule = learning_rate_schedule({**TOY_SETTINGS, "lr_schedule": "constant", "warmup_epochs": 0.5}, 10)
    assert float(schedule(0)) == 0.0
    assert [float(schedule(step)) for step in (5, 10, 19)] == pytest.approx([0.01] * 3)


def test_sgd_gets_its_momentum_and_weight_decay_spares_batch_norm_and_biases():
    import keras

    settings = {**TOY_SETTINGS, "optimizer": "sgd", "momentum": 0.8, "nesterov": True, "weight_decay": 5e-4}
    optimizer = make_optimizer(settings, 10)
    assert isinstance(optimizer, keras.optimizers.SGD)
    assert optimizer.momentum == 0.8 and optimizer.nesterov and optimizer.weight_decay == 5e-4
    dense = keras.layers.Dense(3)
    norm = keras.layers.BatchNormalization()
    dense.build((None, 2))
    norm.build((None, 3))
    optimizer.build([*dense.trainable_variables, *norm.trainable_variables])
    decayed = {
        variable.path.split("/")[-1]
        for variable in [*dense.trainable_variables, *norm.trainable_variables]
        if optimizer._use_weight_decay(variable)
    }
    assert decayed == {"kernel"}


def test_an_unknown_optimizer_names_the_setting():
    with pytest.raises(ValueError, match="training.optimizer: unknown optimizer 'lion'"):
        make_optimizer({**TOY_SETTINGS, "optimizer": "lion"}, 10)


def test_the_validation_split_is_seeded_and_disjoint():
    train_index, validation_index = split_validation(100, 0.1, seed=7)
    assert len(validation_index) == 10 and len(train_index) == 90
    assert not set(train_index) & set(validation_index)
    again = split_validation(100, 0.1, seed=7)
    assert np.array_equal(again[1], validation_index)
    assert not np.array_equal(split_validation(100, 0.1, seed=8)[1], validation_index)
    assert len(split_validation(100, 0.0, seed=7)[1]) == 0


def test_batch_augmentation_is_a_zero_padded_crop_and_a_flip_of_each_image():
    images = np.arange(64 * 5 * 5 * 1, dtype=np.float32).reshape(64, 5, 5, 1) + 1
    cropped = augment_batch(images, np.random.default_rng([3, 7]), 2, False)
    offsets = set()
    for image, result in zip(images, cropped):
        padded = np.pad(image, ((2, 2), (2, 2), (0, 0)))
        crops = {(y, x): padded[y : y + 5, x : x + 5] for y in range(5) for x in range(5)}
        (offset,) = [offset for offset, crop in crops.items() if np.array_equal(crop, result)]
        offsets.add(offset)
    # Every shift from -2 to 2 pixels, both ways on both axes, among 64 images.
    assert {y for y, _ in offsets} == {x for _, x in offsets} == set(range(5))
    flipped = augment_batch(images, np.random.default_rng([3, 7]), 0, True)
    kinds = [np.array_equal(f, i) or np.array_equal(f, i[:, ::-1]) for f, i in zip(flipped, images)]
    assert all(kinds)
    flips = sum(np.array_equal(f, i[:, ::-1]) for f, i in zip(flipped, images))
    assert 0 < flips < len(images), "each image is flipped or not, at random"
    again = augment_batch(images, np.random.default_rng([3, 7]), 2, True)
    np.testing.assert_array_equal(again, augment_batch(images, np.random.default_rng([3, 7]), 2, True))


def test_same_seed_trains_the_same_model(capsys):
    toy = toy_dataset()
    predictions = []
    for _ in range(2):
        model, history, metrics = train(toy, "custom", {"base_filters": 4}, TOY_SETTINGS, 1)
        predictions.append(model.predict(toy.x_test.astype("float32"), verbose=0))
    np.testing.assert_array_equal(predictions[0], predictions[1])
    assert [row["epoch"] for row in history] == [1, 2] and "val_accuracy" in history[0]
    assert metrics["final_epoch"] == history[-1] and metrics["source"] == "trained here"
    # Whole batches only (230 training images: 7 steps an epoch), and the cosine is at 0 after the last step.
    assert int(model.optimizer.iterations) == 2 * (metrics["training_images"] // TOY_SETTINGS["batch_size"])
    assert float(model.optimizer.learning_rate) == pytest.approx(0.0, abs=1e-9)
    assert model.loss.get_config()["label_smoothing"] == TOY_SETTINGS["label_smoothing"]
    # The job's log: one line per epoch with its metrics, no progress bar's carriage returns or colours.
    printed = capsys.readouterr().out
    assert "\r" not in printed and "\x1b" not in printed
    lines = printed.splitlines()
    assert lines[:4:2] == ["Epoch 1/2", "Epoch 2/2"] and len(lines) == 8  # two trainings
    assert all(" - loss: " in line and " - val_accuracy: " in line for line in lines[1::2])


def test_divergence_stops_at_once_names_the_settings_and_saves_nothing(tmp_path):
    toy = toy_dataset()
    save_prepared(
        tmp_path / "toy.npz", toy.x_train, toy.y_train, toy.x_test, toy.y_test, toy.class_names, toy.provenance
    )
    settings = {**TOY_SETTINGS, "optimizer": "sgd", "learning_rate": 1e12, "epochs": 50}
    outputs = {name: tmp_path / "train" / name for name in ("model.keras", "history.csv", "test_metrics.json")}
    with pytest.raises(TrainingDiverged) as raised:
        run_training(
            tmp_path / "toy.npz",
            "custom",
            {"base_filters": 4},
            settings,
            1,
            outputs["model.keras"],
            outputs["history.csv"],
            outputs["test_metrics.json"],
        )
    message = str(raised.value)
    for culprit in (
        "custom",
        "toy (random)",
        "in epoch 1",
        "training.learning_rate=1000000000000.0",
        "training.optimizer=sgd",
        "per_dataset/per_model overrides",
    ):
        assert culprit in message
    assert not (tmp_path / "train").exists()


def test_a_loss_that_turns_nan_in_the_last_epoch_is_divergence_too():
    """All epochs ran, so only the loss itself shows it: TerminateOnNaN stops no epoch early."""
    settings = {**TOY_SETTINGS, "optimizer": "sgd", "learning_rate": 1e12, "epochs": 1}
    with pytest.raises(TrainingDiverged, match="in epoch 1"):
        train(toy_dataset(), "custom", {"base_filters": 4}, settings, 1)


class ConfiguredTensorFlow(Exception):
    """Raised by a stand-in for configure_tensorflow: training stops there, with the arguments it got."""


def test_training_configures_tensorflow_with_the_jobs_threads_one_by_default(tmp_path, monkeypatch):
    from tinyml_quant import training

    def configure(threads, seed=None, op_determinism=True):
        raise ConfiguredTensorFlow(threads, seed, op_determinism)

    monkeypatch.setattr(training, "configure_tensorflow", configure)
    toy = toy_dataset(count=32)
    with pytest.raises(ConfiguredTensorFlow) as configured:
        train(toy, "custom", {"base_filters": 4}, TOY_SETTINGS)
    assert configured.value.args == (1, TOY_SETTINGS["seed"], True)
    save_prepared(
        tmp_path / "toy.npz", toy.x_train, toy.y_train, toy.x_test, toy.y_test, toy.class_names, toy.provenance
    )
    outputs = [tmp_path / name for name in ("model.keras", "history.csv", "test_metrics.json")]
    with pytest.raises(ConfiguredTensorFlow) as configured:
        run_training(tmp_path / "toy.npz", "custom", {"base_filters": 4}, TOY_SETTINGS, 3, *outputs)
    assert configured.value.args == (3, TOY_SETTINGS["seed"], True)


CRASH_PROGRAM = """
import numpy as np
from tinyml_quant.datasets import PreparedDataset
from tinyml_quant.training import train
rng = np.random.default_rng(0)
images = rng.integers(0, 256, (101, 32, 32, 3), dtype=np.uint8)
labels = np.arange(101) % 10
dataset = PreparedDataset(images[:90], labels[:90], images[90:], labels[90:], [str(i) for i in range(10)],
                          {"dataset": "toy", "name": "toy"})
settings = {SETTINGS, "epochs": 2, "validation_split": 0.1, "augmentation": {}}
train(dataset, "resnet_v1", {"depth": 8, "base_filters": 8}, settings, threads=2)
print("trained")
"""


def test_a_last_partial_batch_does_not_crash_tensorflow():
    """81 training images in batches of 32: a smaller last step corrupts TensorFlow 2.21's oneDNN heap."""
    import subprocess
    import sys

    program = CRASH_PROGRAM.replace("{SETTINGS", "{**" + repr(TOY_SETTINGS))
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and "trained" in result.stdout, result.stderr[-2000:]


def test_a_batch_larger_than_the_training_images_names_the_setting():
    from tinyml_quant.training import make_datasets

    toy = toy_dataset(count=20)
    with pytest.raises(ValueError, match=r"training.batch_size \(32\) is larger than the 18 training images"):
        train(toy, "custom", {"base_filters": 4}, TOY_SETTINGS, 1)
    exactly_one_batch = toy_dataset(count=36)  # 32 left after the validation split: one batch, allowed
    assert make_datasets(exactly_one_batch.x_train, exactly_one_batch.y_train, TOY_SETTINGS, 4)[2] == 32


def test_a_training_job_writes_a_history_and_metrics_that_agree_with_its_saved_model(tmp_path):
    """Every value of a finished job's three files, against the saved model and an independent count."""
    import csv
    import json
    import time

    import keras
    import tensorflow as tf

    from tinyml_quant import __version__
    from tinyml_quant.architectures import build_model

    toy = toy_dataset()
    save_prepared(
        tmp_path / "toy.npz", toy.x_train, toy.y_train, toy.x_test, toy.y_test, toy.class_names, toy.provenance
    )
    paths = [tmp_path / "job" / name for name in ("model.keras", "history.csv", "test_metrics.json")]
    settings = {**TOY_SETTINGS, "epochs": 3}  # three epoch times: their median is not their mean
    started = time.perf_counter()
    run_training(tmp_path / "toy.npz", "custom", {"base_filters": 4}, settings, 1, *paths)
    elapsed = time.perf_counter() - started
    model = keras.models.load_model(paths[0], compile=False)
    with open(paths[1], newline="") as handle:
        history = list(csv.DictReader(handle))
    metrics = json.loads(paths[2].read_text())

    assert [row["epoch"] for row in history] == ["1", "2", "3"]
    assert set(history[0]) == {"epoch", "accuracy", "loss", "val_accuracy", "val_loss", "seconds"}
    assert all(0 < float(row["seconds"]) < elapsed and 0 <= float(row["val_accuracy"]) <= 1 for row in history)
    assert metrics["final_epoch"] == {key: float(value) for key, value in history[-1].items()}
    assert metrics["epoch_seconds_median"] == pytest.approx(np.median([float(row["seconds"]) for row in history]))
    predictions = model.predict(toy.x_test.astype("float32"), verbose=0).argmax(axis=1)
    held_out = int(round(len(toy.y_train) * TOY_SETTINGS["validation_split"]))
    assert {key: value for key, value in metrics.items() if key not in ("final_epoch", "epoch_seconds_median")} == {
        "dataset": "toy",
        "dataset_name": "toy (random)",
        "model": "custom",
        "source": "trained here",
        "parameters": build_model("custom", (16, 16, 1), 4, base_filters=4).count_params(),
        "test_images": len(toy.y_test),
        "test_accuracy": pytest.approx(np.mean(predictions == toy.y_test)),
        "training_images": len(toy.y_train) - held_out,
        "seed": TOY_SETTINGS["seed"],
        "backend": "tensorflow",
        "device": "CPU",
        "settings": settings,
        "architecture": {"base_filters": 4},
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__, "workflow": __version__},
    }


def test_training_batches_are_the_seeded_shuffle_of_the_training_split_one_hot():
    from tinyml_quant.training import make_datasets

    images = np.arange(40, dtype=np.uint8).reshape(40, 1, 1, 1) * np.ones((1, 4, 4, 1), np.uint8)
    labels = np.arange(40) % 3
    settings = {**TOY_SETTINGS, "batch_size": 8, "validation_split": 0.25, "augmentation": {}}
    train_index, validation_index = split_validation(40, 0.25, TOY_SETTINGS["seed"])

    def epoch(train):
        """One epoch's batches as the trainer asks for them, then the trainer's end of the epoch."""
        batches = [train[number] for number in range(len(train))]
        train.on_epoch_end()
        return [image[0, 0, 0] for batch_images, _ in batches for image in batch_images], batches

    train, validation, count = make_datasets(images, labels, settings, 3)
    assert count == 30
    order, batches = epoch(train)
    assert [len(batch_images) for batch_images, _ in batches] == [8, 8, 8]  # the last 6 images wait for an epoch
    assert set(order) <= set(train_index) and len(set(order)) == 24
    assert order != sorted(order), "the training images were not shuffled"
    for batch_images, batch_labels in batches:
        assert batch_images.dtype == np.float32
        np.testing.assert_array_equal(batch_labels, np.eye(3)[batch_images[:, 0, 0, 0].astype(int) % 3])
    assert epoch(train)[0] != order, "each epoch reshuffles"
    assert epoch(make_datasets(images, labels, settings, 3)[0])[0] == order  # the same seed, the same order
    reseeded = make_datasets(images, labels, {**settings, "seed": TOY_SETTINGS["seed"] + 1}, 3)[0]
    assert epoch(reseeded)[0] != order
    # A batch is the same whoever asks for it and how often: it depends on the seed, epoch and position only.
    np.testing.assert_array_equal(train[1][0], train[1][0])
    validation_images, validation_labels = validation
    np.testing.assert_array_equal(validation_images, images[validation_index].astype(np.float32))
    np.testing.assert_array_equal(validation_labels, np.eye(3)[labels[validation_index]])
    assert make_datasets(images, labels, {**settings, "validation_split": 0.0}, 3)[1:] == (None, 40)
    # With augmentation on, batches are shifted (zeros come in at the edges) and flipped copies.
    augmented = {**settings, "augmentation": {"random_crop_padding": 1, "horizontal_flip": True}}
    shifted = epoch(make_datasets(images + 1, labels, augmented, 3)[0])[1]
    assert any((batch == 0).any() for batch, _ in shifted) and all(batch.max() <= 40 for batch, _ in shifted)
    # Flipped only where asked: with a left-to-right ramp added, each image shows which way it faces.
    ramp = images + np.arange(4, dtype=np.uint8).reshape(1, 1, 4, 1) * 50

    def facing(augmentation):
        batches = epoch(make_datasets(ramp, labels, {**settings, "augmentation": augmentation}, 3)[0])[1]
        return {bool(image[0, 0, 0] > image[0, -1, 0]) for batch, _ in batches for image in batch}

    assert facing({"horizontal_flip": True}) == {False, True}
    assert facing({}) == facing({"random_crop_padding": 0}) == {False}


def test_adam_and_sgd_follow_the_schedule_and_zero_weight_decay_is_none():
    import keras

    settings = {**TOY_SETTINGS, "learning_rate": 0.3, "weight_decay": 0.0}
    adam = make_optimizer(settings, 10)
    assert isinstance(adam, keras.optimizers.Adam) and adam.weight_decay is None
    assert float(adam.learning_rate) == pytest.approx(0.3)  # no warm-up: the peak from the first step
    adam.iterations.assign(10)
    assert float(adam.learning_rate) == pytest.approx(0.15)  # halfway down the cosine of 2 epochs of 10 steps
    sgd = make_optimizer({**settings, "optimizer": "sgd", "nesterov": False, "weight_decay": 1e-4}, 10)
    assert float(sgd.learning_rate) == pytest.approx(0.3) and not sgd.nesterov and sgd.weight_decay == 1e-4
    decayed = make_optimizer({**settings, "weight_decay": 1e-4}, 10)
    assert isinstance(decayed, keras.optimizers.Adam) and decayed.weight_decay == 1e-4


def test_a_warmup_longer_than_the_training_ends_a_step_before_the_end_and_no_steps_count_as_one():
    schedule = learning_rate_schedule({**TOY_SETTINGS, "learning_rate": 0.1, "warmup_epochs": 5, "epochs": 2}, 10)
    rates = [float(schedule(step)) for step in range(21)]
    assert rates[0] == 0.0 and rates[19] == pytest.approx(0.1)
    assert rates[10] == pytest.approx(0.1 * 10 / 19)
    single_step = learning_rate_schedule({**TOY_SETTINGS, "epochs": 1}, 0)
    assert float(single_step(0)) == pytest.approx(TOY_SETTINGS["learning_rate"])
    # One step in all has no room for a warm-up: it trains at the peak, not at 0.
    one_step = learning_rate_schedule({**TOY_SETTINGS, "epochs": 1, "warmup_epochs": 1}, 1)
    assert float(one_step(0)) == pytest.approx(TOY_SETTINGS["learning_rate"])


CONFIGURE_PROGRAM = """
import json
import tensorflow as tf
from tensorflow.python.framework.config import is_op_determinism_enabled  # no public getter
from tinyml_quant.runtime import configure_tensorflow
configure_tensorflow(3, seed=5)
print(json.dumps([tf.config.threading.get_intra_op_parallelism_threads(),
                  tf.config.threading.get_inter_op_parallelism_threads(),
                  is_op_determinism_enabled(),
                  float(tf.random.uniform([]))]))
tf.random.set_seed(5)  # what the seed should have done
print(json.dumps(float(tf.random.uniform([]))))
configure_tensorflow(1)
print(json.dumps(tf.config.threading.get_intra_op_parallelism_threads()))
"""


def test_tensorflow_gets_its_threads_and_seeded_determinism_in_a_fresh_process():
    """Thread pools can be set only before TensorFlow's first use: hence a process of its own."""
    import json

    result = run_in_fresh_process(CONFIGURE_PROGRAM)
    first, seeded, after_use = [json.loads(line) for line in result.stdout.splitlines()[-3:]]
    assert first == [3, 1, True, seeded], "seeded: three threads per op, one op at a time"
    assert after_use == 3, "a process that used TensorFlow keeps its pools"
    assert "cannot change it to 1" in result.stderr
    unseeded = run_in_fresh_process(UNSEEDED_PROGRAM)
    assert json.loads(unseeded.stdout.splitlines()[-1]) == [3, 3, False], "unseeded: ops may also run side by side"


UNSEEDED_PROGRAM = """
import json
import tensorflow as tf
from tensorflow.python.framework.config import is_op_determinism_enabled
from tinyml_quant.runtime import configure_tensorflow
configure_tensorflow(3)
print(json.dumps([tf.config.threading.get_intra_op_parallelism_threads(),
                  tf.config.threading.get_inter_op_parallelism_threads(),
                  is_op_determinism_enabled()]))
"""

# MobileNet v2 with the default recipe's weight decay and batch size, trained for five steps on
# two threads: with two inter-op threads its weights differed in every run.
REPRODUCIBILITY_PROGRAM = """
import hashlib
import numpy as np
from tinyml_quant.datasets import PreparedDataset
from tinyml_quant.training import train
rng = np.random.default_rng(0)
images = rng.integers(0, 256, (672, 32, 32, 3), dtype=np.uint8)
labels = rng.integers(0, 4, 672)
data = PreparedDataset(images[:640], labels[:640], images[640:], labels[640:], list("abcd"),
                       {"dataset": "toy", "name": "toy"})
settings = {"seed": 3, "epochs": 1, "batch_size": 128, "optimizer": "sgd", "learning_rate": 0.05,
            "momentum": 0.9, "nesterov": True, "weight_decay": 0.005, "lr_schedule": "cosine", "warmup_epochs": 0,
            "label_smoothing": 0.0, "validation_split": 0.0,
            "augmentation": {"random_crop_padding": 0, "horizontal_flip": False}}
model, _, _ = train(data, "mobilenet_v2", {"alpha": 0.35, "stem_stride": 1}, settings, threads=2)
digest = hashlib.sha256()
for weights in model.get_weights():
    digest.update(np.ascontiguousarray(weights).tobytes())
print(digest.hexdigest())
"""


def run_in_fresh_process(program):
    """``program`` run by a new Python that imports the package under test (under mutmut: the mutated copy)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tinyml_quant import training

    environment = {**os.environ, "PYTHONPATH": str(Path(training.__file__).resolve().parents[1])}
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=300, env=environment
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def test_the_same_seed_on_two_threads_gives_the_same_weights_in_every_process():
    """Same seed, same machine, same thread count: the same weights, bit for bit, from separate processes."""
    weights = [run_in_fresh_process(REPRODUCIBILITY_PROGRAM).stdout.split()[-1] for _ in range(2)]
    assert weights[0] == weights[1]
