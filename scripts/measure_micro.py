"""Snakemake entry point of rule measure_micro."""

from tinyml_quant.files import output_to_log
from tinyml_quant.micro import run_micro_measurement

with output_to_log(snakemake.log[0]):
    run_micro_measurement(
        snakemake.input.tflite,
        snakemake.input.dataset,
        variant=dict(snakemake.wildcards),
        agreement_images=snakemake.params.agreement_images,
        sample_seed=snakemake.params.sample_seed,
        gate=dict(snakemake.params.gate),
        output_path=snakemake.output.micro,
        reference_path=snakemake.input.reference,
    )
