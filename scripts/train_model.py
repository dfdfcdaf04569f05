"""Snakemake entry point of rule train_model."""

from tinyml_quant.files import output_to_log

with output_to_log(snakemake.log[0]):
    from tinyml_quant.backends import select_backend

    settings = dict(snakemake.params.settings)
    # Before Keras is imported: Keras reads its backend once.
    select_backend(settings["backend"], settings["accelerator"], snakemake.threads)
    from tinyml_quant.training import run_training

    run_training(
        snakemake.input.dataset,
        snakemake.wildcards.model,
        architecture=dict(snakemake.params.architecture),
        settings=settings,
        threads=snakemake.threads,
        model_path=snakemake.output.model,
        history_path=snakemake.output.history,
        metrics_path=snakemake.output.metrics,
    )
