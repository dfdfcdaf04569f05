"""Snakemake entry point of rule plot_device_fit."""

from pathlib import Path

from tinyml_quant.files import output_to_log
from tinyml_quant.reporting import plot_device_fit

with output_to_log(snakemake.log[0]):
    plot_device_fit(
        snakemake.input.csv,
        [dict(board) for board in snakemake.params.boards],
        figure_folder=Path(snakemake.output.figures[0]).parent,
        dpi=snakemake.params.dpi,
        formats=snakemake.params.formats,
    )
