# Evaluation: every variant with the LiteRT interpreter on the whole (prepared) test set, the int8
# variants of the calibration sweep likewise, and a published model's own int8 file as it is
# (MLPerf Tiny's: int8 input of scale 1 and zero point -128, raw pixels) on the same test images.
#
# Resources cover the default run's peaks (10,000 test images; int16x8 runs LiteRT's
# slow reference kernels) with margin: reports/stage_costs.md sets them side by side.


rule evaluate_model:
    input:
        tflite=VARIANT_FILE,
        record=VARIANT_RECORD,
        dataset=rules.prepare_dataset.output.prepared,
        reference_predictions=reference_predictions,
    output:
        metrics=study_path("evaluate/{dataset}/{model}/seed{seed}/{scheme}.json"),
        predictions=study_path(
            "evaluate/{dataset}/{model}/seed{seed}/{scheme}.predictions.npy"
        ),
    log:
        study_path("logs/evaluate_model/{dataset}/{model}/seed{seed}/{scheme}.log"),
    benchmark:
        study_path(
            "benchmarks/evaluate_model/{dataset}/{model}/seed{seed}/{scheme}.tsv"
        )
    conda:
        "../envs/tinyml.yaml"
    threads: 2
    resources:
        mem_mb=1000,
        runtime=30,
    params:
        variant=lambda wildcards: {**wildcards, "seed": int(wildcards.seed)},
        batch_size=config["evaluation"]["batch_size"],
    script:
        "../scripts/evaluate_model.py"


rule evaluate_calibration:
    input:
        tflite=rules.calibrate_int8.output.tflite,
        record=rules.calibrate_int8.output.record,
        dataset=rules.prepare_dataset.output.prepared,
        reference_predictions=reference_predictions,
    output:
        metrics=study_path(
            "calibration/{dataset}/{model}/seed{seed}/int8_{images}.metrics.json"
        ),
        predictions=study_path(
            "calibration/{dataset}/{model}/seed{seed}/int8_{images}.predictions.npy"
        ),
    log:
        study_path(
            "logs/evaluate_calibration/{dataset}/{model}/seed{seed}/{images}.log"
        ),
    benchmark:
        study_path(
            "benchmarks/evaluate_calibration/{dataset}/{model}/seed{seed}/{images}.tsv"
        )
    conda:
        "../envs/tinyml.yaml"
    threads: 2
    resources:
        mem_mb=1000,
        runtime=30,
    params:
        variant=lambda wildcards: {
            "dataset": wildcards.dataset,
            "model": wildcards.model,
            "seed": int(wildcards.seed),
            "scheme": FULL_INTEGER,
            "calibration_images": int(wildcards.images),
        },
        batch_size=config["evaluation"]["batch_size"],
    script:
        "../scripts/evaluate_model.py"


rule evaluate_published_int8:
    input:
        published=published_manifest,
        dataset=rules.prepare_dataset.output.prepared,
        # The imported model's fp32 variant, which its publisher's int8 file is compared with.
        reference_predictions=variant_of(
            REFERENCE_SCHEME, rules.evaluate_model.output.predictions
        ),
    output:
        metrics=study_path("evaluate_published/{dataset}/{model}/seed{seed}/int8.json"),
        predictions=study_path(
            "evaluate_published/{dataset}/{model}/seed{seed}/int8.predictions.npy"
        ),
    log:
        study_path("logs/evaluate_published_int8/{dataset}/{model}/seed{seed}.log"),
    benchmark:
        study_path(
            "benchmarks/evaluate_published_int8/{dataset}/{model}/seed{seed}.tsv"
        )
    wildcard_constraints:
        model=any_of([model for _, model, _ in PUBLISHED_INT8]),
    conda:
        "../envs/tinyml.yaml"
    threads: 2
    resources:
        mem_mb=1000,
        runtime=30,
    params:
        variant=lambda wildcards: {
            "dataset": wildcards.dataset,
            "model": wildcards.model,
            "seed": int(wildcards.seed),
            "scheme": FULL_INTEGER,
        },
        batch_size=config["evaluation"]["batch_size"],
    script:
        "../scripts/evaluate_published_int8.py"
