rule convert_model:
    input:
        model=rules.train_model.output.model,
        dataset=rules.prepare_dataset.output.prepared,
    output:
        tflite="results/convert/{dataset}/{model}/{scheme}.tflite",
    log:
        "logs/convert_model/{dataset}/{model}/{scheme}.log",
    benchmark:
        "benchmarks/convert_model/{dataset}/{model}/{scheme}.tsv"
    conda:
        "../envs/tinyml.yaml"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=20,
    params:
        # Only this scheme's settings, so changing one scheme reruns only its conversions.
        settings=lambda wildcards: config["conversion"].get(wildcards.scheme, {}),
    script:
        "../scripts/convert_model.py"
