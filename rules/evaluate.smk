def fp32_predictions(wildcards):
    """Every variant is compared with its model's fp32 variant; fp32 itself needs nothing."""
    if wildcards.scheme == "fp32":
        return []
    return f"results/evaluate/{wildcards.dataset}/{wildcards.model}/fp32.predictions.npy"


rule evaluate_model:
    input:
        tflite=rules.convert_model.output.tflite,
        dataset=rules.prepare_dataset.output.prepared,
        fp32_predictions=fp32_predictions,
    output:
        metrics="results/evaluate/{dataset}/{model}/{scheme}.json",
        predictions="results/evaluate/{dataset}/{model}/{scheme}.predictions.npy",
    params:
        batch_size=config["evaluation"]["batch_size"],
    log:
        "logs/evaluate_model/{dataset}/{model}/{scheme}.log",
    benchmark:
        "benchmarks/evaluate_model/{dataset}/{model}/{scheme}.tsv"
    threads: 2
    resources:
        mem_mb=2000,
        runtime=60,
    conda:
        "../envs/tinyml.yaml"
    script:
        "../scripts/evaluate_model.py"
