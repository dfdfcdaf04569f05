# Config validation, wildcard constraints and the input functions shared by the stages.

import os

from snakemake.utils import validate

validate(config, schema="../config/schema.yaml")

# The offline mirror may come from the environment, so CI and users need not edit config.
config["data"]["mirror"] = os.environ.get(
    "TINYML_DATASET_MIRROR", config["data"]["mirror"]
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


def evaluation_outputs(wildcards=None):
    return expand(
        "results/evaluate/{dataset}/{model}/{scheme}.json",
        dataset=config["datasets"],
        model=config["models"],
        scheme=config["schemes"],
    )


def training_metric_outputs(wildcards=None):
    return expand(
        "results/train/{dataset}/{model}/test_metrics.json",
        dataset=config["datasets"],
        model=config["models"],
    )


def fp32_predictions(wildcards):
    """Every variant is compared with its model's fp32 variant; fp32 itself needs nothing."""
    if wildcards.scheme == "fp32":
        return []
    return (
        f"results/evaluate/{wildcards.dataset}/{wildcards.model}/fp32.predictions.npy"
    )
