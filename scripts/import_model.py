"""Snakemake entry point of rule import_model."""

from tinyml_quant.files import output_to_log

with output_to_log(snakemake.log[0]):
    from tinyml_quant.importing import run_import

    run_import(
        snakemake.input.trained,
        snakemake.input.dataset,
        snakemake.wildcards.model,
        input_scale=snakemake.params.input_scale,
        input_offset=snakemake.params.input_offset,
        threads=snakemake.threads,
        model_path=snakemake.output.model,
        metrics_path=snakemake.output.metrics,
        seed=int(snakemake.wildcards.seed),
        published=snakemake.params.published,
    )
