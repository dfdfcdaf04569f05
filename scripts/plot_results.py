"""Snakemake entry point of rule plot_results."""

from pathlib import Path

from tinyml_quant.files import output_to_log
from tinyml_quant.reporting import plot_all

with output_to_log(snakemake.log[0]):
    plot_all(
        snakemake.input.csv,
        figure_folder=Path(snakemake.output.figures[0]).parent,
        dpi=snakemake.params.dpi,
        formats=snakemake.params.formats,
    )
