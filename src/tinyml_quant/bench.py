"""Benchmark: evaluation, training, reruns and parallel jobs, each against its baseline, in one run.

    python -m tinyml_quant.bench [--quick] [--default-run DIR] [--output-dir reports]

Every figure is a ratio of two things measured side by side in this run on
this machine (no timed tests): it writes ``bench.md`` and ``bench.csv`` (one
row per figure, with its target) to ``--output-dir`` and prints a summary.

1. Evaluation throughput on CIFAR-10's test set for a ResNet and a MobileNet:
   Keras ``model.predict`` (baseline) against LiteRT as the workflow
   evaluates (``tinyml_quant.evaluation``, the rule's threads and the config's
   batch size), for every scheme; and int16x8's evaluation time against its
   model's training time in a default-config run (``--default-run``).
2. Training throughput: the workflow's ``training.train`` (tf.data) against a
   bare ``model.fit`` on numpy arrays with Keras augmentation layers, steady
   state (first epoch left out).
3. Reruns: Snakemake's start-up, Snakefile parsing, a dry run and a run with
   nothing to do, on a real up-to-date subset of the smoke preset and on the
   full default grid; and which modules parsing the Snakefile imports.
4. Parallel jobs: the subset's conversions and evaluations with ``--cores 1``
   against ``--cores 2``, with every job's CPU use from its benchmark file.
5. A projection of the default and paper presets' wall time on 2, 16 and 128
   cores from the default run's per-job benchmark files.

Data come from the offline mirror (``TINYML_DATASET_MIRROR``, else
``../shared/datasets`` beside the checkout) through ``tinyml_quant.datasets``
into a scratch folder; models are trained here, nothing is read from
``results/``. TensorFlow and LiteRT work in child processes, one per step, so
each gets its own thread pools.
"""

import argparse
import contextlib
import csv
import datetime
import importlib.metadata
import json
import math
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from . import SCHEMES

EVALUATION_MODELS = ("resnet_v1", "mobilenet_v2")
WORKFLOW_PARTS = ("Snakefile", "rules", "scripts", "config", "envs", "report", "profiles")
# Modules that must not load while Snakemake parses the workflow.
HEAVY_MODULES = ("tensorflow", "keras", "ai_edge_litert", "tflite_micro", "matplotlib", "pandas", "numpy",
                 "PIL", "tinyml_quant")  # fmt: skip
TARGETS = {
    "litert_fp32_vs_keras": 1.0,
    "int8_vs_litert_fp32": 1.5,
    "training_vs_bare_fit": 0.9,
    "noop_rerun_s": 3.0,
    "dry_run_s": 3.0,
    "cores2_vs_cores1": 1.7,
}


# --------------------------------------------------------------------------- helpers


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


def _child(name, kwargs, log_path):
    """Run ``name(**kwargs)`` of this module with stdout and stderr (TensorFlow's too) sent to ``log_path``."""
    from .files import output_to_log

    with output_to_log(log_path):
        return globals()[name](**kwargs)


def in_child(name, log_path, **kwargs):
    """``name(**kwargs)`` in a fresh (spawned) process: its own TensorFlow, thread pools and memory."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            return pool.submit(_child, name, kwargs, str(log_path)).result()
        except Exception as error:
            raise RuntimeError(f"bench step {name} failed ({error}); see {log_path}") from error


def rule_threads(workflow, rule):
    """``threads:`` of ``rule`` in the workflow's rule files (1 when it declares none)."""
    for path in sorted((Path(workflow) / "rules").glob("*.smk")):
        match = re.search(rf"^rule {rule}:\n(.*?)(?=^\S|\Z)", path.read_text(), re.MULTILINE | re.DOTALL)
        if match:
            threads = re.search(r"^\s+threads:\s*(\d+)", match.group(1), re.MULTILINE)
            return int(threads.group(1)) if threads else 1
    raise ValueError(f"rule {rule} not found in {workflow}/rules")


def machine_info():
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for package in ("tensorflow-cpu", "tensorflow", "keras", "ai-edge-litert", "tflite-micro", "numpy", "pandas",
                    "snakemake", "tinyml-quant"):  # fmt: skip
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[package] = importlib.metadata.version(package)
    return {
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": model,
        "machine": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": platform.python_version(),
        "versions": versions,
        "load_average_at_start": os.getloadavg(),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
    }


def _subset(count, size, seed=0):
    """``size`` of ``count`` indices, seeded and sorted (the prepared arrays may be sorted by class)."""
    import numpy as np

    if not size or size >= count:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).permutation(count)[:size])


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


# --------------------------------------------------------------------------- child steps (TensorFlow, LiteRT)


def train_step(kind, dataset_path, model_name, architecture, settings, augmentation, threads, train_images,
               model_path=None):  # fmt: skip
    """Train ``model_name`` on ``train_images`` seeded training images; per-epoch wall and CPU seconds.

    ``kind`` "workflow": ``tinyml_quant.training.train`` as the rule runs it
    (tf.data pipeline, seeded, op determinism). "bare": ``model.fit`` on
    in-memory float32 numpy arrays, no determinism, augmentation by Keras
    layers in front of the model (RandomTranslation by up to the crop padding,
    zero filled, for the crop; RandomFlip("horizontal")), with the same model,
    optimizer, batch size and validation split.
    """
    import dataclasses

    import keras

    from .architectures import build_model
    from .datasets import load_prepared
    from .training import configure_tensorflow, make_optimizer, train

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.wall, self.cpu = [], []

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter(), cpu_seconds()

        def on_epoch_end(self, epoch, logs=None):
            self.wall.append(time.perf_counter() - self.started[0])
            self.cpu.append(cpu_seconds() - self.started[1])

    dataset = load_prepared(dataset_path)
    chosen = _subset(len(dataset.y_train), train_images)
    dataset = dataclasses.replace(dataset, x_train=dataset.x_train[chosen], y_train=dataset.y_train[chosen],
                                  x_test=dataset.x_test[:256], y_test=dataset.y_test[:256])  # fmt: skip
    timer = EpochTimer()
    if kind == "workflow":
        model, _, _ = train(dataset, model_name, architecture, settings, augmentation, threads, callbacks=[timer])
        trained_images = len(chosen) - int(round(len(chosen) * settings["validation_split"]))
        pipeline = "tinyml_quant.training.train: tf.data (shuffle, per-image crop and flip, batch, prefetch), op determinism"
    elif kind == "bare":
        configure_tensorflow(threads)  # no seed: no op determinism, as a plain script would run
        keras.utils.set_random_seed(settings["seed"])
        shape = dataset.x_train.shape[1:]
        front = [keras.Input(shape)]
        padding = augmentation.get("random_crop_padding", 0)
        if padding:
            # A random shift of up to ``padding`` pixels, zero filled: pad-and-crop as one Keras layer
            # (identity at inference, unlike ZeroPadding2D + RandomCrop).
            front.append(keras.layers.RandomTranslation(padding / shape[0], padding / shape[1], fill_mode="constant",
                                                        interpolation="nearest"))  # fmt: skip
        if augmentation.get("horizontal_flip"):
            front.append(keras.layers.RandomFlip("horizontal"))
        model = keras.Sequential([*front, build_model(model_name, shape, len(dataset.class_names), **architecture)])
        trained_images = math.ceil(len(chosen) * (1 - settings["validation_split"]))
        model.compile(optimizer=make_optimizer(settings, math.ceil(trained_images / settings["batch_size"])),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])  # fmt: skip
        model.fit(dataset.x_train.astype("float32"), dataset.y_train, batch_size=settings["batch_size"],
                  epochs=settings["epochs"], validation_split=settings["validation_split"], shuffle=True,
                  callbacks=[timer], verbose=0)  # fmt: skip
        pipeline = "model.fit(numpy float32 arrays, shuffle=True); augmentation: " + (
            ", ".join(layer.__class__.__name__ for layer in model.layers[: len(front) - 1]) or "none"
        )
    else:
        raise ValueError(f"unknown training kind {kind!r}")
    if model_path:
        model.save(model_path)
    return {"epoch_wall_s": list(timer.wall), "epoch_cpu_s": list(timer.cpu), "train_images": trained_images,
            "pipeline": pipeline}  # fmt: skip


