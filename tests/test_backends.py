"""Training under each Keras backend: JAX without TensorFlow, seeded reruns, and the settings' refusals."""

import json
import sys

import pytest

from tinyml_quant.backends import BackendError, select_backend

# A training job in a process of its own (Keras reads its backend once), on a machine without
# TensorFlow where NO_TENSORFLOW is true: importing it fails there as it does on a GPU node without it.
PROGRAM = """
import hashlib, json, sys
NO_TENSORFLOW = {no_tensorflow}
if NO_TENSORFLOW:
    class NoTensorFlow:
        def find_spec(self, name, path=None, target=None):
            if name == "tensorflow" or name.startswith("tensorflow."):
                raise ImportError("no TensorFlow on this machine")
    sys.meta_path.insert(0, NoTensorFlow())
from tinyml_quant.backends import select_backend
select_backend({backend!r}, "auto", 1)
import numpy as np
from tinyml_quant.datasets import PreparedDataset
from tinyml_quant.training import train
rng = np.random.default_rng(0)
images = rng.integers(0, 256, (224, 16, 16, 3), dtype=np.uint8)
labels = rng.integers(0, 4, 224)
data = PreparedDataset(images[:192], labels[:192], images[192:], labels[192:], list("abcd"),
                       {{"dataset": "toy", "name": "toy"}})
settings = {{"seed": 3, "epochs": 2, "batch_size": 32, "optimizer": "sgd", "learning_rate": 0.05,
            "momentum": 0.9, "nesterov": True, "weight_decay": 0.005, "lr_schedule": "cosine",
            "warmup_epochs": 0.5, "label_smoothing": 0.1, "validation_split": 0.1,
            "augmentation": {{"random_crop_padding": 2, "horizontal_flip": True}}, "backend": {backend!r},
            "jit_compile": {jit_compile}}}
model, rows, metrics = train(data, "resnet_v1", {{"depth": 8, "base_filters": 4}}, settings, threads=1)
digest = hashlib.sha256()
for weights in model.get_weights():
    digest.update(np.ascontiguousarray(weights).tobytes())
import keras
print(json.dumps({{"weights": digest.hexdigest(), "backend": keras.backend.backend(), "device": metrics["device"],
                  "tensorflow_loaded": any(name.split(".")[0] == "tensorflow" for name in sys.modules),
                  "epochs": len(rows), "jit_compile": bool(model.jit_compile)}}))
"""


def run_training_process(backend, no_tensorflow=False, jit_compile=False):
    from test_training import run_in_fresh_process

    program = PROGRAM.format(backend=backend, no_tensorflow=no_tensorflow, jit_compile=jit_compile)
    result = run_in_fresh_process(program)
    return json.loads(result.stdout.splitlines()[-1])


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_the_same_seed_on_the_same_backend_trains_the_same_weights_in_every_process(backend):
    runs = [run_training_process(backend) for _ in range(2)]
    assert runs[0]["weights"] == runs[1]["weights"]
    assert runs[0]["backend"] == backend and runs[0]["device"] == "CPU" and runs[0]["epochs"] == 2


def test_xla_on_tensorflow_is_asked_for_by_the_setting_and_stays_reproducible():
    runs = [run_training_process("tensorflow", jit_compile=True) for _ in range(2)]
    assert runs[0]["jit_compile"] and runs[0]["weights"] == runs[1]["weights"]
    assert not run_training_process("tensorflow")["jit_compile"], "seeded training without the setting: no XLA"


def test_jax_trains_on_a_machine_without_tensorflow_and_its_weights_are_its_own():
    jax_run = run_training_process("jax", no_tensorflow=True)
    assert jax_run["backend"] == "jax" and not jax_run["tensorflow_loaded"]
    # The same seed on another backend: another model (their kernels and random streams differ).
    assert jax_run["weights"] != run_training_process("tensorflow")["weights"]
    # Without TensorFlow the JAX training is the one it is with TensorFlow installed beside it.
    assert jax_run["weights"] == run_training_process("jax")["weights"]


def test_an_unknown_backend_or_accelerator_names_the_setting():
    with pytest.raises(BackendError, match=r"^training.backend: unknown backend 'torch'"):
        select_backend("torch")
    with pytest.raises(BackendError, match=r"^training.accelerator: unknown accelerator 'tpu'"):
        select_backend("tensorflow", "tpu")


def test_jax_where_it_is_not_installed_names_the_setting_and_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "jax", None)  # how importlib sees a package that is not there
    with pytest.raises(BackendError, match=r"training.backend: 'jax' is not installed.*pip install -e '\.\[jax\]'"):
        select_backend("jax")


def test_a_config_asking_for_jax_where_it_is_not_installed_is_refused_before_any_job(monkeypatch):
    from tinyml_quant.config import ConfigError

    from test_config import checked

    jax_for_one = {"training": {"per_dataset": {"mnist": {"per_model": {"custom": {"backend": "jax"}}}}}}
    checked(jax_for_one)  # installed here: accepted
    monkeypatch.setitem(sys.modules, "jax", None)
    with pytest.raises(ConfigError) as refused:
        checked(jax_for_one)
    assert "training.per_dataset.mnist.per_model.custom.backend: jax is not installed" in str(refused.value)
    assert "pip install -e '.[jax]'" in str(refused.value)


def test_a_backend_other_than_the_one_keras_was_imported_with_is_refused():
    import keras

    other = "jax" if keras.backend.backend() == "tensorflow" else "tensorflow"
    with pytest.raises(BackendError, match=rf"training.backend: '{other}' was asked for.*new process"):
        select_backend(other)


def test_a_gpu_asked_for_where_there_is_none_stops_before_training_naming_the_setting():
    from tinyml_quant.training import train

    from test_training import TOY_SETTINGS, toy_dataset

    # This machine, like CI's, has no GPU (the test fails on one that has).
    with pytest.raises(BackendError, match=r"^training.accelerator: gpu was asked for, but the tensorflow backend"):
        train(toy_dataset(count=32), "custom", {"base_filters": 4}, {**TOY_SETTINGS, "accelerator": "gpu"}, 1)
