"""Snakemake stage ``gather_results``: every stage's records read, the results tables written, and results.md.

The tables and their statistics are ``results_table``'s, the Markdown
sections ``report_markdown``'s (and ``ladder``'s, ``weight_ranges``' and
``mlperf``'s for their own sections); this module only reads the inputs,
orders the sections and writes the outputs.
"""

from . import mlperf
from .files import write_csv, write_text
from .ladder import gather_ladder, with_mixed
from .report_markdown import (
    calibration_markdown,
    choice_markdown,
    cortex_m_check_markdown,
    dataset_sections,
    layer_error_markdown,
    npu_markdown,
    recovery_markdown,
    seeds_markdown,
    tests_caption,
    training_markdown,
    warnings_markdown,
)
from .results_table import (
    INSTANCE,
    calibration_table,
    chance_flags,
    gather,
    keyed,
    layer_errors,
    load_labels,
    load_predictions,
    npu_table,
    paired_tests,
    seed_summary,
)
from .weight_ranges import run_ranges


def run_gather(inputs, parameters, outputs):
    """Snakemake entry point: the results, calibration and NPU CSVs and the Markdown of them all.

    ``inputs`` holds the record paths of every stage (``evaluations``, with
    their ``predictions`` beside them, ``datasets``, ``training_metrics``, ``published_int8``, ``graphs``,
    ``micro_measurements``, ``latencies``, ``layer_errors``, ``recoveries``, ``qat_records``,
    ``calibrations``, ``npu_estimates``; each evaluation record names its predictions file); ``parameters``
    ``board_labels`` ({name: label}),
    ``cortex_m_latency``, ``mlperf_reference``, ``recovery_threshold_points``, the study's int8
    ``calibration_images`` and ``int4_weight_algorithm``; ``outputs``
    ``csv``, ``markdown``, ``calibration_csv``, ``npu_csv``, ``int4_ranges_csv``, ``ladder_csv`` (``ladder``).
    """
    table = gather(
        inputs["evaluations"],
        inputs["training_metrics"],
        inputs["graphs"],
        inputs["micro_measurements"],
        inputs["latencies"],
    )
    predictions = load_predictions(inputs["evaluations"])
    labels, classes = load_labels(inputs["datasets"])
    table = chance_flags(paired_tests(table, predictions, labels), classes)
    summary = seed_summary(table)
    calibration = calibration_table(
        inputs["calibrations"],
        table,
        parameters["calibration_images"],
        (predictions, labels),
    )
    npu = npu_table(inputs["npu_estimates"], parameters["board_labels"])
    training = keyed(inputs["training_metrics"], INSTANCE)
    mixed, ladder_section = gather_ladder(inputs, parameters, outputs, table, predictions, labels)
    choices = with_mixed(table, mixed)
    write_csv(outputs["csv"], table)
    write_csv(outputs["calibration_csv"], calibration)
    write_csv(outputs["npu_csv"], npu)
    sections = [
        "# Size and accuracy of every TFLite variant\n",
        warnings_markdown(table),
        choice_markdown(choices, seed_summary(choices)),
        tests_caption(table),
        *dataset_sections(table),
        seeds_markdown(summary),
        run_ranges(table, predictions, labels, parameters["int4_weight_algorithm"], outputs["int4_ranges_csv"]),
        calibration_markdown(calibration, table),
        npu_markdown(npu, table),
        mlperf.reference_markdown(
            table,
            training,
            keyed(inputs["published_int8"], INSTANCE),
            parameters["mlperf_reference"],
        ),
        cortex_m_check_markdown(parameters["cortex_m_latency"]),
        recovery_markdown(keyed(inputs["recoveries"]), parameters["recovery_threshold_points"]),
        ladder_section,
        training_markdown(training),
        layer_error_markdown(layer_errors(inputs["layer_errors"])),
    ]
    write_text(outputs["markdown"], "\n".join(section for section in sections if section))
    return table
