"""Snakemake entry point of rule gather_results."""

from tinyml_quant.files import output_to_log
from tinyml_quant.reporting import run_gather

with output_to_log(snakemake.log[0]):
    run_gather(
        snakemake.input.evaluations,
        snakemake.input.training_metrics,
        snakemake.input.graphs,
        snakemake.input.micro_measurements,
        snakemake.input.latencies,
        snakemake.input.layer_errors,
        snakemake.input.recoveries,
        csv_path=snakemake.output.csv,
        markdown_path=snakemake.output.markdown,
    )
