# The config (its schema, then what a schema cannot check), the study folder, the
# study's grid and the wildcard constraints the stages share. Nothing here runs a job.

import os
from pathlib import Path

from snakemake.utils import validate

from tinyml_quant import config as study
from tinyml_quant.architectures import ARCHITECTURES
from tinyml_quant.schemes import (
    CALIBRATED_SCHEMES,
    CONVERTER_SCHEMES,
    EDGE_QUANTIZER_SCHEMES,
    FULL_INTEGER,
    INT4,
    INTEGER_SCHEMES,
    LUT,
    QAT_SCHEMES,
    REFERENCE_SCHEME,
    base_scheme,
    calibration_scheme,
)

from tinyml_quant.firmware import BUNDLE_FILES
from tinyml_quant.micro import GATE_KEYS as MICRO_GATE_KEYS
from tinyml_quant.figures import (
    COST_FIGURES,
    DEVICE_FIGURES,
    DIAGNOSTIC_FIGURES,
    LADDER_FIGURES,
    RESULT_FIGURES,
    TRAINING_FIGURES,
    tradeoff_figure_names,
)
from tinyml_quant.recovery import RECOVERY_METHODS

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
# Every (dataset, model, seed) of the study: each built-in model is trained once per seed.
INSTANCES = study.study_instances(config)
TRAINED_MODELS = sorted(config["trained_models"])
# The instances of the built-in models, which are trained here.
TRAINED_HERE = [instance for instance in INSTANCES if instance[1] in ARCHITECTURES]
# The published models the study imports (fetched from their pinned commits or the model mirror),
# and the instances of those that come with their publisher's own int8 file, evaluated as it is.
PUBLISHED_IN_STUDY = sorted(
    {study.published_model(config, model) for model in TRAINED_MODELS} - {None}
)
PUBLISHED_INT8 = study.published_int8_instances(config)


def study_path(relative):
    """``relative`` (a path with wildcards) inside this study's folder."""
    return str(STUDY_FOLDER / relative)


# Every variant's file and, beside it, its conversion record (tinyml_quant.variants); for the LUT
# scheme the file is the binned model, which LiteRT runs, and DEVICE_FILE the compressed one.
VARIANT_FILE = study_path("convert/{dataset}/{model}/seed{seed}/{scheme}.tflite")
VARIANT_RECORD = study_path("convert/{dataset}/{model}/seed{seed}/{scheme}.json")
COMPRESSED_FILE = study_path("compress/{dataset}/{model}/seed{seed}/{scheme}.tflite")
# The int8 variants of the calibration sweep, one per number of calibration images.
CALIBRATION_FILE = study_path(
    "calibration/{dataset}/{model}/seed{seed}/int8_{images}.tflite"
)
CALIBRATION_SIZES = config["conversion"]["calibration_sweep"]
# The LUT-compressed schemes of the study: a device stores their compressed file.
LUT_SCHEMES = [scheme for scheme in config["schemes"] if base_scheme(scheme) == LUT]


def variant_of(scheme, pattern=VARIANT_FILE):
    """``pattern`` for ``scheme``, the other wildcards left as they are."""
    (path,) = expand(pattern, allow_missing=True, scheme=scheme)
    return path


def one(paths):
    """The single path of an ``expand``."""
    (path,) = paths
    return path


def device_file(wildcards, record=False):
    """What a device stores of this variant: the compressed file for the LUT scheme, else the variant file."""
    pattern = COMPRESSED_FILE if base_scheme(wildcards.scheme) == LUT else VARIANT_FILE
    suffix = ".json" if record else ".tflite"
    return one(expand(pattern.removesuffix(".tflite") + suffix, **wildcards))


def device_record(wildcards):
    return device_file(wildcards, record=True)


def any_of(names):
    """A wildcard constraint matching exactly ``names`` (nothing when there are none)."""
    return "|".join(names) if names else "(?!)"


