"""Snakemake entry point of rule plot_recovery_ladder."""

from tinyml_quant.figures import LADDER_FIGURES, plot_recovery_ladder
from tinyml_quant.files import output_to_log

with output_to_log(snakemake.log[0]):
    plot_recovery_ladder(
        snakemake.input.csv,
        {name: list(snakemake.output[name]) for name in LADDER_FIGURES},
        dpi=snakemake.params.dpi,
    )
