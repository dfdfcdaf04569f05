"""Snakemake entry point of rule plot_device_fit."""

from tinyml_quant.figures import DEVICE_FIGURES, plot_device_fit
from tinyml_quant.files import output_to_log

with output_to_log(snakemake.log[0]):
    plot_device_fit(
        snakemake.input.csv,
        [dict(board) for board in snakemake.params.boards],
        {name: list(snakemake.output[name]) for name in DEVICE_FIGURES},
        dpi=snakemake.params.dpi,
    )