def evaluation_step(dataset_path, model_path, folder, schemes, conversion_settings, threads, batch_size,
                    test_images, repeats, int16x8_sample):  # fmt: skip
    """Convert the trained model to every scheme, then time Keras predict and LiteRT on the test images.

    Keras: ``model.predict`` at batch 32 (Keras' default) and at the
    evaluation batch size, after one warm-up call each; the faster is the
    baseline. LiteRT "workflow": ``evaluation_interpreters`` + ``predict`` as
    ``run_evaluation`` calls them, interpreters created inside the timing.
    "other": the other layout (one interpreter with ``threads`` threads for
    single-threaded schemes, otherwise ``threads`` one-thread interpreters side
    by side), to show what the workflow's choice buys; int16x8's "other" runs on
    ``int16x8_sample`` images only. The fastest of ``repeats`` runs, more for
    runs under a second (``best_of``); int16x8: one.
    """
    import keras
    import numpy as np

    from .conversion import CALIBRATED_SCHEMES, calibration_images, convert
    from .datasets import load_prepared
    from .evaluation import SINGLE_THREADED_SCHEMES, evaluation_interpreters, load_interpreter, predict
    from .training import configure_tensorflow

    configure_tensorflow(threads)
    dataset = load_prepared(dataset_path)
    images = dataset.x_test[_subset(len(dataset.y_test), test_images)]
    model = keras.models.load_model(model_path)
    result = {"test_images": int(len(images)), "conversion_s": {}, "keras": {}, "litert": {}}

    paths = {}
    for scheme in schemes:
        representative = None
        if scheme in CALIBRATED_SCHEMES:
            settings = conversion_settings[scheme]
            representative = calibration_images(dataset.x_train, settings["calibration_images"],
                                                settings["calibration_seed"])  # fmt: skip
        with stopwatch() as timing:
            flatbuffer = convert(model, scheme, representative)
        paths[scheme] = Path(folder) / f"{scheme}.tflite"
        paths[scheme].write_bytes(flatbuffer)
        result["conversion_s"][scheme] = timing["wall"]

    floats = images.astype("float32")
    keras_classes = None
    for keras_batch in sorted({32, batch_size}):
        model.predict(floats[: 2 * keras_batch], batch_size=keras_batch, verbose=0)
        def keras_run():
            with stopwatch() as timing:
                timing["outputs"] = model.predict(floats, batch_size=keras_batch, verbose=0)
            return timing

        best, _ = best_of(keras_run, repeats)
        keras_classes = best["outputs"].argmax(1)
        result["keras"][keras_batch] = {"images_per_s": len(images) / best["wall"], "cpu_s": best["cpu"],
                                        "wall_s": best["wall"]}  # fmt: skip

    for scheme in schemes:
        single_threaded = scheme in SINGLE_THREADED_SCHEMES
        def workflow_run():
            with stopwatch() as timing:
                interpreters = evaluation_interpreters(paths[scheme], scheme, threads)
                timing["outputs"], timing["invoke"] = predict(interpreters, images, batch_size)
            timing["interpreters"] = len(interpreters)
            return timing

        best, runs = best_of(workflow_run, 1 if single_threaded else repeats, 0 if single_threaded else 2.0)
        classes = best["outputs"].argmax(1)
        interpreters = [None] * best["interpreters"]
        entry = {
            "images_per_s": len(images) / best["wall"], "wall_s": best["wall"], "cpu_s": best["cpu"],
            "invoke_images_per_s": len(images) / best["invoke"], "interpreters": len(interpreters), "file_bytes": paths[scheme].stat().st_size,
            "agreement_with_keras": float(np.mean(classes == keras_classes)),
        }  # fmt: skip
        # The other layout, for comparison; its predictions must equal the workflow's.
        sample = len(images) if not single_threaded else min(len(images), int16x8_sample)
        def other_run():
            with stopwatch() as timing:
                if single_threaded or threads == 1:
                    other = [load_interpreter(paths[scheme], threads)]
                else:
                    other = [load_interpreter(paths[scheme], 1) for _ in range(threads)]
                timing["outputs"], _ = predict(other, images[:sample], batch_size)
            timing["interpreters"] = len(other)
            return timing

        best, _ = best_of(other_run, 1 if single_threaded else repeats, 0 if single_threaded else 2.0)
        other, other_outputs = [None] * best["interpreters"], best["outputs"]
        entry["other"] = {
            "layout": f"1 interpreter x {threads} threads" if len(other) == 1 else f"{len(other)} interpreters x 1 thread",
            "images": sample, "images_per_s": sample / best["wall"], "cpu_s": best["cpu"],
            "same_predictions": bool(np.array_equal(other_outputs.argmax(1), classes[:sample])),
        }  # fmt: skip
        entry["layout"] = f"1 interpreter x {threads} threads" if len(interpreters) == 1 else f"{len(interpreters)} interpreters x 1 thread"
        result["litert"][scheme] = entry
    return result


def macs_step(shapes, architectures):
    """Multiply-accumulates of one forward pass of each model: ``{"<dataset>/<model>/<preset>": macs}``."""
    from .architectures import build_model

    macs = {}
    for dataset, shape in shapes.items():
        for preset, knobs in architectures.items():
            for model_name, architecture in knobs.items():
                model = build_model(model_name, shape, 10, **architecture)
                macs[f"{dataset}/{model_name}/{preset}"] = keras_macs(model)
    return macs


def keras_macs(model):
    """MACs of the convolutions and dense layers of a built Keras model (batch 1)."""
    def layers(parent):
        for layer in parent.layers:
            yield from layers(layer) if hasattr(layer, "layers") else [layer]

    total = 0
    for layer in layers(model):
        kind = layer.__class__.__name__
        if kind not in ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense"):
            continue
        out = math.prod(int(size) for size in layer.output.shape[1:])
        if kind == "Conv2D":
            total += out * math.prod(int(size) for size in layer.kernel.shape[:3])  # (kh, kw, cin / groups, cout)
        elif kind == "DepthwiseConv2D":
            total += out * int(layer.kernel.shape[0]) * int(layer.kernel.shape[1])
        elif kind == "SeparableConv2D":
            depthwise, pointwise = layer.depthwise_kernel.shape, layer.pointwise_kernel.shape
            spatial = out // int(pointwise[-1])
            total += spatial * math.prod(int(size) for size in depthwise) + out * int(pointwise[2])
        else:
            total += out * int(layer.kernel.shape[0])
    return total


# --------------------------------------------------------------------------- Snakemake


