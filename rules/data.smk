# Resources (mem_mb, runtime in minutes) cover the peaks measured on the full default
# run (benchmarks/, 2-core machine) with margin: prepare_dataset peaked at 439 MB and
# 7 s (cifar10); fetch_dataset copies and checksums files (under 1 s from the mirror),
# its runtime leaves room for a slow download.


rule fetch_dataset:
    output:
        manifest="data/raw/{dataset}/manifest.json",
    log:
        "logs/fetch_dataset/{dataset}.log",
    benchmark:
        "benchmarks/fetch_dataset/{dataset}.tsv"
    conda:
        "../envs/tinyml.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    params:
        mirror=config["data"]["mirror"],
    script:
        "../scripts/fetch_dataset.py"


rule prepare_dataset:
    input:
        manifest=rules.fetch_dataset.output.manifest,
    output:
        prepared="data/prepared/{dataset}.npz",
    log:
        "logs/prepare_dataset/{dataset}.log",
    benchmark:
        "benchmarks/prepare_dataset/{dataset}.tsv"
    conda:
        "../envs/tinyml.yaml"
    threads: 1
    resources:
        mem_mb=1500,
        runtime=10,
    params:
        max_train_images=config["data"]["max_train_images"],
        max_test_images=config["data"]["max_test_images"],
        subset_seed=config["data"]["subset_seed"],
    script:
        "../scripts/prepare_dataset.py"
