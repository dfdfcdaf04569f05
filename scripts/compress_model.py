"""Snakemake entry point of rule compress_model."""

from tinyml_quant.files import output_to_log

with output_to_log(snakemake.log[0]):
    from tinyml_quant.lut import run_compression

    run_compression(
        snakemake.input.binned,
        snakemake.input.dataset,
        settings=dict(snakemake.params.settings),
        sample_images=snakemake.params.sample_images,
        sample_seed=snakemake.params.sample_seed,
        output_path=snakemake.output.tflite,
        scheme=snakemake.wildcards.scheme,
    )