class Workflow:
    """A copy of the workflow in a scratch folder, run with this Python's Snakemake."""

    def __init__(self, source, folder, mirror):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True)
        for part in WORKFLOW_PARTS:
            origin = Path(source) / part
            if origin.is_dir():
                shutil.copytree(origin, self.folder / part)
            elif origin.is_file():
                shutil.copy2(origin, self.folder / part)
        self.environment = {**os.environ, "TINYML_DATASET_MIRROR": str(mirror)}

    def run(self, *arguments, check=True):
        """``(completed process, wall seconds, CPU seconds of Snakemake and its jobs)``."""
        cpu = cpu_seconds(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "snakemake", *arguments], cwd=self.folder,
                                env=self.environment, capture_output=True, text=True)  # fmt: skip
        wall = time.perf_counter() - started
        if check and result.returncode:
            raise RuntimeError(f"snakemake {' '.join(arguments)} failed in {self.folder}:\n{result.stdout[-3000:]}"
                               f"\n{result.stderr[-3000:]}")  # fmt: skip
        return result, wall, cpu_seconds(resource.RUSAGE_CHILDREN) - cpu

    def timed(self, *arguments, repeats=3, expect=None):
        """Median wall and CPU seconds of ``repeats`` runs; ``expect``: text the output must hold."""
        walls, cpus = [], []
        for _ in range(repeats):
            result, wall, cpu = self.run(*arguments)
            if expect and expect not in result.stdout + result.stderr:
                raise RuntimeError(f"snakemake {' '.join(arguments)}: expected {expect!r} in its output:\n"
                                   f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}")  # fmt: skip
            walls.append(wall)
            cpus.append(cpu)
        return {"wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus), "runs": walls}

    def write_config(self, name, change):
        (self.folder / name).write_text(yaml.safe_dump(change))
        return name


def imported_modules(folder, environment):
    """Top-level modules ``snakemake --list-rules`` imports in ``folder``, with their own import seconds."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "snakemake", "--list-rules"], cwd=folder,
                            env=environment, capture_output=True, text=True)  # fmt: skip
    modules = {}
    for line in result.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s+(\S+)", line)
        if match:
            top = match.group(2).split(".")[0]
            modules[top] = modules.get(top, 0.0) + int(match.group(1)) / 1e6
    return modules


def fake_up_to_date(workflow_folder, dry_run_text):
    """Create every product of a dry run's jobs, empty, each newer than what it needs: an up-to-date grid."""
    from .costs import job_graph, parse_dry_run

    jobs = parse_dry_run(dry_run_text)
    needs = job_graph(jobs)
    depth = {}

    def level(key):
        if key not in depth:
            depth[key] = 1 + max((level(other) for other in needs[key]), default=0)
        return depth[key]

    # One second per level, ending now: newer than the workflow's scripts (an output older
    # than its rule's script reruns) and never in the future.
    base = time.time() - max(level(key) for key in jobs) - 1
    for key, job in jobs.items():
        stamp = base + level(key)
        for product in job["products"]:
            path = Path(workflow_folder) / product
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
            os.utime(path, (stamp, stamp))
    return len(jobs)


def benchmark_records(folder, paths):
    from .costs import read_benchmark

    return {path: read_benchmark(Path(folder) / path) for path in paths}


# --------------------------------------------------------------------------- the benchmark


class Report:
    def __init__(self):
        self.rows, self.sections = [], []

    def figure(self, section, metric, value, unit, model="", baseline=None, target=None, higher_is_better=True,
               note=""):  # fmt: skip
        """One figure; with a baseline its ratio (value / baseline) is checked against ``target``."""
        ratio = value / baseline if baseline else None
        checked = ratio if baseline is not None else value
        met = None
        if target is not None and checked is not None:
            met = checked >= target if higher_is_better else checked <= target
        self.rows.append({"section": section, "metric": metric, "model": model, "value": value, "unit": unit,
                          "baseline": baseline, "ratio": ratio, "target": target,
                          "target_kind": None if target is None else (">=" if higher_is_better else "<="),
                          "met": met, "note": note})  # fmt: skip
        return ratio

    def add(self, text):
        self.sections.append(text)

    def targets(self):
        return [row for row in self.rows if row["target"] is not None]


def _fmt(value, digits=2):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, (int,)) or (isinstance(value, float) and abs(value) >= 100):
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def bench_training_and_evaluation(args, report, config, data_path, scratch, threads, batch_size):
    """Sections 1 and 2; returns the evaluation results per model (for the int16x8 comparison)."""
    settings = {key: value for key, value in config["training"].items() if key not in ("augmentation", "per_model")}
    settings["epochs"] = args.epochs
    augmentation = config["training"]["augmentation"]["cifar10"]
    train_threads = rule_threads(args.workflow, "train_model")
    training, evaluations = {}, {}
    for model_name in args.models:
        architecture = config["architectures"][model_name]
        folder = scratch / "models" / model_name
        folder.mkdir(parents=True, exist_ok=True)
        common = {"dataset_path": str(data_path), "model_name": model_name, "architecture": architecture,
                  "settings": settings, "augmentation": augmentation, "threads": train_threads,
                  "train_images": args.train_images}  # fmt: skip
        training[model_name] = {}
        if "training" in args.parts or "evaluation" in args.parts:
            log(f"training {model_name} the workflow's way ({args.train_images} images, {args.epochs} epochs)")
            training[model_name]["workflow"] = in_child("train_step", scratch / "logs" / f"train_{model_name}.log",
                                                        kind="workflow", model_path=str(folder / "model.keras"),
                                                        **common)  # fmt: skip
        if "training" in args.parts:
            log(f"training {model_name} with a bare model.fit")
            training[model_name]["bare"] = in_child("train_step", scratch / "logs" / f"bare_{model_name}.log",
                                                    kind="bare", **common)  # fmt: skip
        if "evaluation" in args.parts:
            log(f"converting and evaluating {model_name} ({args.test_images or 'all'} test images)")
            evaluations[model_name] = in_child(
                "evaluation_step", scratch / "logs" / f"evaluate_{model_name}.log",
                dataset_path=str(data_path), model_path=str(folder / "model.keras"), folder=str(folder),
                schemes=list(SCHEMES), conversion_settings=config["conversion"], threads=threads,
                batch_size=batch_size, test_images=args.test_images, repeats=args.repeats,
                int16x8_sample=args.int16x8_sample,
            )  # fmt: skip

    if evaluations:
        rows = []
        for model_name, result in evaluations.items():
            keras_best = max(result["keras"].items(), key=lambda item: item[1]["images_per_s"])
            keras_rate = keras_best[1]["images_per_s"]
            for keras_batch, entry in sorted(result["keras"].items()):
                rows.append([model_name, f"Keras predict, batch {keras_batch}, TF {threads} threads",
                             _fmt(entry["images_per_s"]), _fmt(result["test_images"] / entry["cpu_s"]), "",
                             "baseline" if keras_batch == keras_best[0] else "", "", ""])  # fmt: skip
            report.figure("evaluation", "keras_predict_images_per_s", keras_rate, "images/s", model_name,
                          note=f"best of batch sizes {sorted(result['keras'])}")  # fmt: skip
            fp32 = result["litert"]["fp32"]["images_per_s"]
            for scheme, entry in result["litert"].items():
                if scheme == "fp32":
                    ratio = report.figure("evaluation", "litert_fp32_vs_keras", fp32, "images/s", model_name,
                                          baseline=keras_rate, target=TARGETS["litert_fp32_vs_keras"])  # fmt: skip
                    versus = f"{ratio:.2f}x Keras (target >= {TARGETS['litert_fp32_vs_keras']})"
                elif scheme == "int8":
                    ratio = report.figure("evaluation", "int8_vs_litert_fp32", entry["images_per_s"], "images/s",
                                          model_name, baseline=fp32, target=TARGETS["int8_vs_litert_fp32"])  # fmt: skip
                    kernels = report.figure("evaluation", "int8_vs_litert_fp32_invoke_only", entry["invoke_images_per_s"],
                                            "images/s", model_name, baseline=result["litert"]["fp32"]["invoke_images_per_s"],
                                            note="time inside Interpreter.invoke only: LiteRT's kernels")  # fmt: skip
                    versus = f"{ratio:.2f}x fp32 (target >= {TARGETS['int8_vs_litert_fp32']}); invoke only {kernels:.2f}x"
                else:
                    ratio = report.figure("evaluation", f"{scheme}_vs_litert_fp32", entry["images_per_s"],
                                          "images/s", model_name, baseline=fp32)  # fmt: skip
                    versus = f"{ratio:.2f}x fp32"
                other = entry["other"]
                report.figure("evaluation", f"{scheme}_other_layout_vs_workflow", other["images_per_s"], "images/s",
                              model_name, baseline=entry["images_per_s"],
                              note=f"{other['layout']} on {other['images']} images")  # fmt: skip
                rows.append([model_name, f"LiteRT {scheme}: {entry['layout']}", _fmt(entry["images_per_s"]),
                             _fmt(result["test_images"] / entry["cpu_s"]), _fmt(entry["invoke_images_per_s"]), versus,
                             f"{other['layout']}: {_fmt(other['images_per_s'])}"
                             + ("" if other["images"] == result["test_images"] else f" ({other['images']} images)"),
                             _fmt(other["same_predictions"])])  # fmt: skip
        first = next(iter(evaluations.values()))
        report.add(
            "## 1. Evaluation throughput\n\n"
            f"CIFAR-10 test images: {first['test_images']}"
            + (" (the full test set)" if first["test_images"] == 10000 else " (a seeded subset: not the full test set)")
            + f". Models trained here ({args.train_images} images, {args.epochs} epochs: throughput does not depend on "
            f"accuracy). LiteRT runs as `tinyml_quant.evaluation.run_evaluation` does: "
            f"`evaluation_interpreters` + `predict`, batch {batch_size} (config `evaluation.batch_size`), "
            f"{threads} threads (rule `evaluate_model`), interpreter creation inside the timing; XNNPACK is "
            "LiteRT's default delegate for fp32, float16, int8 and partly dynamic_range; int16x8 runs TFLite's "
            "reference integer kernels, single-threaded, so the workflow runs it on "
            f"{threads} one-thread interpreters side by side. Keras: `model.predict` after a warm-up call, TensorFlow "
            f"with {threads} threads; the faster batch size is the baseline. Fastest of at least {args.repeats} runs "
            "(more, up to 10, for runs under a second; int16x8: one). \"CPU\" is images per CPU-second of the process (robust to other load); \"invoke only\" "
            "counts only the time inside `Interpreter.invoke` (the busiest interpreter's): LiteRT's kernels without "
            "input conversion, copies or set-up. The last columns time the other interpreter layout and check that "
            "its predictions are identical.\n\n"
            + _table(["model", "how", "images/s", "images/CPU-s", "invoke only (images/s)", "ratio",
                      "other layout (images/s)", "same predictions"], rows)  # fmt: skip
            + "".join(_int8_diagnosis(model, result) for model, result in evaluations.items())
            + "\nConversion (TFLiteConverter, seconds per scheme, informative): "
            + "; ".join(f"{model}: " + ", ".join(f"{scheme} {seconds:.1f}" for scheme, seconds in r["conversion_s"].items())
                        for model, r in evaluations.items())  # fmt: skip
            + "\n"
        )
    if any("bare" in runs for runs in training.values()):
        rows = []
        for model_name, runs in training.items():
            rates, cpu_rates = {}, {}
            for kind, run in runs.items():
                steady = run["epoch_wall_s"][1:] or run["epoch_wall_s"]
                steady_cpu = run["epoch_cpu_s"][1:] or run["epoch_cpu_s"]
                rates[kind] = run["train_images"] / statistics.median(steady)
                cpu_rates[kind] = run["train_images"] / statistics.median(steady_cpu)
                rows.append([model_name, kind, run["pipeline"], run["train_images"],
                             ", ".join(f"{value:.1f}" for value in run["epoch_wall_s"]), _fmt(rates[kind]),
                             _fmt(cpu_rates[kind])])  # fmt: skip
            if "bare" in rates and "workflow" in rates:
                ratio = report.figure("training", "training_vs_bare_fit", rates["workflow"], "images/s", model_name,
                                      baseline=rates["bare"], target=TARGETS["training_vs_bare_fit"])  # fmt: skip
                cpu_ratio = report.figure("training", "training_vs_bare_fit_per_cpu_second", cpu_rates["workflow"],
                                          "images/CPU-s", model_name, baseline=cpu_rates["bare"])  # fmt: skip
                rows.append([model_name, "**ratio**", "workflow / bare", "", "", f"**{ratio:.2f}x**",
                             f"{cpu_ratio:.2f}x"])  # fmt: skip
        report.add(
            "## 2. Training throughput\n\n"
            f"CIFAR-10, {args.train_images} training images (10% held out for validation as in the config), batch "
            f"{settings['batch_size']}, {settings['optimizer']}, {args.epochs} epochs, TensorFlow with {train_threads} "
            "threads (rule `train_model`), each run in its own process. Throughput = training images / median epoch "
            "wall time over the steady-state epochs (the first, which traces and compiles, is left out; the median "
            "so that one epoch slowed by something else on the machine does not decide; an epoch includes its "
            "validation pass in both). Augmentation as the config says for CIFAR-10 (crop after "
            f"{augmentation.get('random_crop_padding', 0)}-pixel zero padding, horizontal flip): per image in "
            "tf.data in the workflow; in the baseline Keras preprocessing layers inside the model, on the batch "
            "(RandomTranslation by up to the padding, zero filled, nearest pixel: the same shifts; RandomFlip).\n\n"
            + _table(["model", "run", "pipeline", "images/epoch", "epoch wall (s)", "images/s (steady)",
                      "images/CPU-s"], rows)  # fmt: skip
        )
    return training, evaluations


