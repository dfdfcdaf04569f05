"""Snakemake entry point of rule analyze_graph."""

from tinyml_quant.files import output_to_log
from tinyml_quant.graph import run_graph_analysis

with output_to_log(snakemake.log[0]):
    run_graph_analysis(snakemake.input.tflite, variant=dict(snakemake.wildcards), output_path=snakemake.output.graph)
