"""Snakemake entry point of rule stage_costs."""

from pathlib import Path

from tinyml_quant.costs import run_stage_costs
from tinyml_quant.files import output_to_log

with output_to_log(snakemake.log[0]):
    run_stage_costs(
        snakemake.input.benchmarks,
        csv_path=snakemake.output.csv,
        markdown_path=snakemake.output.markdown,
        figure_folder=Path(snakemake.output.figures[0]).parent,
        dpi=snakemake.params.dpi,
        formats=snakemake.params.formats,
    )