def _int8_diagnosis(model_name, result):
    """A sentence on where a missed int8 target is lost: LiteRT's kernels or the evaluation loop around them."""
    int8, fp32 = result["litert"]["int8"], result["litert"]["fp32"]
    overall = int8["images_per_s"] / fp32["images_per_s"]
    if overall >= TARGETS["int8_vs_litert_fp32"]:
        return ""
    kernels = int8["invoke_images_per_s"] / fp32["invoke_images_per_s"]
    where = ("LiteRT's int8 kernels (XNNPACK) are themselves not that much faster than its fp32 kernels on this model, "
             "so no change to the evaluation loop can reach the target" if kernels < TARGETS["int8_vs_litert_fp32"]
             else "the loop around `invoke` (input conversion, copies, set-up) loses the difference")  # fmt: skip
    return (f"\n{model_name}: int8 is {overall:.2f}x fp32 as the workflow evaluates, and {kernels:.2f}x inside "
            f"`invoke` alone: {where}.\n")


def bench_workflow(args, report, scratch, mirror):
    """Sections 3 and 4: reruns, parsing, imports and parallel jobs, in copies of the workflow."""
    cores = 2
    models = ["custom"] if args.quick else ["custom", "resnet_v1"]
    subset_change = {"datasets": ["mnist"], "models": models}
    subset = Workflow(args.workflow, scratch / "workflow_subset", mirror)
    config_arguments = ["--configfile", "config/smoke.yaml", subset.write_config("bench_subset.yaml", subset_change)]
    log(f"running the smoke preset on mnist x {models} once (the up-to-date folder for the rerun timings)")
    _, first_wall, _ = subset.run("--cores", str(cores), *config_arguments)

    log("timing Snakemake start-up, parsing, no-op runs and dry runs")
    repeats = 1 if args.quick else 3
    startup = subset.timed("--version", repeats=repeats)
    parse = subset.timed("--list-rules", repeats=repeats)
    noop = subset.timed("--cores", str(cores), *config_arguments, repeats=repeats, expect="Nothing to be done")
    dry = subset.timed("--dry-run", *config_arguments, repeats=repeats, expect="Nothing to be done")

    default = Workflow(args.workflow, scratch / "workflow_default", mirror)
    fresh_dry = default.timed("--dry-run", "--cores", "128", repeats=repeats)
    dry_text, _, _ = default.run("--dry-run", "--cores", "128")
    job_count = fake_up_to_date(default.folder, dry_text.stdout)
    default_dry = default.timed("--dry-run", repeats=repeats, expect="Nothing to be done")
    default_noop = default.timed("--cores", str(cores), repeats=repeats, expect="Nothing to be done")

    report.figure("reruns", "noop_rerun_s", noop["wall_s"], "s", "smoke subset", target=TARGETS["noop_rerun_s"],
                  higher_is_better=False, note="real up-to-date outputs")  # fmt: skip
    report.figure("reruns", "dry_run_s", dry["wall_s"], "s", "smoke subset", target=TARGETS["dry_run_s"],
                  higher_is_better=False)  # fmt: skip
    report.figure("reruns", "noop_rerun_s", default_noop["wall_s"], "s", "default config",
                  target=TARGETS["noop_rerun_s"], higher_is_better=False,
                  note=f"{job_count} jobs' products created empty and up to date")  # fmt: skip
    report.figure("reruns", "dry_run_s", default_dry["wall_s"], "s", "default config", target=TARGETS["dry_run_s"],
                  higher_is_better=False)  # fmt: skip
    report.figure("reruns", "dry_run_fresh_s", fresh_dry["wall_s"], "s", "default config", target=TARGETS["dry_run_s"],
                  higher_is_better=False, note="nothing exists yet: plans every job")  # fmt: skip
    report.figure("reruns", "snakemake_startup_s", startup["wall_s"], "s", note="snakemake --version")
    report.figure("reruns", "snakefile_parse_s", parse["wall_s"] - startup["wall_s"], "s",
                  note="snakemake --list-rules minus --version")  # fmt: skip

    empty = scratch / "empty_workflow"
    empty.mkdir()
    (empty / "Snakefile").write_text('rule a:\n    output:\n        "a"\n    shell:\n        "touch a"\n')
    ours = imported_modules(subset.folder, subset.environment)
    baseline = imported_modules(empty, subset.environment)
    extra = {name: seconds for name, seconds in ours.items() if name not in baseline}
    heavy_extra = sorted(set(extra) & set(HEAVY_MODULES))
    heavy_snakemake = sorted(set(baseline) & set(HEAVY_MODULES))
    report.figure("reruns", "heavy_modules_imported_by_rule_files", len(heavy_extra), "modules", target=0,
                  higher_is_better=False, note=", ".join(heavy_extra) or "none")  # fmt: skip

    rows = [
        ["Python + `import snakemake` (`snakemake --version`)", "", _fmt(startup["wall_s"]), _fmt(startup["cpu_s"]), ""],
        ["Snakefile parsing alone (`--list-rules` minus `--version`)", "", _fmt(parse["wall_s"] - startup["wall_s"]),
         _fmt(parse["cpu_s"] - startup["cpu_s"]), ""],
        [f"no-op run (`--cores {cores}`), nothing to do", f"smoke, mnist x {len(models)} models", _fmt(noop["wall_s"]),
         _fmt(noop["cpu_s"]), f"<= {TARGETS['noop_rerun_s']}"],
        ["dry run (`-n`), nothing to do", f"smoke, mnist x {len(models)} models", _fmt(dry["wall_s"]),
         _fmt(dry["cpu_s"]), f"<= {TARGETS['dry_run_s']}"],
        [f"no-op run (`--cores {cores}`), nothing to do", f"default, {job_count} jobs", _fmt(default_noop["wall_s"]),
         _fmt(default_noop["cpu_s"]), f"<= {TARGETS['noop_rerun_s']}"],
        ["dry run (`-n`), nothing to do", f"default, {job_count} jobs", _fmt(default_dry["wall_s"]),
         _fmt(default_dry["cpu_s"]), f"<= {TARGETS['dry_run_s']}"],
        ["dry run (`-n`) planning every job", f"default, {job_count} jobs", _fmt(fresh_dry["wall_s"]),
         _fmt(fresh_dry["cpu_s"]), ""],
    ]  # fmt: skip
    report.add(
        "## 3. Reruns\n\n"
        f"Median of {repeats} runs each of `python -m snakemake ...` in copies of the workflow (wall and CPU "
        "seconds, Snakemake and any job it runs). The smoke subset (mnist, models "
        f"{', '.join(models)}) ran once for real first ({first_wall:.0f} s), so its outputs are up to date with "
        "Snakemake's metadata. The default-config folder holds every output, log and benchmark file of the "
        f"{job_count} jobs, created empty in dependency order: the full default DAG with nothing to do (no "
        "metadata records, so Snakemake skips its parameter and code checks there).\n\n"
        + _table(["what", "workflow", "wall (s)", "CPU (s)", "target (s)"], rows)
        + "\nModules imported while parsing (`python -X importtime -m snakemake --list-rules`), beyond those "
        "Snakemake imports for an empty Snakefile: "
        + (", ".join(f"{name} ({seconds:.2f} s)" for name, seconds in sorted(extra.items(), key=lambda i: -i[1])[:8])
           or "none")  # fmt: skip
        + f". Heavy modules among them: **{', '.join(heavy_extra) or 'none'}**. Heavy modules Snakemake itself "
        f"imports with any Snakefile: {', '.join(heavy_snakemake) or 'none'}.\n"
    )

    # Parallel jobs: the subset's conversions and evaluations, forced, with 1 then 2 cores.
    targets = [f"results/evaluate/mnist/{model}/{scheme}.json" for model in models for scheme in SCHEMES]
    job_paths = [f"benchmarks/{rule}/mnist/{model}/{scheme}.tsv" for rule in ("convert_model", "evaluate_model")
                 for model in models for scheme in SCHEMES]  # fmt: skip
    from .costs import job_graph, parse_dry_run, simulate

    forced = ("--forcerun", "convert_model", "evaluate_model", "--", *targets)
    planned, _, _ = subset.run("--dry-run", "--cores", str(cores), *config_arguments, *forced)
    jobs = parse_dry_run(planned.stdout)
    jobs = {key: job for key, job in jobs.items() if job["benchmark"] in job_paths}
    runs = {}
    for count in (1, cores):
        log(f"conversions and evaluations of the subset, forced, --cores {count}")
        _, wall, cpu = subset.run("--cores", str(count), *config_arguments, *forced)
        records = benchmark_records(subset.folder, job_paths)
        evaluation_threads = sorted({json.loads((subset.folder / target).read_text())["threads"] for target in targets})
        busy = [record["cpu_time"] / record["s"] for record in records.values() if record["s"] > 0]
        runs[count] = {"wall_s": wall, "cpu_s": cpu, "job_s": sum(record["s"] for record in records.values()),
                       "job_cpu_s": sum(record["cpu_time"] for record in records.values()),
                       "max_job_busy": max(busy), "evaluation_threads": evaluation_threads,
                       "seconds": {key: records[job["benchmark"]]["s"] for key, job in jobs.items()}}  # fmt: skip
    # What the scheduler alone allows: the --cores 1 job times, list-scheduled on 2 cores with each
    # rule's threads, plus the --cores 1 run's time outside jobs (Snakemake's start-up and bookkeeping).
    one = runs[1]
    needs = {key: [other for other in required if other in jobs] for key, required in job_graph(jobs).items()
             if key in jobs}  # fmt: skip
    threads = {key: job["threads"] for key, job in jobs.items()}
    outside = max(0.0, one["wall_s"] - sum(one["seconds"].values()))
    ideal = outside + simulate(one["seconds"], threads, needs, cores=cores)
    # The same with one-thread evaluations: what `threads: 2` on short evaluation jobs costs here.
    one_thread = {key: 1 for key in threads}
    ideal_one_thread = outside + simulate(one["seconds"], one_thread, needs, cores=cores)
    speedup = one["wall_s"] / runs[cores]["wall_s"]
    report.figure("parallel", "wall_s_at_1_core", one["wall_s"], "s", "smoke subset", note=f"{len(jobs)} jobs")
    report.figure("parallel", f"wall_s_at_{cores}_cores", runs[cores]["wall_s"], "s", "smoke subset")
    report.figure("parallel", f"cores{cores}_vs_cores1", speedup, "x", "smoke subset",
                  target=TARGETS["cores2_vs_cores1"], note="wall at --cores 1 / wall at --cores 2")  # fmt: skip
    report.figure("parallel", f"cores{cores}_vs_cores1_scheduling_bound", one["wall_s"] / ideal, "x", "smoke subset",
                  note="--cores 1 job times list-scheduled on 2 cores: the most the job graph and threads allow")  # fmt: skip
    report.figure("parallel", f"cores{cores}_vs_cores1_scheduling_bound_one_thread_jobs", one["wall_s"] / ideal_one_thread,
                  "x", "smoke subset", note="the same if every job took one thread")  # fmt: skip
    for count, run in runs.items():
        report.figure("parallel", f"mean_busy_cores_at_{count}", run["cpu_s"] / run["wall_s"], "cores",
                      "smoke subset", target=round(count * 1.05, 2), higher_is_better=False,
                      note="CPU of Snakemake and every job / wall; 5% allowance for Snakemake's own process")  # fmt: skip
        report.figure("parallel", f"max_job_busy_threads_at_{count}", run["max_job_busy"], "threads", "smoke subset",
                      target=count, higher_is_better=False, note="cpu_time / s of the busiest job")  # fmt: skip
    rows = [[count, _fmt(run["wall_s"]), _fmt(run["job_s"]), _fmt(run["cpu_s"]), _fmt(run["cpu_s"] / run["wall_s"]),
             _fmt(run["max_job_busy"]), ", ".join(map(str, run["evaluation_threads"]))]
            for count, run in runs.items()]  # fmt: skip
    report.add(
        "## 4. Parallel jobs\n\n"
        f"The subset's {len(job_paths) // 2} conversions and {len(job_paths) // 2} evaluations (smoke preset, mnist, "
        f"{', '.join(models)}), forced (`--forcerun convert_model evaluate_model`, targets the evaluation JSONs), "
        f"once with `--cores 1` and once with `--cores {cores}`. Wall time of the whole `snakemake` command; CPU "
        "seconds of Snakemake and every job (`RUSAGE_CHILDREN`); per job, `cpu_time / s` from its benchmark file "
        "(Snakemake samples it about once a second: jobs shorter than that read 0); the LiteRT threads each "
        "evaluation used, from its JSON (`threads`: Snakemake's `threads`, scaled down to `--cores`). Conversions "
        "take 1 thread, evaluations 2 (`threads:` of their rules).\n\n"
        + _table(["--cores", "wall (s)", "sum of job wall (s)", "CPU (s)", "mean busy cores (CPU / wall)",
                  "busiest job (cpu_time / s)", "evaluation threads"], rows)  # fmt: skip
        + f"\nSpeed-up `--cores {cores}` over `--cores 1`: **{speedup:.2f}x** (target >= {TARGETS['cores2_vs_cores1']}). "
        f"Scheduling bound: the `--cores 1` job times list-scheduled on {cores} cores with the rules' threads "
        f"(plus the {outside:.1f} s the `--cores 1` run spent outside jobs) give {ideal:.1f} s, "
        f"{one['wall_s'] / ideal:.2f}x: what the job graph allows when jobs side by side do not slow each other "
        f"({one['wall_s'] / ideal_one_thread:.2f}x if evaluations took one thread, so that two could run at once). "
        "A measured speed-up well below it means the jobs competed for the CPU (another load on the machine, "
        "or memory bandwidth).\n"
    )
    return runs


