rule fetch_dataset:
    output:
        manifest="data/raw/{dataset}/manifest.json",
    params:
        mirror=config["data"]["mirror"],
    log:
        "logs/fetch_dataset/{dataset}.log",
    benchmark:
        "benchmarks/fetch_dataset/{dataset}.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    conda:
        "../envs/tinyml.yaml"
    script:
        "../scripts/fetch_dataset.py"


rule prepare_dataset:
    input:
        manifest=rules.fetch_dataset.output.manifest,
    output:
        prepared="data/prepared/{dataset}.npz",
    params:
        max_train_images=config["data"]["max_train_images"],
        max_test_images=config["data"]["max_test_images"],
        subset_seed=config["data"]["subset_seed"],
    log:
        "logs/prepare_dataset/{dataset}.log",
    benchmark:
        "benchmarks/prepare_dataset/{dataset}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=15,
    conda:
        "../envs/tinyml.yaml"
    script:
        "../scripts/prepare_dataset.py"
