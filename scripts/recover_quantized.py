"""Snakemake entry point of rule recover_quantized."""

from tinyml_quant.files import output_to_log

with output_to_log(snakemake.log[0]):
    from tinyml_quant.recovery import run_recovery

    run_recovery(
        snakemake.wildcards.scheme,
        paths=dict(snakemake.input.items()),
        settings=dict(snakemake.params.settings),
        threads=snakemake.threads,
        reason=snakemake.params.reason,
        output_paths={name: snakemake.output[name] for name in ("tflite", "device", "metrics", "predictions")},
    )
