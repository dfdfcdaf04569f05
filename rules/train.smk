# Resources cover the peaks measured on the full default run (3 epochs, 2 threads,
# 2-core machine, benchmarks/train_model/) with margin: 1.6 GB and 6.3 min at most
# (mnist resnet_v2). The paper preset (config/paper.yaml) trains far longer: raise
# runtime (and mem_mb for the full-width MobileNets) with --set-resources.
#
# A GPU on SLURM: in profiles/slurm/config.yaml (commented there)
#     set-resources:
#       train_model:
#         gpu: 1                              # sbatch --gpus=1 (or gres: "gpu:1")
#         slurm_partition: "your_gpu_partition"
# or on the command line: --set-resources train_model:gpu=1
# "train_model:slurm_partition='your_gpu_partition'". Not slurm_extra="'--gres=gpu:1'":
# the plugin refuses --gres/--gpus there (it manages them). The environment then needs
# TensorFlow's CUDA build instead of tensorflow-cpu, and weights trained on a GPU
# differ from CPU-trained ones.


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
        mem_mb=4000,
        runtime=60,
    params:
        architecture=lambda wildcards: config["architectures"][wildcards.model],
        settings=training_settings,
        augmentation=lambda wildcards: config["training"]["augmentation"][
            wildcards.dataset
        ],
    script:
        "../scripts/train_model.py"
