# Firmware: for every variant TensorFlow Lite Micro runs, the model as a 16-byte
# aligned C array with its header, the tensor-arena size (measured, plus a margin),
# and the operator resolver the model needs, ready to drop into a TFLM project.


rule firmware_bundle:
    input:
        tflite=rules.convert_model.output.tflite,
        micro=rules.measure_micro.output.micro,
        dataset=rules.prepare_dataset.output.prepared,
    output:
        files=[
            study_path(f"firmware/{{dataset}}/{{model}}/{{scheme}}/{name}")
            for name in BUNDLE_FILES
        ],
    log:
        study_path("logs/firmware_bundle/{dataset}/{model}/{scheme}.log"),
    benchmark:
        study_path("benchmarks/firmware_bundle/{dataset}/{model}/{scheme}.tsv")
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
