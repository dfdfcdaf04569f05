"""The paper preset is runnable: every architecture it names builds, trains a step and converts with every scheme."""

import numpy as np
import pytest
import yaml

from tinyml_quant import config as study
from tinyml_quant.conversion import convert
from tinyml_quant.evaluation import predict
from tinyml_quant.runtime import load_interpreter
from tinyml_quant.schemes import CONVERTER_SCHEMES

from conftest import REPOSITORY

PAPER = yaml.safe_load((REPOSITORY / "config" / "paper.yaml").read_text())
DEFAULTS = yaml.safe_load((REPOSITORY / "config" / "config.yaml").read_text())


# A published model (trained_models.<name>.published) is imported, not trained: the preset cannot change it.
TRAINED_HERE = [name for name in DEFAULTS["models"] if name not in DEFAULTS.get("trained_models", {})]


@pytest.mark.e2e
@pytest.mark.parametrize("model_name", TRAINED_HERE)
def test_every_paper_architecture_trains_a_step_and_converts_with_every_scheme(model_name):
    from tinyml_quant.datasets import PreparedDataset
    from tinyml_quant.training import train

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (48, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(48) % 10
    dataset = PreparedDataset(
        images[:32],
        labels[:32],
        images[32:],
        labels[32:],
        [str(i) for i in range(10)],
        {"dataset": "cifar10", "name": "random (test)"},
    )
    training = {**DEFAULTS["training"], **PAPER["training"]}
    settings = {
        **study.training_settings(training, "cifar10", model_name),
        "epochs": 1,
        "batch_size": 32,
        "validation_split": 0.0,
        "seed": DEFAULTS["seeds"][0],
        # The preset trains under JAX; this process converts with TensorFlow, which Keras was imported with.
        "backend": "tensorflow",
    }
    # Snakemake merges the preset into config.yaml: an architecture the preset leaves alone keeps its default.
    architecture = {**DEFAULTS["architectures"], **PAPER["architectures"]}.get(model_name, {})
    model, history, metrics = train(dataset, model_name, architecture, settings, threads=2)
    assert len(history) == 1 and np.isfinite(history[0]["loss"])
    representative = images[:8].astype(np.float32)
    for scheme in CONVERTER_SCHEMES:
        flatbuffer = convert(model, scheme, representative)
        outputs, _ = predict(load_interpreter(flatbuffer), images[32:], batch_size=16)
        assert outputs.shape == (16, 10) and np.isfinite(outputs).all(), scheme
