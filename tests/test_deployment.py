"""The deployment plan: which variants get firmware, and which schemes get a mixed-precision variant."""

import pytest

from tinyml_quant.deployment import deployment_plan

EVALUATIONS = {"fp32": {"accuracy": 0.90}, "int8": {"accuracy": 0.87}, "int4": {"accuracy": 0.895}}
MICRO = {scheme: {"status": "runs"} for scheme in ("fp32", "int8", "int16x8", "int4")} | {
    scheme: {"status": "unsupported on TFLite Micro"} for scheme in ("float16", "dynamic_range")
}


@pytest.mark.parametrize(
    ("threshold", "always", "recover"),
    [
        (1.0, False, {"int8": "int8 loses 3.00 points (more than 1)"}),
        (3.0, False, {}),
        (
            5.0,
            True,
            {
                "int8": "listed in diagnostics.always_recover (int8 loses 3.00 points)",
                "int4": "listed in diagnostics.always_recover (int4 loses 0.50 points)",
            },
        ),
    ],
)
def test_the_plan_recovers_each_scheme_past_the_threshold_or_when_asked(threshold, always, recover):
    plan = deployment_plan(EVALUATIONS, MICRO, threshold, always, ["int8", "int4"])
    assert plan["recover"] == recover
    assert plan["loss_points"] == pytest.approx({"int8": 3.0, "int4": 0.5})
    assert plan["firmware_schemes"] == ["fp32", "int8", "int16x8", "int4"]  # in the order of SCHEMES
    if not recover:
        assert plan["reasons"]["int8"] == "int8 loses 3.00 points (at most 3): no fallback"


def test_a_loss_under_one_point_keeps_its_decimals():
    evaluations = {"fp32": {"accuracy": 0.9}, "int8": {"accuracy": 0.8996}}
    plan = deployment_plan(evaluations, MICRO, 0.03, False, ["int8"])
    assert plan["loss_points"]["int8"] == 0.04 and "int8" in plan["recover"]


def test_a_loss_of_exactly_the_threshold_is_not_more_than_it():
    plan = deployment_plan({"fp32": {"accuracy": 0.9}, "int8": {"accuracy": 0.89}}, MICRO, 1.0, False, ["int8"])
    assert plan["recover"] == {}


def test_a_variant_that_was_not_converted_has_nothing_to_recover():
    evaluations = {"fp32": {"accuracy": 0.9}, "int4": {"accuracy": None, "status": "not converted"}}
    plan = deployment_plan(evaluations, MICRO, 0.0, True, ["int4"])
    assert plan["recover"] == {} and plan["reasons"]["int4"] == "not converted: nothing to recover"


def test_the_plan_without_recovered_schemes_recovers_nothing():
    plan = deployment_plan({"fp32": {"accuracy": 0.9}}, {"fp32": {"status": "runs"}}, 0.0, True, [])
    assert plan == {"firmware_schemes": ["fp32"], "recover": {}, "loss_points": {}, "reasons": {}}


def test_a_variant_its_compressor_refused_has_nothing_to_recover_although_it_was_evaluated():
    # int8_lut: the binned model has an accuracy; the compressed file TFLite Micro would run was never made.
    evaluations = {"fp32": {"accuracy": 0.9}, "int8_lut": {"accuracy": 0.8}}
    micro = {**MICRO, "int8_lut": {"status": "not converted", "reason": "TFLite Micro compression: ..."}}
    plan = deployment_plan(evaluations, micro, 0.0, True, ["int8_lut"])
    assert plan["recover"] == {} and plan["reasons"]["int8_lut"] == "not converted: nothing to recover"
