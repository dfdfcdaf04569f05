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
    "label_smoothing": 0.0,
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
    import tensorflow as tf

    images = np.arange(8 * 5 * 5 * 1, dtype=np.float32).reshape(8, 5, 5, 1) + 1
    cropped = augment_batch(tf.constant(images), tf.constant([3, 7], tf.int64), 2, False).numpy()
    for image, result in zip(images, cropped):
        padded = np.pad(image, ((2, 2), (2, 2), (0, 0)))
        crops = [padded[y : y + 5, x : x + 5] for y in range(5) for x in range(5)]
        assert any(np.array_equal(crop, result) for crop in crops)
    assert not all(np.array_equal(a, b) for a, b in zip(images, cropped)), "no image was shifted"
    flipped = augment_batch(tf.constant(images), tf.constant([3, 7], tf.int64), 0, True).numpy()
    kinds = [np.array_equal(f, i) or np.array_equal(f, i[:, ::-1]) for f, i in zip(flipped, images)]
    assert all(kinds)
    assert any(np.array_equal(f, i[:, ::-1]) for f, i in zip(flipped, images))
    again = augment_batch(tf.constant(images), tf.constant([3, 7], tf.int64), 2, True).numpy()
    np.testing.assert_array_equal(again, augment_batch(tf.constant(images), tf.constant([3, 7], tf.int64), 2, True))


def test_same_seed_trains_the_same_model():
    toy = toy_dataset()
    predictions = []
    for _ in range(2):
        model, history, metrics = train(toy, "custom", {"base_filters": 4}, TOY_SETTINGS, 1)
        predictions.append(model.predict(toy.x_test.astype("float32"), verbose=0))
    np.testing.assert_array_equal(predictions[0], predictions[1])
    assert [row["epoch"] for row in history] == [1, 2] and "val_accuracy" in history[0]
    assert metrics["final_epoch"] == history[-1] and metrics["source"] == "trained here"


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
    toy = toy_dataset(count=20)
    with pytest.raises(ValueError, match=r"training.batch_size \(32\) is larger than the 18 training images"):
        train(toy, "custom", {"base_filters": 4}, TOY_SETTINGS, 1)
