"""Snakemake entry point of rule bin_weights."""

from tinyml_quant.files import output_to_log

with output_to_log(snakemake.log[0]):
    from tinyml_quant.lut import run_binning

    run_binning(snakemake.input.int8, settings=dict(snakemake.params.settings), output_path=snakemake.output.tflite)