wildcard_constraints:
    dataset=any_of(config["datasets"]),
    model=any_of(config["models"]),
    seed=any_of(map(str, config["seeds"])),
    scheme=any_of(config["schemes"]),


def every_model(pattern, trained_here=None):
    """``pattern`` for every (dataset, model, seed) of the study; other wildcards stay.

    ``trained_here``: True for the built-in models only, False for the imported ones.
    """
    instances = [
        instance
        for instance in INSTANCES
        if trained_here is None or (instance in TRAINED_HERE) == trained_here
    ]
    return expand(
        pattern,
        zip,
        allow_missing=True,
        dataset=[dataset for dataset, _, _ in instances],
        model=[model for _, model, _ in instances],
        seed=[seed for _, _, seed in instances],
    )


def every_published_int8(pattern):
    """``pattern`` for every instance whose published model has its own int8 file."""
    return expand(
        pattern,
        zip,
        dataset=[dataset for dataset, _, _ in PUBLISHED_INT8],
        model=[model for _, model, _ in PUBLISHED_INT8],
        seed=[seed for _, _, seed in PUBLISHED_INT8],
    )


def published_manifest(wildcards):
    """The manifest of the published model this trained model is imported from."""
    return one(
        expand(
            rules.fetch_published_model.output.manifest,
            published=study.published_model(config, wildcards.model),
        )
    )


def trained_model_source(wildcards):
    """What a trained model is imported from: its file, or its published model's manifest."""
    if study.published_model(config, wildcards.model):
        return published_manifest(wildcards)
    return config["trained_models"][wildcards.model]["file"]


def every_variant(pattern, schemes=None):
    """``pattern`` for every dataset x model x scheme of the study."""
    return expand(
        every_model(pattern),
        allow_missing=True,
        scheme=config["schemes"] if schemes is None else schemes,
    )


def trained_settings(wildcards):
    """The training recipe of this dataset, model and seed: shared settings, then their overrides."""
    return {
        **study.training_settings(
            config["training"], wildcards.dataset, wildcards.model
        ),
        "seed": int(wildcards.seed),
    }


# --------------------------------------------------------------- after the deployment plans (checkpoints)


def planned(dataset, model, seed):
    """The deployment plan of one instance (read once its checkpoint job has run)."""
    import json

    plan = checkpoints.deployment_plan.get(dataset=dataset, model=model, seed=seed)
    with open(plan.output.plan) as handle:
        return json.load(handle)


def every_planned(pattern, key):
    """``pattern`` for every instance and every scheme its plan lists under ``key``."""
    return [
        path
        for dataset, model, seed in INSTANCES
        for path in expand(
            pattern,
            dataset=dataset,
            model=model,
            seed=seed,
            scheme=list(planned(dataset, model, seed)[key]),
        )
    ]


def every_recovery(wildcards, pattern=None):
    """The mixed-precision result of every scheme whose instance's plan asks for one."""
    return every_planned(pattern or rules.recover_quantized.output.metrics, "recover")


def every_recovery_prediction(wildcards):
    """The per-image predictions of every mixed-precision variant (named by its record)."""
    return every_recovery(wildcards, rules.recover_quantized.output.predictions)


