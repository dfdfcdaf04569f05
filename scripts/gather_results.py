"""Snakemake entry point of rule gather_results."""

from tinyml_quant.files import output_to_log
from tinyml_quant.reporting import run_gather

with output_to_log(snakemake.log[0]):
    run_gather(
        inputs={name: list(paths) for name, paths in snakemake.input.items()},
        parameters=dict(snakemake.params.items()),
        outputs=dict(snakemake.output.items()),
    )
