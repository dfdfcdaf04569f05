"""Snakemake entry point of rule stage_costs."""

from tinyml_quant.costs import run_stage_costs
from tinyml_quant.figures import COST_FIGURES
from tinyml_quant.files import output_to_log

with output_to_log(snakemake.log[0]):
    run_stage_costs(
        snakemake.input.benchmarks,
        csv_path=snakemake.output.csv,
        markdown_path=snakemake.output.markdown,
        figure_paths={name: list(snakemake.output[name]) for name in COST_FIGURES},
        dpi=snakemake.params.dpi,
        budgets=dict(snakemake.params.budgets),
    )