def default_run_figures(default_run):
    """``{benchmarks/... path: seconds}`` of a finished run, and what its results say about its config."""
    from .costs import read_benchmark

    folder = Path(default_run) / "benchmarks"
    measured, mtimes = {}, []
    for path in sorted(folder.rglob("*.tsv")):
        with contextlib.suppress(ValueError):
            seconds = read_benchmark(path)["s"]
            measured[str(Path("benchmarks") / path.relative_to(folder))] = seconds
            mtimes.append((path.stat().st_mtime, seconds))
    described = set()
    for path in Path(default_run).glob("results/train/*/*/test_metrics.json"):
        record = json.loads(path.read_text())
        described.add((record["settings"]["epochs"], record["test_images"]))
    span = max(m for m, _ in mtimes) - min(m - s for m, s in mtimes) if mtimes else None
    return measured, described, span


def bench_int16x8(args, report, evaluations, measured):
    """int16x8 evaluation against the model's training time in the default run."""
    rows = []
    for key, seconds in sorted(measured.items()):
        match = re.fullmatch(r"benchmarks/evaluate_model/(\w+)/(\w+)/int16x8\.tsv", key)
        train = match and measured.get(f"benchmarks/train_model/{match.group(1)}/{match.group(2)}.tsv")
        if train:
            rows.append([match.group(1), match.group(2), "default run (evaluate_model job)", _fmt(seconds), _fmt(train),
                         f"{seconds / train:.2f}"])  # fmt: skip
            report.figure("int16x8", "int16x8_evaluation_vs_training", seconds, "s",
                          f"{match.group(1)}/{match.group(2)}", baseline=train, note="default run's benchmark files")  # fmt: skip
    for model_name, result in evaluations.items():
        entry = result["litert"]["int16x8"]
        seconds = entry["wall_s"] * 10000 / result["test_images"]
        train = measured.get(f"benchmarks/train_model/cifar10/{model_name}.tsv")
        rows.append(["cifar10", model_name, f"this bench ({entry['layout']}, per 10,000 images)", _fmt(seconds),
                     _fmt(train), f"{seconds / train:.2f}" if train else "n/a"])  # fmt: skip
        report.figure("int16x8", "int16x8_evaluation_s_per_10000", seconds, "s", model_name,
                      baseline=train, note=entry["layout"])  # fmt: skip
    report.add(
        "## 5. int16x8 evaluation against training\n\n"
        "int16x8 (16-bit activations) has no XNNPACK kernels and LiteRT runs it on TFLite's single-threaded "
        "reference integer kernels: the slowest evaluation by far. Ratio = one int16x8 evaluation (10,000 test "
        "images) / the same model's training on the default config (`--default-run`'s benchmark files, column "
        "`s`). The default run's evaluations ran before the workflow evaluated int16x8 on several interpreters.\n\n"
        + (_table(["dataset", "model", "int16x8 evaluation from", "evaluation (s)", "training (s)", "ratio"], rows)
           if rows else "No default-run benchmark files found (`--default-run`).\n")  # fmt: skip
    )


