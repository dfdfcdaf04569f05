# Models: the built-in architectures are trained here; trained models are imported: your own files, or
# published models fetched from their pinned commits (or the model mirror), each file checked by SHA-256.
#
# Resources cover the default run's peaks (one thread each, 2-core machine) with
# margin: reports/stage_costs.md sets them side by side. The paper preset
# (config/paper.yaml) trains far longer: raise runtime (and mem_mb for the full-width
# MobileNets) with --set-resources.
#
# A GPU: training.backend jax (pip install -e '.[gpu]'), and on SLURM a GPU for this
# rule only (profiles/slurm/config.yaml, set-resources: train_model: gpu: 1;
# profiles/README.md). Not slurm_extra="'--gres=gpu:1'": the plugin refuses
# --gres/--gpus there. Weights trained on a GPU differ from CPU-trained ones.


rule train_model:
    input:
        dataset=rules.prepare_dataset.output.prepared,
    output:
        model=study_path("models/{dataset}/{model}/seed{seed}/model.keras"),
        history=study_path("models/{dataset}/{model}/seed{seed}/history.csv"),
        metrics=study_path("models/{dataset}/{model}/seed{seed}/test_metrics.json"),
    log:
        study_path("logs/train_model/{dataset}/{model}/seed{seed}.log"),
    benchmark:
        study_path("benchmarks/train_model/{dataset}/{model}/seed{seed}.tsv")
    wildcard_constraints:
        model=any_of(ARCHITECTURES),
    conda:
        "../envs/tinyml.yaml"
    # One thread: on these models a second thread speeds a training up far less than twice, so two
    # trainings side by side finish sooner (docs/performance.md). Weights depend on the thread count.
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        architecture=lambda wildcards: config["architectures"].get(wildcards.model, {}),
        settings=trained_settings,
    script:
        "../scripts/train_model.py"


rule fetch_published_model:
    output:
        manifest=study_path("models/published/{published}/manifest.json"),
    log:
        study_path("logs/fetch_published_model/{published}.log"),
    benchmark:
        study_path("benchmarks/fetch_published_model/{published}.tsv")
    wildcard_constraints:
        published=any_of(PUBLISHED_IN_STUDY),
    conda:
        "../envs/tinyml.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        mirror=config["data"]["model_mirror"],
        download_folder="data/downloads",
    script:
        "../scripts/fetch_published_model.py"


rule import_model:
    input:
        dataset=rules.prepare_dataset.output.prepared,
        # The model's file, or the manifest of the published model it is.
        trained=trained_model_source,
    output:
        model=study_path("models/{dataset}/{model}/seed{seed}/model.keras"),
        metrics=study_path("models/{dataset}/{model}/seed{seed}/test_metrics.json"),
    log:
        study_path("logs/import_model/{dataset}/{model}/seed{seed}.log"),
    benchmark:
        study_path("benchmarks/import_model/{dataset}/{model}/seed{seed}.tsv")
    wildcard_constraints:
        model=any_of(TRAINED_MODELS),
    conda:
        "../envs/tinyml.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        published=lambda wildcards: study.published_model(config, wildcards.model),
        input_scale=lambda wildcards: config["trained_models"][wildcards.model].get(
            "input_scale", 1.0
        ),
        input_offset=lambda wildcards: config["trained_models"][wildcards.model].get(
            "input_offset", 0.0
        ),
    script:
        "../scripts/import_model.py"
