"""Snakemake entry point of rule plot_layer_errors."""

from tinyml_quant.figures import DIAGNOSTIC_FIGURES, plot_layer_errors
from tinyml_quant.files import output_to_log

with output_to_log(snakemake.log[0]):
    plot_layer_errors(
        snakemake.input.layer_errors,
        {name: list(snakemake.output[name]) for name in DIAGNOSTIC_FIGURES},
        dpi=snakemake.params.dpi,
    )
