"""Snakemake entry point of rule convert_qat."""

from tinyml_quant.files import output_to_log

with output_to_log(snakemake.log[0]):
    from tinyml_quant.qat_stage import run_qat_conversion

    run_qat_conversion(
        snakemake.input.model,
        snakemake.input.qat_record,
        snakemake.input.dataset,
        snakemake.wildcards.scheme,
        calibration=dict(snakemake.params.calibration),
        values_per_channel=snakemake.params.values_per_channel,
        output_path=snakemake.output.tflite,
    )
