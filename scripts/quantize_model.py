"""Snakemake entry point of rule quantize_model."""

from tinyml_quant.files import output_to_log

with output_to_log(snakemake.log[0]):
    from tinyml_quant.edge_quantizer import run_quantization

    run_quantization(
        snakemake.input.fp32,
        snakemake.input.dataset,
        snakemake.wildcards.scheme,
        settings=dict(snakemake.params.settings),
        threads=snakemake.threads,
        output_path=snakemake.output.tflite,
    )
