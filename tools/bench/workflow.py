"""Snakemake's own costs: start-up, parsing, dry and no-op runs, the modules parsing imports, and parallel jobs.

Runs use copies of the workflow (``tools.workflow.Workflow``); whether a run
had nothing to do is read from Snakemake's structured log records (no job
announced), not from its printed text.
"""

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Modules that must not load while Snakemake parses the workflow: each job re-parses it.
HEAVY_MODULES = ("tensorflow", "keras", "ai_edge_litert", "tflite_micro", "matplotlib", "jax", "torch")

MODULES_SCRIPT = """
import json, runpy, sys
arguments, output = sys.argv[1:-1], sys.argv[-1]
sys.argv = ["snakemake", *arguments]
try:
    runpy.run_module("snakemake", run_name="__main__")
except SystemExit:
    pass
with open(output, "w") as handle:
    json.dump(sorted({name.split(".")[0] for name in sys.modules}), handle)
"""


def timed(workflow, *arguments, repeats=3, nothing_to_do=False):
    """Median wall seconds of ``repeats`` runs; with ``nothing_to_do``, each run must announce no job."""
    walls = []
    for _ in range(repeats):
        started = time.perf_counter()
        if nothing_to_do:
            _, announced, _ = workflow.run_logged(*arguments)
            if [job for job in announced if job.rule != "all"]:
                raise RuntimeError(f"snakemake {' '.join(map(str, arguments))} had jobs to do: {announced[:3]}")
        else:
            workflow.run(*arguments)
        walls.append(time.perf_counter() - started)
    return {"wall_s": statistics.median(walls), "runs": walls}


def imported_modules(folder, environment, *arguments):
    """Top-level modules a Snakemake run with ``arguments`` imports in ``folder`` (as a sorted list)."""
    with tempfile.TemporaryDirectory() as scratch:
        output = Path(scratch) / "modules.json"
        subprocess.run(
            [sys.executable, "-c", MODULES_SCRIPT, *arguments, str(output)],
            cwd=folder,
            env=environment,
            capture_output=True,
            text=True,
            check=False,
        )
        return json.loads(output.read_text()) if output.exists() else []


def benchmark_seconds(folder, jobs):
    """``{benchmark path: wall seconds}`` for the jobs whose benchmark file exists under ``folder``."""
    from tinyml_quant.costs import read_benchmark

    measured = {}
    for job in jobs:
        if job.benchmark and (Path(folder) / job.benchmark).is_file():
            measured[job.benchmark] = read_benchmark(Path(folder) / job.benchmark)["s"]
    return measured
