"""Snakemake entry point of rule plot_device_fit."""

from tinyml_quant.figures import plot_device_fit
from tinyml_quant.files import output_to_log

with output_to_log(snakemake.log[0]):
    plot_device_fit(
        snakemake.input.csv,
        snakemake.input.fit_csv,
        snakemake.input.calibration_csv,
        snakemake.input.npu_csv,
        [dict(board) for board in snakemake.params.boards],
        {name: list(paths) for name, paths in snakemake.output.items()},
        dpi=snakemake.params.dpi,
    )
