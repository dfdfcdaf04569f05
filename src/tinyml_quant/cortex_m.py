"""A latency range for a Cortex-M board without an NPU, estimated from published MLPerf Tiny measurements.

No simulator of a Cortex-M with TensorFlow Lite Micro's and CMSIS-NN's
kernels runs on these machines, so the study does not measure a board's
latency: it estimates a range. MLPerf Tiny publishes the latency of its four
int8 models on one Cortex-M4 board (the NUCLEO-L4R5ZI at 120 MHz) for TFLite
Micro with CMSIS-NN (the reference submission) and for the fastest stack
submitted. Latency x clock / multiply-accumulates is each model's cycles per
MAC; the mean over the models at each end is the range, and a variant's
estimate is its MACs times that range at the board's clock.

The method is checked as far as the published data allow: each model in
turn is left out, the range is calibrated on the other three, and the
estimate is compared with the left-out model's published latency
(``leave_one_out``). MACs count only convolutions and fully-connected layers
(``graph``); the other operators' share of the time differs between models,
which is what those errors show. Everything here is an estimate, labelled so
wherever it is shown; a measured figure of your own board replaces the
configured measurements (``cortex_m_latency`` in the config).
"""

import numpy as np

# The two ends of the range: the fastest stack submitted, and TFLite Micro with CMSIS-NN.
ENDS = ("fastest", "reference")
# MLPerf Tiny's models are int8: the range is for variants whose layers compute in int8.
ESTIMATED_ACTIVATIONS = "int8"


def published_ms(measurement, end):
    """A published measurement's latency in milliseconds, from its median inferences per second."""
    return 1000.0 / measurement[f"{end}_inferences_per_second"]


def cycles_per_mac(latency_ms, macs, clock_mhz):
    """Cycles spent per multiply-accumulate: the latency in cycles over the model's MACs."""
    return latency_ms * 1e-3 * clock_mhz * 1e6 / macs


def calibrated_range(measurements, clock_mhz):
    """``{end: mean cycles per MAC}`` over ``measurements`` (each with its ``macs`` and both ends' throughput)."""
    return {
        end: float(np.mean([cycles_per_mac(published_ms(item, end), item["macs"], clock_mhz) for item in measurements]))
        for end in ENDS
    }


def estimate_ms(macs, clock_mhz, cycles):
    """Milliseconds for ``macs`` multiply-accumulates at ``cycles`` per MAC and ``clock_mhz``."""
    return macs * cycles / (clock_mhz * 1e3)


def leave_one_out(reference):
    """Per published model: the range calibrated on the others, its estimate of that model, and the error."""
    measurements, clock_mhz = reference["measurements"], reference["clock_mhz"]
    rows = []
    for index, held_out in enumerate(measurements):
        others = [item for position, item in enumerate(measurements) if position != index]
        calibrated = calibrated_range(others, clock_mhz)
        row = {"model": held_out["name"], "macs": held_out["macs"]}
        for end in ENDS:
            estimate = estimate_ms(held_out["macs"], clock_mhz, calibrated[end])
            row[f"{end}_published_ms"] = published_ms(held_out, end)
            row[f"{end}_estimate_ms"] = estimate
            row[f"{end}_error_pct"] = 100 * (estimate / published_ms(held_out, end) - 1)
        rows.append(row)
    return rows


def applies(reference, cpu):
    """Whether the range, measured on a Cortex-M4, is given for a board with this processor."""
    return cpu in reference["applies_to"]


def variant_range_ms(macs, board_clock_mhz, reference):
    """``(low, high)`` estimated milliseconds of a variant of ``macs`` MACs on a board at ``board_clock_mhz``."""
    calibrated = calibrated_range(reference["measurements"], reference["clock_mhz"])
    return tuple(estimate_ms(macs, board_clock_mhz, calibrated[end]) for end in ENDS)