def bench_scaling(args, report, scratch, mirror, measured, described, span, evaluations):
    """Section 6: projected wall time of the default and paper presets on 2, 16 and 128 cores."""
    from .costs import durations, jobs_table, parse_dry_run, project, stage_summary

    if not measured:
        report.add("## 6. Scaling\n\nNo default-run benchmark files found (`--default-run`): no projection.\n")
        return
    config = yaml.safe_load((Path(args.workflow) / "config" / "config.yaml").read_text())
    paper = yaml.safe_load((Path(args.workflow) / "config" / "paper.yaml").read_text())
    log("building the default and paper models to count their multiply-accumulates")
    macs = in_child("macs_step", scratch / "logs" / "macs.log", shapes={"mnist": (28, 28, 1), "cifar10": (32, 32, 3)},
                    architectures={"default": config["architectures"],
                                   "paper": {**config["architectures"], **paper.get("architectures", {})}})  # fmt: skip
    epochs_ratio = paper.get("training", {}).get("epochs", config["training"]["epochs"]) / config["training"]["epochs"]

    def paper_scale(job):
        match = re.search(r"dataset=(\w+), model=(\w+)", job["wildcards"])
        if not match or job["rule"] in ("analyze_graph",):
            return 1.0
        ratio = macs[f"{match.group(1)}/{match.group(2)}/paper"] / macs[f"{match.group(1)}/{match.group(2)}/default"]
        return ratio * (epochs_ratio if job["rule"] == "train_model" else 1.0)

    folder = Workflow(args.workflow, scratch / "workflow_scaling", mirror)
    projections = {}
    # The default run's int16x8 evaluations may predate their several interpreters: this run's
    # speed-up of the workflow's layout over one interpreter, where it was measured.
    speedups = [result["litert"]["int16x8"]["images_per_s"] / result["litert"]["int16x8"]["other"]["images_per_s"]
                for result in evaluations.values()]  # fmt: skip
    int16x8_factor = 1 / statistics.median(speedups) if speedups else None

    def int16x8_scale(job):
        return int16x8_factor if job["rule"] == "evaluate_model" and "scheme=int16x8" in job["wildcards"] else 1.0

    presets = [("default", (), None), ("paper", ("--configfile", "config/paper.yaml"), paper_scale)]
    if int16x8_factor:
        presets.insert(1, (f"default, int16x8 evaluations / {1 / int16x8_factor:.2f}", (), int16x8_scale))
    for preset, arguments, scale in presets:
        result, _, _ = folder.run("--dry-run", "--cores", "128", *arguments)
        jobs = parse_dry_run(result.stdout)
        seconds, estimated = durations(jobs, measured, scale)
        projection = project(jobs, seconds, core_counts=(2, 16, 128), cluster_jobs=(16, 128))
        projections[preset] = ({**projection, "seconds": seconds}, estimated, jobs)
    def step(job, seconds):
        short = re.sub(r"dataset=|model=|scheme=", "", job["wildcards"]).replace(", ", "/")
        return f"{job['rule']}" + (f" {short}" if short else "") + f" ({seconds:.0f} s)"

    threads_note = next((result["litert"]["int16x8"]["layout"] for result in evaluations.values()), "")
    rows, paths, unmeasured = [], {}, set()
    for preset, (projection, estimated, jobs) in projections.items():
        seconds = projection["seconds"]
        measured_rules = {job["rule"] for key, job in jobs.items() if key not in estimated}
        unmeasured |= {jobs[key]["rule"] for key in estimated} - measured_rules
        paths[preset] = " -> ".join(step(jobs[key], seconds[key]) for key in projection["critical_path"]
                                    if jobs[key]["rule"] != "all")  # fmt: skip
        for cores, value in projection["cores"].items():
            report.figure("scaling", f"projected_wall_s_{cores}_cores", value, "s", preset)
        for count, value in projection["cluster"].items():
            report.figure("scaling", f"projected_wall_s_cluster_{count}_jobs", value, "s", preset)
        report.figure("scaling", "critical_path_s", projection["critical_path_s"], "s", preset, note=paths[preset])
        rows.append([preset, len(jobs) - 1, len(estimated), _hours(projection["core_seconds"]),
                     _hours(projection["critical_path_s"]),
                     *(_hours(value) for value in projection["cores"].values()),
                     *(_hours(value) for value in projection["cluster"].values())])  # fmt: skip
    if span:
        report.figure("scaling", "observed_span_s", span, "s", "default", note="first job start to last job end")
    stages = stage_summary(jobs_table([Path(args.default_run) / key for key in measured]))
    stage_rows = [[row.stage, row.jobs, _fmt(row.wall_s), _fmt(row.share_pct, 1), _fmt(row.max_job_s),
                   _fmt(row.max_rss_mb)] for row in stages.itertuples()]  # fmt: skip
    mac_rows = [[dataset, model, f"{macs[f'{dataset}/{model}/default'] / 1e6:.1f}",
                 f"{macs[f'{dataset}/{model}/paper'] / 1e6:.1f}",
                 f"{macs[f'{dataset}/{model}/paper'] / macs[f'{dataset}/{model}/default']:.1f}"]
                for dataset in ("mnist", "cifar10") for model in config["architectures"]]  # fmt: skip
    report.add(
        "## 6. Scaling: the default and paper presets on more cores\n\n"
        f"From the per-job wall times (`s`) in `{args.default_run}/benchmarks/` ({len(measured)} files"
        + (f"; its results say (epochs, test images) = {sorted(described)}" if described else "")
        + "), over the job graph of a dry run of each preset (`snakemake -n --cores 128`, parsed: every job, its "
        "threads, inputs and products). Assumptions: a job takes as long as it took there (its rule's threads, on "
        "that machine, with whatever else ran beside it) whatever the core count: rules fix their threads, so more "
        "cores run more jobs at once, never one job faster; jobs start greedily, longest remaining chain first, "
        "each taking min(threads, cores) cores (Snakemake `--cores N`), or each on its own cluster node with at "
        "most N at once (`--jobs N`); no queueing, start-up, file-system or memory-bandwidth effects. The critical "
        "path (the longest chain of dependent jobs: a dataset, the slowest training, its conversion and fp32 then "
        "int16x8 evaluation, the report) bounds every projection from below, and total core-seconds / cores "
        "bounds it too. A job the default run has no figure for gets the median of its rule (and scheme)"
        + (f"; rules with no figure at all count as 0 s: {', '.join(sorted(unmeasured))}" if unmeasured else "")
        + ". Paper preset: the same jobs, training scaled by the epochs "
        f"({epochs_ratio:.0f}x) and by the model's multiply-accumulate ratio (paper / default architecture, counted "
        "from the Keras models, below), every other per-model job but graph analysis by that ratio alone: rough, "
        "on CPU; the paper preset is meant for a GPU, where training would be far shorter.\n\n"
        + _table(["preset", "jobs", "estimated", "reserved core-hours (threads x wall)", "critical path (h)", "2 cores (h)", "16 cores (h)",
                  "128 cores (h)", "cluster, 16 jobs (h)", "cluster, 128 jobs (h)"], rows)  # fmt: skip
        + (f"\nThe default run itself took {span / 3600:.2f} h from its first job's start to its last job's end "
           "(2 cores; pauses and restarts included), against the 2-core projection above.\n" if span else "")
        + f"\nCritical path, default: {paths['default']}.\n\nCritical path, paper: {paths['paper']}.\n\n"
        "Multiply-accumulates per image (millions):\n\n"
        + _table(["dataset", "model", "default", "paper", "ratio"], mac_rows)
        + (f"\nRow \"default, int16x8 evaluations / {1 / int16x8_factor:.2f}\": the default run's int16x8 evaluation "
           f"times divided by the speed-up this run measured for the workflow's int16x8 layout ({threads_note}) over "
           "one interpreter (section 1), for a default run whose evaluations predate it.\n" if int16x8_factor else "")
        + "\nThe default run's job time per stage:\n\n"
        + _table(["stage", "jobs", "job wall (s)", "share (%)", "longest job (s)", "peak memory (MB)"], stage_rows)
    )

