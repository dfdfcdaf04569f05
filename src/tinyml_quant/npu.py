"""Arm Ethos-U NPU estimates from Arm's own compiler, Vela (``ethos-u-vela``): cycles, time, SRAM, flash.

Vela compiles an integer ``.tflite`` file for one NPU configuration (an
accelerator such as ``ethos-u55-128``, a system configuration and a memory
mode of its ``Arm/vela.ini``) and writes a summary of its own performance
estimate: total cycles, the inference time at the system configuration's
clock, the SRAM and flash the compiled model uses. A board's NPU runs at its
own clock (``npu.clock_mhz``, from its datasheet), so its time here is Vela's
cycles at that clock; Vela's own time is kept beside it; and one row per operator,
saying whether it runs on the NPU or falls back to the CPU. Every figure here
is that estimate of Arm's compiler, not a measurement on a board; the CPU's
share of fallen-back operators is not in it.

Vela runs in a child process: a model it cannot compile ends it (an error, or
a crash of its native code), and that is the variant's verdict, with Vela's
reason, not a failed job.
"""

import configparser
import csv
import importlib.util
import logging
import subprocess
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

from .files import write_json, write_text
from .variants import NotConverted, not_converted_fields, read_variant

logger = logging.getLogger(__name__)

COMPILED = "compiled"
UNSUPPORTED = "unsupported by Vela"
VELA_CONFIG = "Arm/vela.ini"
VELA_TIMEOUT_SECONDS = 600


def vela_ini():
    """Vela's own configuration file (its system configurations and memory modes), found without importing Vela."""
    package = importlib.util.find_spec("ethosu")
    if package is None or not package.submodule_search_locations:
        raise ValueError("Arm's Vela compiler (ethos-u-vela) is not installed")
    return Path(next(iter(package.submodule_search_locations))) / "config_files" / VELA_CONFIG


def known_configurations():
    """``(accelerators, system configurations, memory modes)`` that this Vela knows."""
    from ethosu.vela.architecture_features import Accelerator

    parser = configparser.ConfigParser()
    parser.read(vela_ini())
    systems = [section.split(".", 1)[1] for section in parser.sections() if section.startswith("System_Config.")]
    modes = [section.split(".", 1)[1] for section in parser.sections() if section.startswith("Memory_Mode.")]
    return [accelerator.value for accelerator in Accelerator], systems, modes


def check_configuration(npu, where):
    """Problems, each naming ``where`` and the key, with an NPU configuration of a board; [] when Vela knows it."""
    try:
        accelerators, systems, modes = known_configurations()
    except (ImportError, ValueError) as error:  # Vela not installed where the workflow runs
        return [f"{where}.npu: cannot check it: {error}"]
    problems = []
    for key, value, known in (
        ("accelerator", npu.get("accelerator"), accelerators),
        ("system_config", npu.get("system_config"), systems),
        ("memory_mode", npu.get("memory_mode"), modes),
    ):
        if value not in known:
            problems.append(
                f"{where}.npu.{key}: {value!r} is not one Vela {version('ethos-u-vela')} knows; known: {known}"
            )
    return problems


def _read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def vela_command(tflite_path, npu, output_folder):
    return [
        sys.executable,
        "-m",
        "ethosu.vela",
        str(tflite_path),
        "--accelerator-config",
        npu["accelerator"],
        "--config",
        VELA_CONFIG,
        "--system-config",
        npu["system_config"],
        "--memory-mode",
        npu["memory_mode"],
        "--output-dir",
        str(output_folder),
        # Writes the per-layer table (NPU or CPU, cycles, MACs) beside the summary.
        "--verbose-performance",
    ]


def compile_for_npu(tflite_path, npu):
    """``(record, per-layer CSV text or None)`` of Vela compiling ``tflite_path`` for ``npu``."""
    record = {"npu": dict(npu), "vela_version": version("ethos-u-vela"), "estimate": "Arm Vela's own estimate"}
    with tempfile.TemporaryDirectory(prefix="vela-") as folder:
        try:
            completed = subprocess.run(
                vela_command(tflite_path, npu, folder), capture_output=True, text=True, timeout=VELA_TIMEOUT_SECONDS
            )
        except subprocess.TimeoutExpired:
            record.update(status=UNSUPPORTED, reason=f"Vela did not finish in {VELA_TIMEOUT_SECONDS} s")
            return record, None
        summaries = sorted(Path(folder).glob("*_summary_*.csv"))
        layers = sorted(Path(folder).glob("*_per-layer.csv"))
        if completed.returncode != 0 or not summaries or not layers:
            if completed.returncode < 0:
                ending = f"Vela ended with signal {-completed.returncode}"
            elif completed.returncode > 0:
                ending = f"Vela ended with exit status {completed.returncode}"
            else:
                ending = "Vela wrote no performance summary"
            lines = [line.strip() for line in (completed.stderr or completed.stdout).splitlines() if line.strip()]
            reason = lines[-1] if lines else "no output"
            record.update(status=UNSUPPORTED, reason=f"{ending}: {reason}")
            return record, None
        (summary,) = _read_csv(summaries[0])
        operators = _read_csv(layers[0])
        layer_text = layers[0].read_text()
    on_cpu = [row["Original Operator"] for row in operators if row["Target"] != "NPU"]
    record.update(
        status=COMPILED,
        reason=None,
        cycles=int(float(summary["cycles_total"])),
        vela_clock_hz=float(summary["core_clock"]),
        vela_inference_ms=1000.0 * float(summary["inference_time"]),
        # Vela's cycles at the board's own NPU clock: its system configuration's clock is a reference design's.
        clock_hz=npu["clock_mhz"] * 1e6,
        inference_ms=1000.0 * float(summary["cycles_total"]) / (npu["clock_mhz"] * 1e6),
        sram_kb=float(summary["sram_memory_used"]),
        flash_kb=float(summary["off_chip_flash_memory_used"]) + float(summary["on_chip_flash_memory_used"]),
        npu_macs=int(float(summary["nn_macs"])),
        cpu_operators=len(on_cpu),
        cpu_operator_names=sorted(set(on_cpu)),
        operators=len(operators),
    )
    return record, layer_text


def run_npu_estimate(tflite_path, variant, board, npu, output_path, layers_path):
    """Snakemake entry point: Vela's estimate of one variant on one board's NPU; its per-layer table beside it."""
    base = {**{key: value for key, value in variant.items() if key != "board"}, "board": board}
    try:
        read_variant(tflite_path)
    except NotConverted as error:
        write_json(output_path, {**base, "npu": dict(npu), **not_converted_fields(error)})
        write_text(layers_path, "")
        return None
    record, layer_text = compile_for_npu(tflite_path, npu)
    write_json(output_path, {**base, **record})
    write_text(layers_path, layer_text or "")
    logger.info("%s on %s: %s %s", tflite_path, board, record["status"], record.get("inference_ms") or record["reason"])
    return record
