# Config validation, wildcard constraints and the input functions shared by the stages.

import os

from snakemake.utils import validate

validate(config, schema="../config/schema.yaml")

# The offline mirror may come from the environment, so CI and users need not edit config.
config["data"]["mirror"] = os.environ.get(
    "TINYML_DATASET_MIRROR", config["data"]["mirror"]
)

# The schema cannot say that list items differ in one key; board names become
# column names and must be unique.
board_names = [board["name"] for board in config["boards"]]
if len(set(board_names)) != len(board_names):
    raise ValueError(
        f"config key boards: each board needs its own name, got {board_names}"
    )


wildcard_constraints:
    dataset="|".join(config["datasets"]),
    model="|".join(config["models"]),
    scheme="|".join(config["schemes"]),


def training_settings(wildcards):
    """The shared training settings with this model's overrides applied."""
    shared = {
        key: value
        for key, value in config["training"].items()
        if key not in ("augmentation", "per_model")
    }
    return {**shared, **config["training"]["per_model"].get(wildcards.model, {})}


def every_variant(path_pattern):
    """``path_pattern`` (a rule's output) for every dataset x model x scheme of the study."""
    return expand(
        path_pattern,
        dataset=config["datasets"],
        model=config["models"],
        scheme=config["schemes"],
    )


def every_model(path_pattern):
    """``path_pattern`` (a rule's output) for every dataset x model of the study."""
    return expand(path_pattern, dataset=config["datasets"], model=config["models"])


def fp32_predictions(wildcards):
    """Every variant is compared with its model's fp32 variant; fp32 itself needs nothing."""
    if wildcards.scheme == "fp32":
        return []
    return (
        f"results/evaluate/{wildcards.dataset}/{wildcards.model}/fp32.predictions.npy"
    )


def grid_benchmarks():
    """The benchmark file of every job of the grid (data, training, conversion, evaluation,
    measurement); called by rule stage_costs, once every rule is defined."""
    per_dataset = [rules.fetch_dataset.benchmark, rules.prepare_dataset.benchmark]
    per_variant = [
        rules.convert_model.benchmark,
        rules.evaluate_model.benchmark,
        rules.analyze_graph.benchmark,
        rules.measure_micro.benchmark,
        rules.measure_latency.benchmark,
    ]
    return [
        *(path for p in per_dataset for path in expand(p, dataset=config["datasets"])),
        *every_model(rules.train_model.benchmark),
        *(path for p in per_variant for path in every_variant(p)),
    ]
