# Diagnostics of the quantized variants: where their error comes from (per layer), which
# variants go on to firmware (TFLite Micro runs them), and, for a scheme that loses accuracy,
# what raising its worst layers one step in precision wins back (tinyml_quant.recovery).
#
# deployment_plan is a checkpoint: which firmware bundles and mixed-precision variants exist
# depends on the measurements, so Snakemake plans those jobs once the plan of their model is
# written.

# The integer schemes of the study: their layers are compared with fp32's one by one.
LAYER_ERROR_SCHEMES = [
    scheme for scheme in config["schemes"] if scheme in INTEGER_SCHEMES
]
RECOVERED_SCHEMES = [
    scheme for scheme in config["schemes"] if scheme in RECOVERY_METHODS
]


rule layer_error:
    input:
        quantized=VARIANT_FILE,
        quantized_record=VARIANT_RECORD,
        reference=variant_of(REFERENCE_SCHEME),
        reference_record=variant_of(REFERENCE_SCHEME, VARIANT_RECORD),
        dataset=rules.prepare_dataset.output.prepared,
    output:
        csv=study_path("layer_error/{dataset}/{model}/seed{seed}/{scheme}.csv"),
    log:
        study_path("logs/layer_error/{dataset}/{model}/seed{seed}/{scheme}.log"),
    benchmark:
        study_path("benchmarks/layer_error/{dataset}/{model}/seed{seed}/{scheme}.tsv")
    wildcard_constraints:
        scheme=any_of(LAYER_ERROR_SCHEMES),
    conda:
        "../envs/tinyml.yaml"
    threads: 1
    resources:
        mem_mb=1500,
        runtime=10,
    params:
        images=config["diagnostics"]["layer_error_images"],
        sample_seed=config["diagnostics"]["sample_seed"],
    script:
        "../scripts/layer_error.py"


checkpoint deployment_plan:
    input:
        evaluations=expand(
            rules.evaluate_model.output.metrics,
            allow_missing=True,
            scheme=[REFERENCE_SCHEME, *RECOVERED_SCHEMES],
        ),
        micro=expand(
            rules.measure_micro.output.micro,
            allow_missing=True,
            scheme=config["schemes"],
        ),
    output:
        plan=study_path("plan/{dataset}/{model}/seed{seed}.json"),
    log:
        study_path("logs/deployment_plan/{dataset}/{model}/seed{seed}.log"),
    localrule: True
    conda:
        "../envs/tinyml.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        threshold_points=config["diagnostics"]["recovery_threshold_points"],
        always_recover=lambda wildcards: f"{wildcards.dataset}/{wildcards.model}"
        in config["diagnostics"]["always_recover"],
        recovered_schemes=RECOVERED_SCHEMES,
    script:
        "../scripts/deployment_plan.py"


rule recover_quantized:
    input:
        unpack(recovery_inputs),
    output:
        tflite=study_path("recover/{dataset}/{model}/seed{seed}/{scheme}_mixed.tflite"),
        device=study_path(
            "recover/{dataset}/{model}/seed{seed}/{scheme}_mixed.device.tflite"
        ),
        metrics=study_path("recover/{dataset}/{model}/seed{seed}/{scheme}_mixed.json"),
        # Named by the record: the report tests the mixed variant's change on the same images.
        predictions=study_path(
            "recover/{dataset}/{model}/seed{seed}/{scheme}_mixed.predictions.npy"
        ),
    log:
        study_path("logs/recover_quantized/{dataset}/{model}/seed{seed}/{scheme}.log"),
    benchmark:
        study_path(
            "benchmarks/recover_quantized/{dataset}/{model}/seed{seed}/{scheme}.tsv"
        )
    wildcard_constraints:
        scheme=any_of(RECOVERED_SCHEMES),
    conda:
        "../envs/tinyml.yaml"
    threads: 2
    resources:
        mem_mb=2500,
        runtime=20,
    params:
        settings=lambda wildcards: {
            # The LUT variant bins the int8 variant: int8's calibration.
            "calibration": study.conversion_settings(
                config,
                (
                    wildcards.scheme
                    if wildcards.scheme in CALIBRATED_SCHEMES
                    else FULL_INTEGER
                ),
            ),
            "lut": config["conversion"][LUT],
            "layers": config["diagnostics"]["recovery_layers"],
            "debug_images": config["diagnostics"]["layer_error_images"],
            "sample_seed": config["diagnostics"]["sample_seed"],
            "agreement_images": config["micro"]["agreement_images"],
            "agreement_seed": config["micro"]["sample_seed"],
            "gate": {key: config["micro"][key] for key in MICRO_GATE_KEYS},
            "batch_size": config["evaluation"]["batch_size"],
        },
        reason=lambda wildcards: planned(
            wildcards.dataset, wildcards.model, wildcards.seed
        )["recover"][wildcards.scheme],
    script:
        "../scripts/recover_quantized.py"
