rule train_model:
    input:
        dataset=rules.prepare_dataset.output.prepared,
    output:
        model="results/train/{dataset}/{model}/model.keras",
        history="results/train/{dataset}/{model}/history.csv",
        metrics="results/train/{dataset}/{model}/test_metrics.json",
    log:
        "logs/train_model/{dataset}/{model}.log",
    benchmark:
        "benchmarks/train_model/{dataset}/{model}.tsv"
    conda:
        "../envs/tinyml.yaml"
    threads: 2
    resources:
        mem_mb=6000,
        runtime=120,
    params:
        architecture=lambda wildcards: config["architectures"][wildcards.model],
        settings=training_settings,
        augmentation=lambda wildcards: config["training"]["augmentation"][
            wildcards.dataset
        ],
    script:
        "../scripts/train_model.py"