def _hours(seconds):
    return f"{seconds / 3600:.2f}"


def write_report(report, machine, args, output_dir, started):
    output_dir.mkdir(parents=True, exist_ok=True)
    elapsed = time.perf_counter() - started
    machine["load_average_at_end"] = os.getloadavg()
    target_rows = [[row["section"], row["metric"], row["model"], _fmt(row["value"]),
                    _fmt(row["ratio"]) if row["ratio"] is not None else "", f"{row['target_kind']} {row['target']}",
                    _fmt(row["met"])] for row in report.targets()]  # fmt: skip
    header = [
        "# Benchmark: evaluation, training, reruns and parallel jobs against their baselines\n",
        f"`python -m tinyml_quant.bench {' '.join(args.argv)}` on {machine['date']}, {elapsed / 60:.1f} min in all. "
        "Every ratio compares two things measured side by side in this run.\n",
        _table(["machine", ""], [
            ["cores (os.cpu_count / usable)", f"{machine['cores']} / {machine['usable_cores']}"],
            ["CPU", machine["cpu_model"]],
            ["system", machine["machine"]],
            ["Python", machine["python"]],
            ["libraries", ", ".join(f"{name} {version}" for name, version in machine["versions"].items())],
            ["load average at start / end", f"{machine['load_average_at_start'][0]:.2f} / "
                                            f"{machine['load_average_at_end'][0]:.2f}"],
        ]),  # fmt: skip
        (f"\n**The machine was not idle** (load average {machine['load_average_at_start'][0]:.1f} at the start): "
         "wall-clock figures are pessimistic; the CPU-second columns are less affected.\n"
         if machine["load_average_at_start"][0] > 0.5 else ""),
        "\n## Targets\n\n",
        _table(["section", "figure", "model", "value", "ratio", "target", "met"], target_rows),
    ]
    write = output_dir / "bench.md"
    write.write_text("\n".join([*header, *report.sections]))
    with open(output_dir / "bench.csv", "w", newline="") as handle:
        columns = ["section", "metric", "model", "value", "unit", "baseline", "ratio", "target", "target_kind",
                   "met", "note"]  # fmt: skip
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        machine_rows = [("cores", machine["cores"], "cores"), ("usable_cores", machine["usable_cores"], "cores"),
                        ("cpu_model", machine["cpu_model"], ""), ("python", machine["python"], ""),
                        ("load_average_at_start", machine["load_average_at_start"][0], ""),
                        ("load_average_at_end", machine["load_average_at_end"][0], ""),
                        ("bench_wall_s", elapsed, "s"),
                        *((f"version_{name}", version, "") for name, version in machine["versions"].items())]  # fmt: skip
        for metric, value, unit in machine_rows:
            writer.writerow({"section": "machine", "metric": metric, "value": value, "unit": unit})
        for row in report.rows:
            writer.writerow({key: (f"{value:.6g}" if isinstance(value, float) else value) for key, value in row.items()})
    return elapsed, target_rows


