"""Which variants go on after their measurements: firmware for what TFLite Micro runs, and a mixed-precision
variant for each scheme that loses accuracy. The workflow plans those jobs from this record."""

import logging

from .files import read_json, write_json
from .micro import RUNS
from .schemes import REFERENCE_SCHEME, SCHEMES
from .variants import NOT_CONVERTED

logger = logging.getLogger(__name__)


def deployment_plan(evaluations, micro, threshold_points, always_recover, recovered_schemes):
    """``{"firmware_schemes": [...], "recover": {scheme: reason}, "loss_points": {scheme: loss}}`` for one model.

    ``evaluations`` and ``micro`` map scheme to its record. A scheme of
    ``recovered_schemes`` gets its mixed-precision variant when it loses more
    than ``threshold_points`` of accuracy against the reference scheme, or
    always when ``always_recover``; a variant that was not converted (or a
    reference that was not) has nothing to recover from, and so has a variant
    whose micro record says it was not made (an int8_lut whose binned model
    was evaluated but which TFLite Micro's compressor refused).
    """
    firmware = [scheme for scheme in SCHEMES if scheme in micro and micro[scheme]["status"] == RUNS]
    plan = {"firmware_schemes": firmware, "recover": {}, "loss_points": {}, "reasons": {}}
    reference = evaluations[REFERENCE_SCHEME].get("accuracy")
    for scheme in recovered_schemes:
        accuracy = evaluations[scheme].get("accuracy")
        refused = micro.get(scheme, {}).get("status") == NOT_CONVERTED
        if reference is None or accuracy is None or refused:
            plan["reasons"][scheme] = "not converted: nothing to recover"
            continue
        # Rounded so that a loss of exactly the threshold (in points) is not "more" by a float's last bit.
        loss = round(100 * (reference - accuracy), 6)
        plan["loss_points"][scheme] = loss
        if loss > threshold_points:
            plan["recover"][scheme] = f"{scheme} loses {loss:.2f} points (more than {threshold_points:g})"
        elif always_recover:
            plan["recover"][scheme] = f"listed in diagnostics.always_recover ({scheme} loses {loss:.2f} points)"
        else:
            plan["reasons"][scheme] = f"{scheme} loses {loss:.2f} points (at most {threshold_points:g}): no fallback"
    plan["reasons"].update(plan["recover"])
    return plan


def run_plan(evaluation_paths, micro_paths, threshold_points, always_recover, recovered_schemes, output_path):
    """Snakemake entry point: the deployment plan of one dataset and model, from its records."""
    evaluations = {record["scheme"]: record for record in map(read_json, evaluation_paths)}
    micro = {record["scheme"]: record for record in map(read_json, micro_paths)}
    plan = deployment_plan(evaluations, micro, threshold_points, always_recover, recovered_schemes)
    write_json(output_path, plan)
    logger.info("%s", plan)
    return plan
