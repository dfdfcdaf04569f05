"""Snakemake entry point of rule plot_results."""

from tinyml_quant.figures import RESULT_FIGURES, plot_results
from tinyml_quant.files import output_to_log

with output_to_log(snakemake.log[0]):
    plot_results(
        snakemake.input.csv,
        {name: list(snakemake.output[name]) for name in RESULT_FIGURES},
        dpi=snakemake.params.dpi,
    )
