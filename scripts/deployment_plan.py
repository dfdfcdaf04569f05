"""Snakemake entry point of checkpoint deployment_plan."""

from tinyml_quant.deployment import run_plan
from tinyml_quant.files import output_to_log

with output_to_log(snakemake.log[0]):
    run_plan(
        snakemake.input.evaluations,
        snakemake.input.micro,
        threshold_points=snakemake.params.threshold_points,
        always_recover=snakemake.params.always_recover,
        recovered_schemes=list(snakemake.params.recovered_schemes),
        output_path=snakemake.output.plan,
    )
