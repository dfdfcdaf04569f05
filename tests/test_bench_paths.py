"""The benchmark's training paths: issue 39's adoption rule on hand-computed cases, a path trained as the bench does."""

import ast
import os

import numpy as np
import pytest

from tools.bench import paths
from tools.bench.paths import Measured, decide, path_of, seed_ranges
from tools.workflow import REPOSITORY

TODAY = "TensorFlow"


def results_of(rates, accuracies=None, identical=True):
    """``{(model, path): Measured}`` from ``{path: {model: images/s}}``, accuracy 0.50 unless given."""
    accuracies = accuracies or {}
    return {
        (model, path): Measured(rate, accuracies.get((model, path), 0.50), identical)
        for path, by_model in rates.items()
        for model, rate in by_model.items()
    }


EQUAL = {"a": 1, "b": 1}


def test_a_path_129_hundredths_as_fast_is_not_adopted():
    # Today 100 images/s on both models, JAX 129: 0.02 s over 2/129 s = 1.29x.
    decision = decide(results_of({TODAY: {"a": 100, "b": 100}, "JAX": {"a": 129, "b": 129}}), TODAY, 0.02, EQUAL)
    assert decision.speedups["JAX"] == pytest.approx(1.29)
    assert not decision.adopted and decision.path == TODAY
    assert decision.reasons["JAX"] == "1.29x, under 1.3x"
    assert decision.sentence.startswith("Keep today's TensorFlow: no other path meets the rule (JAX: 1.29x")


def test_a_path_131_hundredths_as_fast_with_accuracy_within_the_spread_is_adopted():
    accuracies = {("a", "JAX"): 0.51, ("b", "JAX"): 0.49}  # one point either way, spread two
    results = results_of({TODAY: {"a": 100, "b": 100}, "JAX": {"a": 131, "b": 131}}, accuracies)
    decision = decide(results, TODAY, 0.02, EQUAL)
    assert decision.adopted and decision.path == "JAX" and decision.reasons["JAX"] == ""
    assert decision.sentence.startswith(
        "Adopt JAX (training.backend: jax, training.jit_compile: false, training.precision: float32): "
        "it trains the default study 1.31x as fast"
    )


def test_a_faster_path_whose_accuracy_is_outside_the_spread_is_not_adopted():
    # Twice as fast, but model b loses three points where the seeds spread two.
    accuracies = {("a", "JAX"): 0.50, ("b", "JAX"): 0.47}
    decision = decide(
        results_of({TODAY: {"a": 100, "b": 100}, "JAX": {"a": 200, "b": 200}}, accuracies), TODAY, 0.02, EQUAL
    )
    assert not decision.adopted and decision.path == TODAY
    assert (
        decision.reasons["JAX"]
        == "2.00x, but accuracy -3.0 points on b against today's, outside the seeds' spread (2.0 points)"
    )
    # Three points better is outside the spread too: the study's figures would move as much.
    accuracies = {("a", "JAX"): 0.53, ("b", "JAX"): 0.50}
    decision = decide(
        results_of({TODAY: {"a": 100, "b": 100}, "JAX": {"a": 200, "b": 200}}, accuracies), TODAY, 0.02, EQUAL
    )
    assert not decision.adopted and "+3.0 points on a" in decision.reasons["JAX"]


def test_the_speedup_is_the_studys_training_time_each_model_weighted_by_its_epochs():
    rates = {TODAY: {"a": 100, "b": 100}, "JAX": {"a": 200, "b": 100}}
    # Equal weights: (1/100 + 1/100) / (1/200 + 1/100) = 0.020 / 0.015 = 4/3.
    assert decide(results_of(rates), TODAY, 0.02, EQUAL).speedups["JAX"] == pytest.approx(4 / 3)
    assert decide(results_of(rates), TODAY, 0.02, EQUAL).path == "JAX"
    # b trains three times as many epochs: (1/100 + 3/100) / (1/200 + 3/100) = 0.040 / 0.035 = 8/7.
    weighted = decide(results_of(rates), TODAY, 0.02, {"a": 1, "b": 3})
    assert weighted.speedups["JAX"] == pytest.approx(8 / 7) and weighted.path == TODAY


def test_the_fastest_adoptable_path_wins_and_reruns_must_give_identical_weights():
    rates = {
        TODAY: {"a": 100, "b": 100},
        "TensorFlow + XLA": {"a": 140, "b": 140},
        "JAX": {"a": 150, "b": 150},
        "JAX, mixed_bfloat16": {"a": 300, "b": 300},
    }
    results = results_of(rates)
    results["a", "JAX, mixed_bfloat16"] = Measured(300, 0.50, False)
    decision = decide(results, TODAY, 0.02, EQUAL)
    assert decision.path == "JAX"
    assert decision.reasons["JAX, mixed_bfloat16"] == "seeded reruns gave different weights on a"
    assert decision.reasons["TensorFlow + XLA"] == ""
    assert decision.reasons["TensorFlow, mixed_bfloat16"] == "not measured on a, b"


def test_without_the_seeds_study_todays_path_stays_and_the_decision_says_so():
    decision = decide(results_of({TODAY: {"a": 100, "b": 100}, "JAX": {"a": 200, "b": 200}}), TODAY, None, EQUAL)
    assert not decision.adopted
    assert decision.reasons["JAX"] == "2.00x, but its accuracy cannot be judged without the seeds' spread"
    assert decision.sentence.endswith(
        "The seeds study's results are absent, so there is no spread to judge accuracy by."
    )
    with pytest.raises(ValueError, match=r"today's path \(TensorFlow\) was not measured on b"):
        decide(results_of({TODAY: {"a": 100}}), TODAY, 0.02, EQUAL)


