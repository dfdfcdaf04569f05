"""Snakemake entry point of rule measure_latency."""

from tinyml_quant.files import output_to_log
from tinyml_quant.latency import run_latency

with output_to_log(snakemake.log[0]):
    run_latency(
        snakemake.input.tflite,
        snakemake.input.dataset,
        variant=dict(snakemake.wildcards),
        threads=snakemake.threads,
        invokes=snakemake.params.invokes,
        warmup=snakemake.params.warmup,
        output_path=snakemake.output.latency,
    )
