# Quantization-aware training (tinyml_quant.qat): for each QAT scheme listed, the trained model
# fine-tuned with its post-training scheme's weights simulated, where that scheme loses more than
# qat.threshold_points; then its variant made by that scheme's tool (tinyml_quant.qat_stage). A
# variant not fine-tuned is marked not converted with the reason, and every later stage goes on.
#
# Resources: reports/stage_costs.md sets them beside the default run's peaks; the end-to-end
# tests check every job against them.

QAT_IN_STUDY = [scheme for scheme in config["schemes"] if scheme in QAT_SCHEMES]


rule finetune_qat:
    input:
        model=rules.train_model.output.model,
        dataset=rules.prepare_dataset.output.prepared,
        reference=variant_of(REFERENCE_SCHEME, rules.evaluate_model.output.metrics),
        post_training=lambda wildcards: expand(
            rules.evaluate_model.output.metrics,
            dataset=wildcards.dataset,
            model=wildcards.model,
            seed=wildcards.seed,
            scheme=QAT_SCHEMES[wildcards.scheme],
        ),
    output:
        model=study_path("qat/{dataset}/{model}/seed{seed}/{scheme}.keras"),
        record=study_path("qat/{dataset}/{model}/seed{seed}/{scheme}.json"),
    log:
        study_path("logs/finetune_qat/{dataset}/{model}/seed{seed}/{scheme}.log"),
    benchmark:
        study_path("benchmarks/finetune_qat/{dataset}/{model}/seed{seed}/{scheme}.tsv")
    wildcard_constraints:
        scheme=any_of(QAT_IN_STUDY),
    conda:
        "../envs/tinyml.yaml"
    # One thread, as training: two fine-tunings side by side finish sooner.
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        training=trained_settings,
        qat=config["qat"],
        values_per_channel=config["conversion"][LUT]["values_per_channel"],
    script:
        "../scripts/finetune_qat.py"


rule convert_qat:
    input:
        model=rules.finetune_qat.output.model,
        qat_record=rules.finetune_qat.output.record,
        dataset=rules.prepare_dataset.output.prepared,
    output:
        tflite=VARIANT_FILE,
        record=VARIANT_RECORD,
    log:
        study_path("logs/convert_qat/{dataset}/{model}/seed{seed}/{scheme}.log"),
    benchmark:
        study_path("benchmarks/convert_qat/{dataset}/{model}/seed{seed}/{scheme}.tsv")
    wildcard_constraints:
        scheme=any_of(QAT_IN_STUDY),
    conda:
        "../envs/tinyml.yaml"
    threads: 1
    resources:
        mem_mb=2500,
        runtime=10,
    params:
        # Calibrated as its post-training scheme (the LUT scheme as the int8 variant it bins).
        calibration=lambda wildcards: {
            key: config["conversion"][calibration_scheme(wildcards.scheme)][key]
            for key in ("calibration_images", "calibration_seed")
        },
        values_per_channel=config["conversion"][LUT]["values_per_channel"],
    script:
        "../scripts/convert_qat.py"
