"""Snakemake entry point of rules convert_model and calibrate_int8."""

from tinyml_quant.files import output_to_log

with output_to_log(snakemake.log[0]):
    from tinyml_quant.conversion import run_conversion

    run_conversion(
        snakemake.input.model,
        snakemake.input.dataset,
        snakemake.params.scheme,
        settings=dict(snakemake.params.settings),
        threads=snakemake.threads,
        output_path=snakemake.output.tflite,
        isolated=snakemake.params.isolated,
        # calibrate_int8 names its sweep's key; convert_model the scheme's own.
        calibration_setting=snakemake.params.get("calibration_setting"),
    )
