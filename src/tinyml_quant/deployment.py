"""Which variants go on after their measurements: firmware for what TFLite Micro runs, and a float
fallback for an int8 variant that loses accuracy. The workflow plans those jobs from this record."""

import logging

from .conversion import REFERENCE_SCHEME, SCHEMES
from .files import read_json, write_json
from .micro import RUNS

logger = logging.getLogger(__name__)


def deployment_plan(evaluations, micro, threshold_points, always_recover, recovered_schemes):
    """``{"firmware_schemes": [...], "recover": bool, "reason": str}`` for one dataset and model.

    ``evaluations`` and ``micro`` map scheme to its record. A recovered scheme
    is recovered when it loses more than ``threshold_points`` of accuracy
    against the reference scheme, or always when ``always_recover``.
    """
    firmware = [scheme for scheme in SCHEMES if scheme in micro and micro[scheme]["status"] == RUNS]
    plan = {"firmware_schemes": firmware, "recover": False, "reason": "", "loss_points": None}
    for scheme in recovered_schemes:
        # Rounded so that a loss of exactly the threshold (in points) is not "more" by a float's last bit.
        loss = round(100 * (evaluations[REFERENCE_SCHEME]["accuracy"] - evaluations[scheme]["accuracy"]), 6)
        plan["loss_points"] = loss
        if loss > threshold_points:
            plan.update(recover=True, reason=f"{scheme} loses {loss:.2f} points (more than {threshold_points:g})")
        elif always_recover:
            plan.update(recover=True, reason=f"listed in diagnostics.always_recover ({scheme} loses {loss:.2f} points)")
        else:
            plan["reason"] = f"{scheme} loses {loss:.2f} points (at most {threshold_points:g}): no fallback needed"
    return plan


def run_plan(evaluation_paths, micro_paths, threshold_points, always_recover, recovered_schemes, output_path):
    """Snakemake entry point: the deployment plan of one dataset and model, from its records."""
    evaluations = {record["scheme"]: record for record in map(read_json, evaluation_paths)}
    micro = {record["scheme"]: record for record in map(read_json, micro_paths)}
    plan = deployment_plan(evaluations, micro, threshold_points, always_recover, recovered_schemes)
    write_json(output_path, plan)
    logger.info("%s", plan)
    return plan
