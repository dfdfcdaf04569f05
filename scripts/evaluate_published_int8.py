"""Snakemake entry point of rule evaluate_published_int8."""

from tinyml_quant.evaluation import run_published_evaluation
from tinyml_quant.files import output_to_log

with output_to_log(snakemake.log[0]):
    run_published_evaluation(
        snakemake.input.published,
        snakemake.input.dataset,
        variant=dict(snakemake.params.variant),
        threads=snakemake.threads,
        batch_size=snakemake.params.batch_size,
        metrics_path=snakemake.output.metrics,
        predictions_path=snakemake.output.predictions,
        reference_predictions_path=snakemake.input.reference_predictions,
    )
