"""Snakemake entry point of rule finetune_qat."""

from tinyml_quant.files import output_to_log

with output_to_log(snakemake.log[0]):
    from tinyml_quant.qat_stage import run_finetune

    run_finetune(
        snakemake.input.model,
        snakemake.input.dataset,
        snakemake.input.reference,
        snakemake.input.post_training[0],
        snakemake.wildcards.scheme,
        training_settings=dict(snakemake.params.training),
        qat_settings=dict(snakemake.params.qat),
        values_per_channel=snakemake.params.values_per_channel,
        threads=snakemake.threads,
        model_output=snakemake.output.model,
        record_output=snakemake.output.record,
    )