def every_firmware_bundle(wildcards):
    """Every file of the bundle of every variant whose plan says TFLite Micro runs it."""
    return every_planned(rules.firmware_bundle.output.files, "firmware_schemes")


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
        rules.evaluate_model.benchmark,
        rules.analyze_graph.benchmark,
        rules.measure_micro.benchmark,
        rules.measure_latency.benchmark,
    ]
    schemes_of = lambda tool: [scheme for scheme in config["schemes"] if scheme in tool]
    lut = [rules.bin_weights.benchmark] if LUT in config["schemes"] else []
    qat = [rules.finetune_qat.benchmark, rules.convert_qat.benchmark]
    calibration = [rules.calibrate_int8.benchmark, rules.evaluate_calibration.benchmark]
    return [
        *expand(per_dataset, dataset=config["datasets"]),
        *every_model(rules.train_model.benchmark, trained_here=True),
        *expand(rules.fetch_published_model.benchmark, published=PUBLISHED_IN_STUDY),
        *every_model(rules.import_model.benchmark, trained_here=False),
        *every_published_int8(rules.evaluate_published_int8.benchmark),
        *every_variant(rules.convert_model.benchmark, schemes_of(CONVERTER_SCHEMES)),
        *every_variant(
            rules.quantize_model.benchmark, schemes_of(EDGE_QUANTIZER_SCHEMES)
        ),
        *every_model(lut),
        *every_variant(rules.compress_model.benchmark, LUT_SCHEMES),
        *every_variant(qat, QAT_IN_STUDY),
        *expand(every_model(calibration), images=CALIBRATION_SIZES),
        *every_variant(per_variant),
        *every_variant(rules.layer_error.benchmark, LAYER_ERROR_SCHEMES),
        *expand(
            every_variant(rules.estimate_npu.benchmark, NPU_SCHEMES), board=NPU_BOARDS
        ),
        *every_recovery(wildcards, rules.recover_quantized.benchmark),
        *every_planned(rules.firmware_bundle.benchmark, "firmware_schemes"),
    ]


def reference_predictions(wildcards):
    """The fp32 variant's predictions, which every other variant is compared with; none for fp32 itself."""
    if wildcards.get("scheme") == REFERENCE_SCHEME:
        return []
    return expand(
        rules.evaluate_model.output.predictions,
        dataset=wildcards.dataset,
        model=wildcards.model,
        seed=wildcards.seed,
        scheme=REFERENCE_SCHEME,
    )


def recovery_inputs(wildcards):
    """What the mixed variant of this scheme starts from (recovery.mixed_variant) and is compared with."""
    variant = {
        "dataset": wildcards.dataset,
        "model": wildcards.model,
        "seed": wildcards.seed,
    }
    inputs = {
        "dataset": one(
            expand(rules.prepare_dataset.output.prepared, dataset=wildcards.dataset)
        ),
        "fp32": one(expand(VARIANT_FILE, **variant, scheme=REFERENCE_SCHEME)),
        "fp32_record": one(expand(VARIANT_RECORD, **variant, scheme=REFERENCE_SCHEME)),
        "quantized_metrics": one(
            expand(
                rules.evaluate_model.output.metrics, **variant, scheme=wildcards.scheme
            )
        ),
        "reference_metrics": one(
            expand(
                rules.evaluate_model.output.metrics, **variant, scheme=REFERENCE_SCHEME
            )
        ),
        "quantized_device_record": device_record(wildcards),
        # Its reason comes from the plan: a job run elsewhere (a cluster node) reads the
        # checkpoint's output again, so it must be an input.
        "plan": one(expand(rules.deployment_plan.output.plan, **variant)),
    }
    if wildcards.scheme == FULL_INTEGER:
        inputs["model"] = one(expand(rules.train_model.output.model, **variant))
    else:
        inputs["layer_errors"] = one(
            expand(rules.layer_error.output.csv, **variant, scheme=wildcards.scheme)
        )
    if wildcards.scheme == LUT:
        inputs["int8"] = one(expand(VARIANT_FILE, **variant, scheme=FULL_INTEGER))
        inputs["int8_record"] = one(
            expand(VARIANT_RECORD, **variant, scheme=FULL_INTEGER)
        )
    return inputs


def rule_budgets():
    """Each rule's declared mem_mb and runtime (minutes), where they are plain numbers."""
    budgets = {}
    for each in workflow.rules:
        declared = {}
        for key in ("mem_mb", "runtime"):
            # Snakemake 9 wraps each value in a Resource; `raw` is the number as written.
            value = getattr(each.resources.get(key), "raw", each.resources.get(key))
            if isinstance(value, int):
                declared[key] = value
        if declared:
            budgets[each.name] = declared
    return budgets
