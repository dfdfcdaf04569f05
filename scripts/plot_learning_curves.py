"""Snakemake entry point of rule plot_learning_curves."""

from tinyml_quant.figures import TRAINING_FIGURES, plot_learning_curves
from tinyml_quant.files import output_to_log

with output_to_log(snakemake.log[0]):
    plot_learning_curves(
        snakemake.input.histories,
        list(snakemake.params.names),
        {name: list(snakemake.output[name]) for name in TRAINING_FIGURES},
        dpi=snakemake.params.dpi,
    )
