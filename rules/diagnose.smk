# Diagnostics of the quantized variants: where their error comes from (per layer),
# which variants go on to firmware (TFLite Micro runs them), and, for an int8 variant
# that loses accuracy, what keeping its worst layers in float wins back (the converter's
# own deny-list, which applies to full-integer quantization: RECOVERED_SCHEME).
#
# deployment_plan is a checkpoint: which firmware bundles and float-fallback
# conversions exist depends on the measurements, so Snakemake plans those jobs
# once the plan of their model is written.

LAYER_ERROR_SCHEMES = [
    scheme for scheme in config["schemes"] if scheme in CALIBRATED_SCHEMES
]
RECOVERED_SCHEMES = [
    scheme for scheme in config["schemes"] if scheme == RECOVERED_SCHEME
]


rule layer_error:
    input:
        quantized=rules.convert_model.output.tflite,
        reference=expand(
            rules.convert_model.output.tflite,
            allow_missing=True,
            scheme=REFERENCE_SCHEME,
        ),
        dataset=rules.prepare_dataset.output.prepared,
    output:
        csv=study_path("layer_error/{dataset}/{model}/{scheme}.csv"),
    log:
        study_path("logs/layer_error/{dataset}/{model}/{scheme}.log"),
    benchmark:
        study_path("benchmarks/layer_error/{dataset}/{model}/{scheme}.tsv")
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
        plan=study_path("plan/{dataset}/{model}.json"),
    log:
        study_path("logs/deployment_plan/{dataset}/{model}.log"),
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
        model=rules.train_model.output.model,
        dataset=rules.prepare_dataset.output.prepared,
        quantized=expand(
            rules.evaluate_model.output.metrics,
            allow_missing=True,
            scheme=RECOVERED_SCHEME,
        ),
        reference=expand(
            rules.evaluate_model.output.metrics,
            allow_missing=True,
            scheme=REFERENCE_SCHEME,
        ),
        # Its reason comes from the plan: a job run elsewhere (a cluster node)
        # reads the checkpoint's output again, so it must be an input.
        plan=rules.deployment_plan.output.plan,
    output:
        tflite=study_path(
            f"recover/{{dataset}}/{{model}}/{RECOVERED_SCHEME}_float_fallback.tflite"
        ),
        metrics=study_path(
            f"recover/{{dataset}}/{{model}}/{RECOVERED_SCHEME}_float_fallback.json"
        ),
    log:
        study_path("logs/recover_quantized/{dataset}/{model}.log"),
    benchmark:
        study_path("benchmarks/recover_quantized/{dataset}/{model}.tsv")
    conda:
        "../envs/tinyml.yaml"
    threads: 2
    resources:
        mem_mb=2500,
        runtime=20,
    params:
        calibration=config["conversion"][RECOVERED_SCHEME],
        float_layers=config["diagnostics"]["recovery_float_layers"],
        debug_images=config["diagnostics"]["layer_error_images"],
        sample_seed=config["diagnostics"]["sample_seed"],
        agreement_images=config["micro"]["agreement_images"],
        batch_size=config["evaluation"]["batch_size"],
        reason=lambda wildcards: planned(wildcards.dataset, wildcards.model)["reason"],
    script:
        "../scripts/recover_quantized.py"
