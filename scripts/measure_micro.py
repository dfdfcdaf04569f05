"""Snakemake entry point of rule measure_micro."""

from tinyml_quant.files import output_to_log
from tinyml_quant.micro import run_micro_measurement

with output_to_log(snakemake.log[0]):
    run_micro_measurement(snakemake.input.tflite, snakemake.input.dataset, output_path=snakemake.output.micro)
