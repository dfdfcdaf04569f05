rule train_model:
    input:
        dataset=rules.prepare_dataset.output.prepared,
    output:
        model="results/train/{dataset}/{model}/model.keras",
        history="results/train/{dataset}/{model}/history.csv",
        metrics="results/train/{dataset}/{model}/test_metrics.json",
    params:
        architecture=lambda wildcards: config["architectures"][wildcards.model],
        settings=training_settings,
        augmentation=lambda wildcards: config["training"]["augmentation"][wildcards.dataset],
    log:
        "logs/train_model/{dataset}/{model}.log",
    benchmark:
        "benchmarks/train_model/{dataset}/{model}.tsv"
    threads: 2
    resources:
        mem_mb=6000,
        runtime=120,
    conda:
        "../envs/tinyml.yaml"
    script:
        "../scripts/train_model.py"
