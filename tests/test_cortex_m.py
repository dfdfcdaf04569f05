"""The Cortex-M latency range from MLPerf Tiny's published measurements, and its leave-one-out check."""

import pytest
import yaml

from tinyml_quant import cortex_m

from conftest import REPOSITORY

REFERENCE = yaml.safe_load((REPOSITORY / "config" / "config.yaml").read_text())["cortex_m_latency"]


def test_resnet8s_cycles_per_mac_are_the_published_ones():
    """MLPerf Tiny's ResNet-8: 12.5 M MACs, about 704 ms with TFLite Micro + CMSIS-NN and 168 ms fastest, 120 MHz."""
    (resnet8,) = [item for item in REFERENCE["measurements"] if "ResNet-8" in item["name"]]
    assert cortex_m.published_ms(resnet8, "reference") == pytest.approx(704.2, abs=0.1)
    assert cortex_m.published_ms(resnet8, "fastest") == pytest.approx(167.8, abs=0.1)
    assert cortex_m.cycles_per_mac(704.2, 12_501_632, 120) == pytest.approx(6.76, abs=0.01)
    assert cortex_m.cycles_per_mac(167.8, 12_501_632, 120) == pytest.approx(1.61, abs=0.01)


def test_an_estimate_is_macs_times_cycles_at_the_boards_clock():
    assert cortex_m.estimate_ms(1_000_000, 100, 2.0) == pytest.approx(20.0)  # 2 M cycles at 100 MHz
    low, high = cortex_m.variant_range_ms(12_501_632, 120, REFERENCE)
    calibrated = cortex_m.calibrated_range(REFERENCE["measurements"], 120)
    assert calibrated["fastest"] < calibrated["reference"]
    assert low == pytest.approx(12_501_632 * calibrated["fastest"] / 120e3)
    assert high == pytest.approx(12_501_632 * calibrated["reference"] / 120e3)


def test_leaving_each_model_out_compares_the_estimate_with_its_published_latency():
    rows = cortex_m.leave_one_out(REFERENCE)
    assert len(rows) == len(REFERENCE["measurements"])
    for row, held_out in zip(rows, REFERENCE["measurements"]):
        others = [item for item in REFERENCE["measurements"] if item is not held_out]
        cycles = cortex_m.calibrated_range(others, REFERENCE["clock_mhz"])["reference"]
        expected = cortex_m.estimate_ms(held_out["macs"], REFERENCE["clock_mhz"], cycles)
        assert row["reference_estimate_ms"] == pytest.approx(expected)
        assert row["reference_error_pct"] == pytest.approx(100 * (expected / row["reference_published_ms"] - 1))


def test_the_range_is_given_only_for_the_processors_it_was_measured_for():
    assert cortex_m.applies(REFERENCE, "Cortex-M4F") and not cortex_m.applies(REFERENCE, "Xtensa LX6")