def test_the_seeds_spread_is_each_pairs_fp32_accuracy_range_over_its_seeds(tmp_path):
    rows = [
        {"dataset": "cifar10", "model": "resnet8", "seed": "42", "scheme": "fp32", "accuracy": "0.80"},
        {"dataset": "cifar10", "model": "resnet8", "seed": "43", "scheme": "fp32", "accuracy": "0.83"},
        {"dataset": "cifar10", "model": "resnet8", "seed": "44", "scheme": "fp32", "accuracy": "0.81"},
        {"dataset": "cifar10", "model": "resnet8", "seed": "44", "scheme": "int8", "accuracy": "0.50"},
        {"dataset": "cifar10", "model": "custom", "seed": "42", "scheme": "fp32", "accuracy": "0.70"},
    ]
    assert seed_ranges(rows) == {"cifar10/resnet8": pytest.approx(0.03)}
    assert paths.read_seed_ranges(tmp_path / "absent.csv") is None


def test_paths_are_named_by_their_settings_and_todays_is_the_default_configs():
    from tinyml_quant.config import load_yaml

    assert path_of(load_yaml(REPOSITORY / "config" / "config.yaml")["training"]) == TODAY
    assert path_of({"backend": "jax", "jit_compile": False, "precision": "mixed_bfloat16"}) == "JAX, mixed_bfloat16"
    with pytest.raises(ValueError, match="none of the benchmark's paths"):
        path_of({"backend": "jax", "jit_compile": True, "precision": "float32"})
    assert len(paths.PATHS) == 6
    recipe = {"batch_size": 128, "epochs": 30, "validation_split": 0.05, "backend": "tensorflow", "seed": 1}
    settings = paths.path_settings(recipe, "TensorFlow + XLA, mixed_bfloat16", epochs=3, seed=42)
    assert settings == {
        "batch_size": 128,
        "epochs": 3,
        "validation_split": 0.0,
        "backend": "tensorflow",
        "jit_compile": True,
        "precision": "mixed_bfloat16",
        "accelerator": "cpu",
        "seed": 42,
    }
    jax = paths.environment("JAX", 2, {})
    assert jax["KERAS_BACKEND"] == "jax" and jax["JAX_PLATFORMS"] == "cpu"
    assert "intra_op_parallelism_threads=2" in jax["XLA_FLAGS"]
    assert paths.environment(TODAY, 2, {}) == {"KERAS_BACKEND": "tensorflow", "CUDA_VISIBLE_DEVICES": "-1"}


def test_the_section_shows_images_per_second_identical_weights_and_the_decision():
    results = results_of({TODAY: {"a": 100, "b": 50}, "JAX": {"a": 150, "b": 40}})
    results["b", "JAX"] = Measured(40, 0.45, False)
    decision = decide(results, TODAY, 0.02, EQUAL)
    text = paths.section(results, decision, ["a", "b"], TODAY, "absent", "2 steps.")
    assert "| model | TensorFlow | JAX |" in text
    assert "| a | 100 (1.00x) | 150 (1.50x) |" in text and "| b | 50 (1.00x) | 40 (0.80x) |" in text
    # (1/100 + 1/50) / (1/150 + 1/40) = 0.03 / 0.031667 = 0.95
    assert "| default study (CIFAR-10) | 1.00x | 0.95x |" in text
    assert "| b | JAX | 45.0 | -5.0 | NO |" in text
    assert "JPEG quality-75" in text and "**Decision**" in text and decision.sentence in text


def test_the_benchmark_assigns_no_attribute_of_a_module_it_imports():
    """What the benchmark varies is a setting of ``train``; none of the library's functions is swapped."""
    for path in sorted((REPOSITORY / "tools" / "bench").glob("*.py")):
        tree = ast.parse(path.read_text())
        modules = {
            (alias.asname or alias.name).split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)
            for alias in node.names
        }
        for node in ast.walk(tree):
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            for target in targets:
                if isinstance(target, ast.Attribute) and getattr(target.value, "id", None) in modules:
                    pytest.fail(f"{path.name}:{node.lineno} assigns {target.value.id}.{target.attr}")


def test_a_path_trains_in_its_own_child_under_its_backend(tmp_path):
    """The bench's run of one path: ``train`` under the JAX backend, chosen by the child's environment alone."""
    from tinyml_quant.datasets import save_prepared
    from tools.bench import training
    from tools.bench.machine import in_child

    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (96, 16, 16, 1), dtype=np.uint8), rng.integers(0, 4, 96)
    data = tmp_path / "toy.npz"
    save_prepared(
        data, images[:64], labels[:64], images[64:], labels[64:], list("abcd"), {"dataset": "toy", "name": "toy"}
    )
    recipe = {
        "batch_size": 32,
        "optimizer": "sgd",
        "learning_rate": 0.05,
        "momentum": 0.9,
        "nesterov": True,
        "weight_decay": 0.005,
        "lr_schedule": "cosine",
        "warmup_epochs": 1,
        "label_smoothing": 0.0,
        "validation_split": 0.05,
        "augmentation": {"random_crop_padding": 2, "horizontal_flip": True},
        "backend": "tensorflow",
        "jit_compile": False,
        "precision": "float32",
    }
    run = in_child(
        training.train_step,
        tmp_path / "child.log",
        paths.environment("JAX", 1, os.environ),
        kind="workflow",
        dataset_path=str(data),
        model_name="custom",
        architecture={"base_filters": 4},
        settings=paths.path_settings(recipe, "JAX", epochs=2, seed=3),
        threads=1,
        train_images=64,
        test_images=32,
    )
    assert run["backend"] == "jax" and len(run["epoch_wall_s"]) == 2 and run["train_images"] == 64
    assert 0.0 <= run["test_accuracy"] <= 1.0 and len(run["weights_sha256"]) == 64
