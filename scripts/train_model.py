"""Snakemake entry point of rule train_model."""

from tinyml_quant.files import output_to_log

with output_to_log(snakemake.log[0]):
    from tinyml_quant.training import run_training

    run_training(
        snakemake.input.dataset,
        snakemake.wildcards.model,
        architecture=dict(snakemake.params.architecture),
        settings=dict(snakemake.params.settings),
        threads=snakemake.threads,
        model_path=snakemake.output.model,
        history_path=snakemake.output.history,
        metrics_path=snakemake.output.metrics,
    )