def parse_arguments(argv):
    parser = argparse.ArgumentParser(prog="python -m tinyml_quant.bench", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--workflow", type=Path, default=Path("."), help="the workflow's folder (default: .)")
    parser.add_argument("--mirror", type=Path, default=None,
                        help="offline dataset mirror (default: $TINYML_DATASET_MIRROR, else ../shared/datasets "
                             "beside the workflow)")  # fmt: skip
    parser.add_argument("--output-dir", type=Path, default=None, help="where bench.md and bench.csv go (default: "
                        "<workflow>/reports)")  # fmt: skip
    parser.add_argument("--scratch", type=Path, default=None, help="scratch folder (default: a new temporary one, "
                        "removed at the end unless --keep-scratch)")  # fmt: skip
    parser.add_argument("--keep-scratch", action="store_true")
    parser.add_argument("--default-run", type=Path, default=None,
                        help="a folder where the default config ran (its benchmarks/ and results/): the int16x8 "
                             "comparison and the scaling projection (default: the workflow's folder)")  # fmt: skip
    parser.add_argument("--models", default=",".join(EVALUATION_MODELS), help="models to time (default: %(default)s)")
    parser.add_argument("--train-images", type=int, default=4000, help="CIFAR-10 training images (default: 4000)")
    parser.add_argument("--epochs", type=int, default=4, help="training epochs; the first is not timed (default: 4)")
    parser.add_argument("--test-images", type=int, default=0, help="CIFAR-10 test images (default 0: all 10,000)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per evaluation; the best counts")
    parser.add_argument("--int16x8-sample", type=int, default=2000,
                        help="images for int16x8's other interpreter layout (slow reference kernels)")  # fmt: skip
    parser.add_argument("--parts", default="training,evaluation,workflow,scaling",
                        help="comma-separated parts to run (default: %(default)s)")  # fmt: skip
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes to check the command end to end (600 training images, 2 epochs, 1000 test "
                             "images, one run each, one model in the workflow subset): not for the figures")  # fmt: skip
    args = parser.parse_args(argv)
    args.argv = list(argv)
    if args.quick:
        args.train_images, args.epochs, args.test_images = 600, 2, args.test_images or 1000
        args.repeats, args.int16x8_sample = 1, 200
    args.models = [model for model in args.models.split(",") if model]
    args.parts = set(args.parts.split(","))
    args.workflow = args.workflow.resolve()
    if not (args.workflow / "Snakefile").is_file():
        parser.error(f"{args.workflow}: no Snakefile (run from the workflow's folder or give --workflow)")
    if args.mirror is None:
        configured = os.environ.get("TINYML_DATASET_MIRROR")
        args.mirror = Path(configured) if configured else args.workflow.parent / "shared" / "datasets"
    args.mirror = args.mirror.resolve()
    args.output_dir = (args.output_dir or args.workflow / "reports").resolve()
    args.default_run = (args.default_run or args.workflow).resolve()
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_arguments(argv)
    started = time.perf_counter()
    machine = machine_info()
    log(f"{machine['cores']} cores, {machine['cpu_model']}, load average {machine['load_average_at_start'][0]:.2f}")
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="tinyml-bench-"))
    scratch = scratch.resolve()
    (scratch / "logs").mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((args.workflow / "config" / "config.yaml").read_text())
    threads = rule_threads(args.workflow, "evaluate_model")
    batch_size = config["evaluation"]["batch_size"]
    report = Report()
    try:
        evaluations = {}
        if args.parts & {"training", "evaluation"}:
            from .datasets import fetch, prepare

            log(f"CIFAR-10 from the mirror {args.mirror} into {scratch}")
            data_path = scratch / "data" / "cifar10.npz"
            if not data_path.exists():
                fetch("cifar10", scratch / "data" / "raw", mirror=str(args.mirror))
                prepare(scratch / "data" / "raw" / "manifest.json", data_path)
            _, evaluations = bench_training_and_evaluation(args, report, config, data_path, scratch, threads,
                                                           batch_size)  # fmt: skip
        measured, described, span = default_run_figures(args.default_run)
        if "workflow" in args.parts:
            bench_workflow(args, report, scratch, args.mirror)
        if "evaluation" in args.parts or "scaling" in args.parts:
            bench_int16x8(args, report, evaluations, measured)
        if "scaling" in args.parts:
            bench_scaling(args, report, scratch, args.mirror, measured, described, span, evaluations)
    finally:
        if report.rows:
            elapsed, target_rows = write_report(report, machine, args, args.output_dir, started)
            print(f"\n{args.output_dir / 'bench.md'} and bench.csv written ({elapsed / 60:.1f} min).\n")
            print(_table(["section", "figure", "model", "value", "ratio", "target", "met"], target_rows))
        if args.scratch is None and not args.keep_scratch:
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            print(f"scratch kept in {scratch}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
