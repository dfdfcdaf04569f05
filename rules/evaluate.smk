# Resources cover the peaks measured on the full default run (10,000 test images,
# benchmarks/evaluate_model/) with margin: 283 MB and 141 s at most (int16x8 runs
# LiteRT's slow reference kernels).


rule evaluate_model:
    input:
        tflite=rules.convert_model.output.tflite,
        dataset=rules.prepare_dataset.output.prepared,
        fp32_predictions=fp32_predictions,
    output:
        metrics="results/evaluate/{dataset}/{model}/{scheme}.json",
        predictions="results/evaluate/{dataset}/{model}/{scheme}.predictions.npy",
    log:
        "logs/evaluate_model/{dataset}/{model}/{scheme}.log",
    benchmark:
        "benchmarks/evaluate_model/{dataset}/{model}/{scheme}.tsv"
    conda:
        "../envs/tinyml.yaml"
    threads: 2
    resources:
        mem_mb=1000,
        runtime=30,
    params:
        batch_size=config["evaluation"]["batch_size"],
    script:
        "../scripts/evaluate_model.py"
