"""Snakemake entry point of rule firmware_bundle."""

from tinyml_quant.files import output_to_log
from tinyml_quant.firmware import run_firmware_bundle

with output_to_log(snakemake.log[0]):
    run_firmware_bundle(
        snakemake.input.tflite,
        snakemake.input.micro,
        snakemake.input.dataset,
        margin_percent=snakemake.params.arena_margin_percent,
        variant=dict(snakemake.wildcards),
        output_paths=list(snakemake.output.files),
        interface_path=snakemake.input.interface,
    )
