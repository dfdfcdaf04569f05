# Conversion: each model to one .tflite file per scheme, each its own job, with the conversion
# record beside it (the tool, its settings, or why it could not make the variant: variants.py).
# The TFLite converter makes its schemes from the trained model; the AI Edge Quantizer its own from
# the fp32 file; the LUT variant is the int8 file with its weights binned, then compressed by
# TFLite Micro's compressor (the compressed file is what a device stores).
#
# Resources cover the default run's peaks with margin: reports/stage_costs.md
# sets them side by side, and the end-to-end tests check every job against them.


rule convert_model:
    input:
        model=rules.train_model.output.model,
        dataset=rules.prepare_dataset.output.prepared,
    output:
        tflite=VARIANT_FILE,
        record=VARIANT_RECORD,
    log:
        study_path("logs/convert_model/{dataset}/{model}/seed{seed}/{scheme}.log"),
    benchmark:
        study_path("benchmarks/convert_model/{dataset}/{model}/seed{seed}/{scheme}.tsv")
    wildcard_constraints:
        scheme=any_of(CONVERTER_SCHEMES),
    conda:
        "../envs/tinyml.yaml"
    threads: 1
    resources:
        mem_mb=2500,
        runtime=10,
    params:
        scheme=lambda wildcards: wildcards.scheme,
        # Only this scheme's settings, so changing one scheme reruns only its conversions.
        settings=lambda wildcards: study.conversion_settings(config, wildcards.scheme),
        # A model from outside the workflow converts in a child process: a converter crash marks the variant.
        isolated=lambda wildcards: study.is_trained_model(config, wildcards.model),
    script:
        "../scripts/convert_model.py"


rule quantize_model:
    input:
        fp32=variant_of(REFERENCE_SCHEME),
        fp32_record=variant_of(REFERENCE_SCHEME, VARIANT_RECORD),
        dataset=rules.prepare_dataset.output.prepared,
    output:
        tflite=VARIANT_FILE,
        record=VARIANT_RECORD,
    log:
        study_path("logs/quantize_model/{dataset}/{model}/seed{seed}/{scheme}.log"),
    benchmark:
        study_path(
            "benchmarks/quantize_model/{dataset}/{model}/seed{seed}/{scheme}.tsv"
        )
    wildcard_constraints:
        scheme=any_of(EDGE_QUANTIZER_SCHEMES),
    conda:
        "../envs/tinyml.yaml"
    threads: 1
    resources:
        mem_mb=2500,
        runtime=10,
    params:
        # int4_octav and int4_mse: int4's settings with their own weight algorithm.
        settings=lambda wildcards: study.conversion_settings(config, wildcards.scheme),
    script:
        "../scripts/quantize_model.py"


rule bin_weights:
    input:
        int8=variant_of(FULL_INTEGER),
        int8_record=variant_of(FULL_INTEGER, VARIANT_RECORD),
    output:
        tflite=variant_of(LUT),
        record=variant_of(LUT, VARIANT_RECORD),
    log:
        study_path("logs/bin_weights/{dataset}/{model}/seed{seed}.log"),
    benchmark:
        study_path("benchmarks/bin_weights/{dataset}/{model}/seed{seed}.tsv")
    conda:
        "../envs/tinyml.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        settings=config["conversion"][LUT],
    script:
        "../scripts/bin_weights.py"


rule compress_model:
    input:
        binned=VARIANT_FILE,
        binned_record=VARIANT_RECORD,
        dataset=rules.prepare_dataset.output.prepared,
    output:
        tflite=COMPRESSED_FILE,
        record=COMPRESSED_FILE.removesuffix(".tflite") + ".json",
    log:
        study_path("logs/compress_model/{dataset}/{model}/seed{seed}/{scheme}.log"),
    benchmark:
        study_path(
            "benchmarks/compress_model/{dataset}/{model}/seed{seed}/{scheme}.tsv"
        )
    wildcard_constraints:
        # int8_lut's binned file, and int8_lut_qat's (rules/qat.smk).
        scheme=any_of(LUT_SCHEMES),
    conda:
        "../envs/tinyml.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        settings=config["conversion"][LUT],
        # The decoding is checked on TFLite Micro's own test sample.
        sample_images=config["micro"]["agreement_images"],
        sample_seed=config["micro"]["sample_seed"],
    script:
        "../scripts/compress_model.py"


rule calibrate_int8:
    input:
        model=rules.train_model.output.model,
        dataset=rules.prepare_dataset.output.prepared,
    output:
        tflite=CALIBRATION_FILE,
        record=CALIBRATION_FILE.removesuffix(".tflite") + ".json",
    log:
        study_path("logs/calibrate_int8/{dataset}/{model}/seed{seed}/{images}.log"),
    benchmark:
        study_path(
            "benchmarks/calibrate_int8/{dataset}/{model}/seed{seed}/{images}.tsv"
        )
    wildcard_constraints:
        images=r"\d+",
    conda:
        "../envs/tinyml.yaml"
    threads: 1
    resources:
        mem_mb=2500,
        runtime=10,
    params:
        scheme=FULL_INTEGER,
        isolated=lambda wildcards: study.is_trained_model(config, wildcards.model),
        calibration_setting="conversion.calibration_sweep",
        settings=lambda wildcards: {
            **config["conversion"][FULL_INTEGER],
            "calibration_images": int(wildcards.images),
        },
    script:
        "../scripts/convert_model.py"
