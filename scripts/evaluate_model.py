"""Snakemake entry point of rules evaluate_model and evaluate_calibration."""

from tinyml_quant.evaluation import run_evaluation
from tinyml_quant.files import output_to_log

with output_to_log(snakemake.log[0]):
    # The fp32 variant's predictions, which every other variant is compared with; none for fp32 itself.
    reference = list(snakemake.input.reference_predictions)
    run_evaluation(
        snakemake.input.tflite,
        snakemake.input.dataset,
        variant=dict(snakemake.params.variant),
        threads=snakemake.threads,
        batch_size=snakemake.params.batch_size,
        metrics_path=snakemake.output.metrics,
        predictions_path=snakemake.output.predictions,
        reference_predictions_path=reference[0] if reference else None,
    )
