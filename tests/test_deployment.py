"""The deployment plan: which variants get firmware and which models get a mixed-precision fallback."""

import pytest

from tinyml_quant.deployment import deployment_plan

EVALUATIONS = {"fp32": {"accuracy": 0.90}, "int8": {"accuracy": 0.87}}


MICRO = {scheme: {"status": "runs"} for scheme in ("fp32", "int8", "int16x8")} | {
    scheme: {"status": "unsupported on TFLite Micro"} for scheme in ("float16", "dynamic_range")
}


@pytest.mark.parametrize(
    ("threshold", "always", "recover", "reason"),
    [
        (1.0, False, True, "int8 loses 3.00 points (more than 1)"),
        (3.0, False, False, "int8 loses 3.00 points (at most 3): no fallback needed"),
        (5.0, True, True, "listed in diagnostics.always_recover (int8 loses 3.00 points)"),
    ],
)
def test_the_plan_recovers_int8_only_past_the_threshold_or_when_asked(threshold, always, recover, reason):
    plan = deployment_plan(EVALUATIONS, MICRO, threshold, always, ["int8"])
    assert plan["recover"] is recover and plan["reason"] == reason
    assert plan["loss_points"] == pytest.approx(3.0)
    assert plan["firmware_schemes"] == ["fp32", "int8", "int16x8"]


def test_a_loss_under_one_point_keeps_its_decimals():
    evaluations = {"fp32": {"accuracy": 0.9}, "int8": {"accuracy": 0.8996}}
    plan = deployment_plan(evaluations, MICRO, 0.03, False, ["int8"])
    assert plan["loss_points"] == 0.04 and plan["recover"] is True


def test_the_plan_without_int8_recovers_nothing():
    plan = deployment_plan({"fp32": {"accuracy": 0.9}}, {"fp32": {"status": "runs"}}, 0.0, True, [])
    assert plan == {"firmware_schemes": ["fp32"], "recover": False, "reason": "", "loss_points": None}
