"""Snakemake entry point of rule estimate_npu."""

from tinyml_quant.files import output_to_log
from tinyml_quant.npu import run_npu_estimate

with output_to_log(snakemake.log[0]):
    run_npu_estimate(
        snakemake.input.tflite,
        variant={**snakemake.wildcards, "seed": int(snakemake.wildcards.seed)},
        board=snakemake.wildcards.board,
        npu=dict(snakemake.params.npu),
        output_path=snakemake.output.estimate,
        layers_path=snakemake.output.layers,
    )
