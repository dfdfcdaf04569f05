# Conversion: each model to one .tflite file per scheme, each its own job.
#
# Resources cover the peaks measured on the full default run with margin:
# 1.1 GB and 12 s at most (cifar10 mobilenet_v2 int16x8).


rule convert_model:
    input:
        model=rules.train_model.output.model,
        dataset=rules.prepare_dataset.output.prepared,
    output:
        tflite=study_path("convert/{dataset}/{model}/{scheme}.tflite"),
    log:
        study_path("logs/convert_model/{dataset}/{model}/{scheme}.log"),
    benchmark:
        study_path("benchmarks/convert_model/{dataset}/{model}/{scheme}.tsv")
    conda:
        "../envs/tinyml.yaml"
    threads: 1
    resources:
        mem_mb=2500,
        runtime=10,
    params:
        # Only this scheme's settings, so changing one scheme reruns only its conversions.
        settings=lambda wildcards: config["conversion"].get(wildcards.scheme, {}),
    script:
        "../scripts/convert_model.py"
