# Data: fetch (download, mirror or your own files) and verify, then prepare one .npz per dataset.
#
# Resources (mem_mb, runtime in minutes) cover the default run's peaks with margin
# (reports/stage_costs.md sets them side by side); fetch_dataset's runtime leaves
# room for a slow download. Downloads are cached in data/downloads/, shared by every study.


rule fetch_dataset:
    input:
        # A local image folder's files, so that replacing one reruns this dataset's chain.
        lambda wildcards: study.local_source_files(config, wildcards.dataset),
    output:
        manifest=study_path("data/{dataset}/manifest.json"),
    log:
        study_path("logs/fetch_dataset/{dataset}.log"),
    benchmark:
        study_path("benchmarks/fetch_dataset/{dataset}.tsv")
    conda:
        "../envs/tinyml.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    params:
        source=lambda wildcards: study.dataset_source(config, wildcards.dataset),
        download_folder="data/downloads",
    script:
        "../scripts/fetch_dataset.py"


rule prepare_dataset:
    input:
        manifest=rules.fetch_dataset.output.manifest,
    output:
        prepared=study_path("data/{dataset}.npz"),
    log:
        study_path("logs/prepare_dataset/{dataset}.log"),
    benchmark:
        study_path("benchmarks/prepare_dataset/{dataset}.tsv")
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
        # Only this dataset's reading settings, so changing them reruns only its chain.
        image_folder=lambda wildcards: {
            key: value
            for key, value in config["image_folders"]
            .get(wildcards.dataset, {})
            .items()
            if key not in ("source", "sha256")
        },
    script:
        "../scripts/prepare_dataset.py"
