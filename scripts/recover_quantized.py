"""Snakemake entry point of rule recover_quantized."""

from tinyml_quant.files import output_to_log

with output_to_log(snakemake.log[0]):
    from tinyml_quant.recovery import run_recovery

    run_recovery(
        snakemake.input.model,
        snakemake.input.dataset,
        snakemake.input.quantized[0],
        snakemake.input.reference[0],
        calibration=dict(snakemake.params.calibration),
        float_layers=snakemake.params.float_layers,
        debug_images=snakemake.params.debug_images,
        sample_seed=snakemake.params.sample_seed,
        agreement_images=snakemake.params.agreement_images,
        batch_size=snakemake.params.batch_size,
        threads=snakemake.threads,
        reason=snakemake.params.reason,
        tflite_path=snakemake.output.tflite,
        metrics_path=snakemake.output.metrics,
    )
