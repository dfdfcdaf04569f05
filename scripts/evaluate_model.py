"""Snakemake entry point of rule evaluate_model."""

from tinyml_quant.evaluation import run_evaluation
from tinyml_quant.files import output_to_log

with output_to_log(snakemake.log[0]):
    run_evaluation(
        snakemake.input.tflite,
        snakemake.input.dataset,
        snakemake.wildcards.scheme,
        threads=snakemake.threads,
        batch_size=snakemake.params.batch_size,
        metrics_path=snakemake.output.metrics,
        predictions_path=snakemake.output.predictions,
        fp32_predictions_path=snakemake.input.fp32_predictions or None,
    )
