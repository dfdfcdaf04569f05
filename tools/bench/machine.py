"""The machine and the timing helpers every part of the benchmark shares."""

import contextlib
import datetime
import importlib.metadata
import math
import multiprocessing
import os
import platform
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

PACKAGES = (
    "tensorflow-cpu",
    "keras",
    "ai-edge-litert",
    "tflite-micro",
    "numpy",
    "pandas",
    "snakemake",
    "tinyml-quant",
    "jax",
    "torch",
)
# Instruction-set extensions that decide how fast TensorFlow's and LiteRT's kernels can be.
INTERESTING_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "avx_vnni",
)


def log(message):
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def cpu_seconds(who=resource.RUSAGE_SELF):
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


@contextlib.contextmanager
def stopwatch():
    """``with stopwatch() as timing:`` then ``timing["wall"]`` and ``timing["cpu"]`` (this process, all threads)."""
    timing = {}
    wall, cpu = time.perf_counter(), cpu_seconds()
    yield timing
    timing["wall"], timing["cpu"] = time.perf_counter() - wall, cpu_seconds() - cpu


def best_of(run, repeats, least_seconds=2.0, most=10):
    """The fastest of ``repeats`` timed calls of ``run()`` (a dict with "wall"); fast calls repeat more.

    A call shorter than ``least_seconds / repeats`` is repeated until about
    ``least_seconds`` in all (at most ``most`` calls): one scheduler hiccup
    must not decide a 0.1-second figure.
    """
    results = [run()]
    wanted = repeats if results[0]["wall"] <= 0 else max(repeats, math.ceil(least_seconds / results[0]["wall"]))
    while len(results) < min(wanted, max(most, repeats)):
        results.append(run())
    return min(results, key=lambda result: result["wall"]), results


def _run_logged(function, kwargs, log_path, environment):
    """In the child: ``function(**kwargs)`` with all output (TensorFlow's C++ too) sent to ``log_path``."""
    from tinyml_quant.files import output_to_log

    os.environ.update(environment)
    with output_to_log(log_path):
        return function(**kwargs)


def in_child(function, log_path, environment=None, **kwargs):
    """``function(**kwargs)`` in a fresh (spawned) process: its own TensorFlow, thread pools and memory.

    ``environment`` is set in the child before anything is imported there
    (``TF_ENABLE_ONEDNN_OPTS``, ``KERAS_BACKEND``, ...).
    """
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        try:
            return pool.submit(_run_logged, function, kwargs, str(log_path), dict(environment or {})).result()
        except Exception as error:
            raise RuntimeError(f"bench step {function.__name__} failed ({error}); see {log_path}") from error


def cpu_model_and_flags():
    """The CPU's model name and the instruction-set flags of ``INTERESTING_FLAGS`` it has (from /proc/cpuinfo)."""
    model, flags = platform.processor() or platform.machine(), set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == (platform.processor() or platform.machine()):
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    return model, [flag for flag in INTERESTING_FLAGS if flag in flags]


def machine_info():
    model, flags = cpu_model_and_flags()
    versions = {}
    for package in PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[package] = importlib.metadata.version(package)
    return {
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": model,
        "cpu_flags": flags,
        "machine": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": platform.python_version(),
        "versions": versions,
        "load_average_at_start": os.getloadavg(),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
    }
