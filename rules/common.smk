# The config (its schema, then what a schema cannot check), the study folder, the
# study's grid and the wildcard constraints the stages share. Nothing here runs a job.

import os
from pathlib import Path

from snakemake.utils import validate

from tinyml_quant import config as study
from tinyml_quant.architectures import ARCHITECTURES
from tinyml_quant.conversion import CALIBRATED_SCHEMES, REFERENCE_SCHEME

from tinyml_quant.firmware import BUNDLE_FILES
from tinyml_quant.figures import (
    COST_FIGURES,
    DEVICE_FIGURES,
    DIAGNOSTIC_FIGURES,
    RESULT_FIGURES,
    TRAINING_FIGURES,
)
from tinyml_quant.recovery import RECOVERED_SCHEME

# This workflow's own folder, also where another workflow uses it as a module; the conda
# environment's post-deploy script installs the package from it (envs/tinyml.post-deploy.sh).
WORKFLOW_FOLDER = Path(workflow.current_basedir).parent
os.environ.update(TINYML_QUANT_WORKFLOW=str(WORKFLOW_FOLDER))
# The given settings over the defaults: a run reads config/config.yaml first itself (configfile:),
# a workflow that uses this one as a module passes only its own settings.
config.update(
    study.merged(study.load_yaml(WORKFLOW_FOLDER / "config" / "config.yaml"), config)
)
# One line per problem, naming the key; then Snakemake's own check of the same schema.
study.check_schema(config, study.load_yaml(WORKFLOW_FOLDER / "config" / "schema.yaml"))
validate(config, schema="../config/schema.yaml")
# Paths in the config are read from where Snakemake was started; the mirror variable wins.
config.update(study.check(study.resolve(config, Path.cwd(), WORKFLOW_FOLDER)))

# Every file of this study lives under results/<study>/: presets and user configs
# never overwrite each other's results, caches or reports.
STUDY_FOLDER = Path("results", config["study"])
PAIRS = study.study_pairs(config)
TRAINED_MODELS = sorted(config["trained_models"])
# The (dataset, model) pairs of the built-in models, which are trained here.
TRAINED_HERE = [pair for pair in PAIRS if pair[1] in ARCHITECTURES]


def study_path(relative):
    """``relative`` (a path with wildcards) inside this study's folder."""
    return str(STUDY_FOLDER / relative)


def any_of(names):
    """A wildcard constraint matching exactly ``names`` (nothing when there are none)."""
    return "|".join(names) if names else "(?!)"


wildcard_constraints:
    dataset=any_of(config["datasets"]),
    model=any_of(config["models"]),
    scheme=any_of(config["schemes"]),


def every_model(pattern, trained_here=None):
    """``pattern`` for every (dataset, model) pair of the study; other wildcards stay.

    ``trained_here``: True for the built-in models only, False for the imported ones.
    """
    pairs = [
        pair
        for pair in PAIRS
        if trained_here is None or (pair in TRAINED_HERE) == trained_here
    ]
    return expand(
        pattern,
        zip,
        allow_missing=True,
        dataset=[dataset for dataset, _ in pairs],
        model=[model for _, model in pairs],
    )


def every_variant(pattern, schemes=None):
    """``pattern`` for every dataset x model x scheme of the study."""
    return expand(every_model(pattern), scheme=schemes or config["schemes"])


def trained_settings(wildcards):
    """The training recipe of this dataset and model: shared settings, then their overrides."""
    return study.training_settings(
        config["training"], wildcards.dataset, wildcards.model
    )


# --------------------------------------------------------------- after the deployment plans (checkpoints)


def planned(dataset, model):
    """The deployment plan of one dataset and model (read once its checkpoint job has run)."""
    import json

    with open(
        checkpoints.deployment_plan.get(dataset=dataset, model=model).output.plan
    ) as handle:
        return json.load(handle)


def every_recovery(wildcards):
    """The float-fallback result of every model whose plan asks for one."""
    return [
        path
        for dataset, model in PAIRS
        if planned(dataset, model)["recover"]
        for path in expand(
            rules.recover_quantized.output.metrics, dataset=dataset, model=model
        )
    ]


def every_firmware_bundle(wildcards):
    """Every file of the bundle of every variant whose plan says TFLite Micro runs it."""
    return [
        path
        for dataset, model in PAIRS
        for path in expand(
            rules.firmware_bundle.output.files,
            dataset=dataset,
            model=model,
            scheme=planned(dataset, model)["firmware_schemes"],
        )
    ]


def figure_outputs(names, category, caption):
    """One named output per figure: the figure in every configured format."""
    return {
        name: report(
            expand(
                study_path(f"reports/figures/{name}.{{extension}}"),
                extension=config["plots"]["formats"],
            ),
            category=category,
            caption=caption,
        )
        for name in names
    }


def grid_benchmarks(wildcards):
    """The benchmark file of every job of the grid (data to firmware); a benchmark file is a
    product of its job like an output, so stage_costs runs after them and again when one reruns.
    """
    per_dataset = [rules.fetch_dataset.benchmark, rules.prepare_dataset.benchmark]
    per_variant = [
        rules.convert_model.benchmark,
        rules.evaluate_model.benchmark,
        rules.analyze_graph.benchmark,
        rules.measure_micro.benchmark,
        rules.measure_latency.benchmark,
    ]
    return [
        *expand(per_dataset, dataset=config["datasets"]),
        *every_model(rules.train_model.benchmark, trained_here=True),
        *every_model(rules.import_model.benchmark, trained_here=False),
        *every_variant(per_variant),
        *every_variant(rules.layer_error.benchmark, LAYER_ERROR_SCHEMES),
        *[
            path
            for dataset, model in PAIRS
            for path in expand(
                rules.recover_quantized.benchmark, dataset=dataset, model=model
            )
            if planned(dataset, model)["recover"]
        ],
        *[
            path
            for dataset, model in PAIRS
            for path in expand(
                rules.firmware_bundle.benchmark,
                dataset=dataset,
                model=model,
                scheme=planned(dataset, model)["firmware_schemes"],
            )
        ],
    ]
