# Firmware: for every variant TensorFlow Lite Micro runs, the model as a 16-byte
# aligned C array with its header, the tensor-arena size (measured, plus a margin),
# and the operator resolver the model needs, ready to drop into a TFLM project.


rule firmware_bundle:
    input:
        tflite=device_file,
        # The variant file LiteRT loads, for the input and output tensors' details.
        interface=VARIANT_FILE,
        micro=rules.measure_micro.output.micro,
        dataset=rules.prepare_dataset.output.prepared,
    output:
        files=[
            study_path(
                f"firmware/{{dataset}}/{{model}}/seed{{seed}}/{{scheme}}/{name}"
            )
            for name in BUNDLE_FILES
        ],
    log:
        study_path("logs/firmware_bundle/{dataset}/{model}/seed{seed}/{scheme}.log"),
    benchmark:
        study_path(
            "benchmarks/firmware_bundle/{dataset}/{model}/seed{seed}/{scheme}.tsv"
        )
    localrule: True
    conda:
        "../envs/tinyml.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        arena_margin_percent=config["firmware"]["arena_margin_percent"],
    script:
        "../scripts/firmware_bundle.py"
