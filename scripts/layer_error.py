"""Snakemake entry point of rule layer_error."""

from tinyml_quant.files import output_to_log
from tinyml_quant.layer_error import run_layer_error

with output_to_log(snakemake.log[0]):
    run_layer_error(
        snakemake.input.quantized,
        snakemake.input.reference,
        snakemake.input.dataset,
        images=snakemake.params.images,
        sample_seed=snakemake.params.sample_seed,
        variant=dict(snakemake.wildcards),
        output_path=snakemake.output.csv,
    )
