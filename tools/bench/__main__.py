"""``python -m tools.bench``: run the benchmark's parts and write ``bench.md`` and ``bench.csv``."""

import argparse
import functools
import importlib.util
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from tinyml_quant import config as study
from tinyml_quant.architectures import ARCHITECTURES
from tinyml_quant.config import merged
from tinyml_quant.costs import jobs_table, stage_summary
from tinyml_quant.fetch import dataset_mirror
from tinyml_quant.schemes import SCHEMES
from tools.workflow import REPOSITORY, Workflow

from . import evaluation, paths, projection, report, roofline, training, workflow
from .machine import in_child, log, machine_info

TARGETS = {
    "litert_fp32_vs_keras": 1.0,
    "int8_vs_litert_fp32": 1.5,
    "training_vs_bare_fit": 0.9,
    "resnet_fraction_of_float32_limit": 0.5,
    "noop_rerun_s": 3.0,
    "dry_run_s": 3.0,
    "cores2_vs_cores1": 1.7,
    # A training lever is adopted at this speed-up with accuracy within the seeds' spread (issue 34).
    "lever_speedup": 1.3,
}
# The models of the training levers: the default study's slowest, and MLPerf Tiny's ResNet-8.
LEVER_MODELS = ("resnet_v1", "resnet8", "mobilenet_v1")
SMOKE = ("--configfile", "config/smoke.yaml")
# Keras 3's backends that training.backend does not offer, measured on CPU where installed (pyproject's
# "backends" extra; not a dependency of the study). JAX is a training path (section 8).
OTHER_KERAS_BACKENDS = {"PyTorch": "torch"}
# Today's MobileNetV2 (stem stride 2, as keras.applications) for the speed comparison, and the default's.
TRAINING_MODELS = {
    "resnet_v1": ("resnet_v1", {}),
    "mobilenet_v2": ("mobilenet_v2", {"stem_stride": 2}),
    "mobilenet_v2_stem1": ("mobilenet_v2", {"stem_stride": 1}),
    "custom": ("custom", {}),
}


def rule_threads(copy):
    """Threads of each rule on this machine, from the jobs a dry run of the smoke preset announces.

    Given this machine's cores, as a run here is: without ``--cores`` a dry run
    caps every job at one thread.
    """
    threads = {}
    for job in copy.planned_jobs("--cores", os.cpu_count(), *SMOKE):
        threads.setdefault(job.rule, job.threads)
    return threads


def prepare_cifar10(mirror, scratch):
    from tinyml_quant.datasets import prepare
    from tinyml_quant.fetch import fetch_builtin

    path = scratch / "data" / "cifar10.npz"
    if not path.exists():
        fetch_builtin("cifar10", scratch / "data" / "manifest.json", mirror=str(mirror))
        prepare(scratch / "data" / "manifest.json", path)
    return path


# --------------------------------------------------------------------------- roofline


def bench_roofline(args, report_, scratch, threads):
    log(f"roofline: matrix products on {threads} threads")
    limits = in_child(roofline.measure, scratch / "logs" / "roofline.log", threads=threads)
    for key, unit in (
        ("tensorflow_float32_gflops", "GFLOP/s"),
        ("tensorflow_bfloat16_gflops", "GFLOP/s"),
        ("litert_float32_gflops", "GFLOP/s"),
        ("litert_int8_gops", "GOP/s"),
    ):
        report_.figure("roofline", key, limits[key], unit)
    report_.add(
        "## 1. The machine's limits (roofline)\n\n"
        f"A {limits['size']} x {limits['size']} float32 matrix product through TensorFlow (`tf.linalg.matmul`, oneDNN) "
        f"on {threads} threads, the friendliest work the machine does, is the practical float32 limit training is "
        "compared with; bfloat16 likewise; LiteRT's limits are one large dense layer (batch 256), float32 and "
        "full-integer int8 (XNNPACK's GEMMs). A multiply-accumulate counts as two operations.\n\n"
        + report.table(
            ["path", "limit"],
            [
                ["TensorFlow float32 matmul", f"{limits['tensorflow_float32_gflops']:.0f} GFLOP/s"],
                ["TensorFlow bfloat16 matmul", f"{limits['tensorflow_bfloat16_gflops']:.0f} GFLOP/s"],
                ["LiteRT float32 dense", f"{limits['litert_float32_gflops']:.0f} GFLOP/s"],
                ["LiteRT int8 dense", f"{limits['litert_int8_gops']:.0f} GOP/s"],
            ],
        )
    )
    return limits


# --------------------------------------------------------------------------- training


def bench_training(args, report_, config, data_path, scratch, threads, limits):
    rows, variant_rows, profiles = [], [], {}
    results = {}
    for label, (model_name, change) in TRAINING_MODELS.items():
        if label not in args.models_training:
            continue
        architecture = {**config["architectures"].get(model_name, {}), **change}
        settings = {
            **study.training_settings(config["training"], "cifar10", model_name),
            "epochs": args.epochs,
            "seed": config["seeds"][0],
        }
        common = {
            "dataset_path": str(data_path),
            "model_name": model_name,
            "architecture": architecture,
            "settings": settings,
            "threads": threads,
            "train_images": args.train_images,
        }
        macs = in_child(
            training.forward_macs,
            scratch / "logs" / f"macs_{label}.log",
            model_name=model_name,
            architecture=architecture,
            input_shape=(32, 32, 3),
        )
        runs = {}
        kinds = {
            "workflow": ({}, {}),
            "bare": ({"kind": "bare"}, {}),
            # What one inter-op thread (seeded runs' reproducibility) costs.
            f"{threads} inter-op threads": ({"inter_op_threads": threads}, {}),
        }
        for title, package in OTHER_KERAS_BACKENDS.items():
            if importlib.util.find_spec(package) is None:
                log(f"training {label}: Keras {title} backend not measured ({package} is not installed)")
            else:
                # The backend is the training setting; the variable makes the child's Keras import it.
                backend_settings = {**settings, "backend": package, "accelerator": "cpu"}
                kinds[f"Keras {title} backend"] = ({"settings": backend_settings}, {"KERAS_BACKEND": package})
        if label == "resnet_v1" or args.quick:
            kinds |= {
                "oneDNN off": ({}, {"TF_ENABLE_ONEDNN_OPTS": "0"}),
                "batch 256": ({"settings": {**settings, "batch_size": 256}}, {}),
            }
        for kind, (overrides, environment) in kinds.items():
            log(f"training {label}: {kind} ({args.train_images} images, {args.epochs} epochs)")
            step = {**common, "kind": "workflow", **overrides}
            runs[kind] = in_child(
                training.train_step,
                scratch / "logs" / f"train_{label}_{kind.replace(' ', '_')}.log",
                environment,
                **step,
            )
        rates = {kind: training.images_per_second(run) for kind, run in runs.items()}
        gflops = {kind: training.achieved_gflops(rate, macs) for kind, rate in rates.items()}
        results[label] = {"rates": rates, "gflops": gflops, "macs": macs}
        fraction = gflops["workflow"] / limits["tensorflow_float32_gflops"]
        report_.figure("training", "images_per_s", rates["workflow"], "images/s", label)
        report_.figure(
            "training",
            "gflops",
            gflops["workflow"],
            "GFLOP/s",
            label,
            note=f"{macs / 1e6:.1f} M MACs forward x 2 x {training.TRAINING_PASSES}",
        )
        report_.figure(
            "training",
            "fraction_of_float32_limit",
            gflops["workflow"],
            "GFLOP/s",
            label,
            baseline=limits["tensorflow_float32_gflops"],
            target=TARGETS["resnet_fraction_of_float32_limit"] if model_name == "resnet_v1" else None,
        )
        report_.figure(
            "training",
            "training_vs_bare_fit",
            rates["workflow"],
            "images/s",
            label,
            baseline=rates["bare"],
            target=TARGETS["training_vs_bare_fit"],
        )
        for kind, rate in rates.items():
            variant_rows.append(
                [
                    label,
                    kind,
                    report.fmt(rate),
                    f"{rate / rates['workflow']:.2f}x",
                    f"{gflops[kind]:.0f}",
                    f"{100 * gflops[kind] / limits['tensorflow_float32_gflops']:.0f}%",
                    ", ".join(f"{value:.1f}" for value in runs[kind]["epoch_wall_s"]),
                ]
            )
        rows.append(
            [
                label,
                f"{macs / 1e6:.1f}",
                report.fmt(rates["workflow"]),
                f"{gflops['workflow']:.0f}",
                f"{100 * fraction:.0f}%",
                f"{rates['workflow'] / rates['bare']:.2f}x",
            ]
        )
        if label in ("resnet_v1", "mobilenet_v2_stem1") and not args.quick:
            log(f"training {label} with oneDNN's verbose log (where a step's time goes)")
            log_path = scratch / "logs" / f"onednn_{label}.log"
            run = in_child(
                training.train_step,
                log_path,
                {"ONEDNN_VERBOSE": "1"},
                **{
                    **common,
                    "kind": "workflow",
                    "train_images": min(args.train_images, 2048),
                    "settings": {**settings, "epochs": 2},
                },
            )
            totals = training.read_onednn_log(log_path)
            onednn_seconds = sum(totals.values()) / 1000
            profiles[label] = (training.cost_shares(totals), onednn_seconds, run["epoch_wall_s"][-1])
    profile_text = ""
    for label, (shares, onednn_seconds, epoch_seconds) in profiles.items():
        top = [
            [primitive, propagation, f"{milliseconds / 1000:.2f}", f"{share:.1f}%"]
            for (primitive, propagation), milliseconds, share in shares[:10]
        ]
        profile_text += (
            f"\n**{label}**: oneDNN primitives took {onednn_seconds:.1f} s of the steady epoch's "
            f"{epoch_seconds:.1f} s wall time ({100 * onednn_seconds / epoch_seconds:.0f}%; the rest is "
            "TensorFlow's own kernels: optimizer updates, the loss, layout and input-pipeline work, and waiting). "
            "The ten largest:\n\n" + report.table(["primitive", "propagation", "seconds", "share of oneDNN time"], top)
        )
    report_.add(
        "## 2. Training throughput against the roofline\n\n"
        f"CIFAR-10 (the mirror), {args.train_images} training images, {args.epochs} epochs, the default recipe "
        f"(`training`, optimizer {config['training']['optimizer']}, batch {config['training']['batch_size']}), "
        f"TensorFlow with {threads} threads (rule `train_model`), each run in its own process. Throughput = training "
        "images / median wall time of the steady-state epochs (the first, which traces, is left out; validation "
        "included). GFLOP/s = images/s x forward MACs (the graph stage's count on the fp32 file) x 2 x "
        f"{training.TRAINING_PASSES} (forward, and the two backward passes). `bare`: a plain `model.fit` on float32 "
        "arrays with Keras augmentation layers.\n\n"
        + report.table(["model", "forward MACs (M)", "images/s", "GFLOP/s", "of float32 limit", "vs bare fit"], rows)
        + "\nEvery variant tried (the workflow keeps the fastest that keeps its guarantees). `workflow` is seeded "
        "training as the rule runs it: op determinism and one inter-op thread; `N inter-op threads`: the same with "
        "ops side by side, not reproducible run to run; `Keras PyTorch backend`: the same training code and model "
        "on a Keras backend `training.backend` does not offer (a row only where PyTorch is installed). XLA, the JAX "
        "backend and bfloat16 are the training paths of section 8.\n\n"
        + report.table(
            ["model", "variant", "images/s", "vs workflow", "GFLOP/s", "of limit", "epoch wall (s)"], variant_rows
        )
        + profile_text
    )
    return results


# --------------------------------------------------------------------------- training paths


def accuracy_spread(args):
    """The seeds' spread that the paths' accuracy is judged by (a fraction, or None), and where it comes from."""
    if args.accuracy_spread is not None:
        return args.accuracy_spread / 100, f"{args.accuracy_spread} points, as given by --accuracy-spread"
    ranges = paths.read_seed_ranges(args.seeds_results)
    if ranges is None:
        return None, f"absent: no seeds study results with two seeds or more at {args.seeds_results}"
    pairs = ", ".join(f"{pair} {100 * value:.1f}" for pair, value in sorted(ranges.items()))
    return max(ranges.values()), (
        f"{100 * max(ranges.values()):.1f} points, the widest range of fp32 test accuracy over the seeds study's "
        f"seeds ({pairs}; {args.seeds_results})"
    )


def bench_paths(args, report_, config, data_path, scratch, threads):
    """Every model of the default study under every training path, twice each; the decision of issue 39's rule."""
    from tinyml_quant.backends import backend_installed

    today = paths.path_of(config["training"])
    # The built-in models, which are trained here (an imported model is not).
    models = args.path_models or [model for model in config["models"] if not study.is_trained_model(config, model)]
    seed = config["seeds"][0]
    results, weights = {}, {}
    for model_name in models:
        architecture = config["architectures"].get(model_name, {})
        recipe = study.training_settings(config["training"], "cifar10", model_name)
        weights[model_name] = recipe["epochs"]
        for path, chosen in paths.PATHS.items():
            if not backend_installed(chosen["backend"]):
                log(f"paths {model_name}: {path} not measured ({chosen['backend']} is not installed)")
                continue
            settings = paths.path_settings(recipe, path, args.path_epochs, seed, args.path_batch_size)
            step = {
                "kind": "workflow",
                "dataset_path": str(data_path),
                "model_name": model_name,
                "architecture": architecture,
                "settings": settings,
                "threads": threads,
                "train_images": args.path_steps * settings["batch_size"],
                "test_images": args.path_test_images,
            }
            runs = []
            for run in (1, 2):
                log(f"paths {model_name}: {path}, run {run} ({args.path_steps} steps x {args.path_epochs} epochs)")
                name = f"path_{model_name}_{path}_{run}".replace(" ", "_").replace(",", "").replace("+", "xla")
                try:
                    runs.append(
                        in_child(
                            training.train_step,
                            scratch / "logs" / f"{name}.log",
                            paths.environment(path, threads, os.environ),
                            **step,
                        )
                    )
                except RuntimeError as error:
                    # One path that cannot train a model must not cost the others' figures; the table says failed.
                    log(f"paths {model_name}: {path} failed: {error}")
                    break
            if len(runs) == 2:
                results[model_name, path] = paths.measured(runs, training.images_per_second)
    measured_models = [model for model in models if (model, today) in results]
    if not measured_models:
        report_.add(
            f"## 8. The fastest CPU training path\n\nToday's path ({today}) failed on every model; see the logs "
            "(kept with --scratch).\n"
        )
        return None
    weights = {model: weights[model] for model in measured_models}
    spread, spread_note = accuracy_spread(args)
    decision = paths.decide(results, today, spread, weights)
    for (model_name, path), result in results.items():
        report_.figure(
            "training paths",
            f"images_per_s {path}",
            result.images_per_s,
            "images/s",
            model_name,
            baseline=results[model_name, today].images_per_s if (model_name, today) in results else None,
            note=f"accuracy {result.accuracy:.4f}, identical weights {result.identical_weights}",
        )
    for path, speedup in decision.speedups.items():
        report_.figure(
            "training paths", "default_study_speedup", speedup, "x", path, note=decision.reasons.get(path, "")
        )
    batch_size = args.path_batch_size or config["training"]["batch_size"]
    schedule = (
        f"{args.path_steps} steps of batch {batch_size} per epoch ({args.path_steps * batch_size} seeded training "
        f"images), {args.path_epochs} epochs of each model's default CIFAR-10 recipe (warm-up and cosine decay over "
        f"them, no validation split), seed {seed}, {threads} thread{'s' if threads != 1 else ''} (rule "
        f"`train_model`); test accuracy on "
        f"{args.path_test_images} seeded test images."
    )
    left_out = [model for model in models if model not in measured_models]
    if left_out:
        schedule += f" Today's path failed on {', '.join(left_out)}: left out of the decision (see the logs)."
    report_.add(paths.section(results, decision, models, today, spread_note, schedule))
    log(f"paths: {decision.sentence}")
    return decision


# --------------------------------------------------------------------------- training levers


def _train_logged(step, log_path):
    return in_child(training.train_step, log_path, **step)


def bench_levers(args, report_, config, data_path, scratch):
    """bfloat16 mixed precision and thread layouts against the workflow's float32 at one thread a job.

    Each run trains the same seeded subset for the same epochs in its own
    process; "2 jobs x 1 thread" runs two such processes at once and counts the
    images both trained (what two training jobs side by side give, as Snakemake
    runs them with --cores 2). bfloat16 is run twice with the same seed to see
    whether it is as reproducible as float32.
    """
    from concurrent.futures import ThreadPoolExecutor

    layouts = {
        "float32, 1 thread (the workflow)": ("float32", 1, 1),
        "float32, 2 threads": ("float32", 2, 1),
        "float32, 2 jobs x 1 thread": ("float32", 1, 2),
        "mixed_bfloat16, 1 thread": ("mixed_bfloat16", 1, 1),
        "mixed_bfloat16, 2 threads": ("mixed_bfloat16", 2, 1),
        "mixed_bfloat16, 2 jobs x 1 thread": ("mixed_bfloat16", 1, 2),
    }
    rows = []
    for model_name in args.models_levers:
        architecture = config["architectures"].get(model_name, {})
        settings = study.training_settings(config["training"], "cifar10", model_name)
        runs = {}
        for label, (precision, threads, jobs) in layouts.items():
            log(f"levers {model_name}: {label}")
            step = {
                "kind": "workflow",
                "dataset_path": str(data_path),
                "model_name": model_name,
                "architecture": architecture,
                "settings": {**settings, "epochs": args.epochs, "precision": precision, "seed": config["seeds"][0]},
                "threads": threads,
                "train_images": args.train_images,
                "test_images": args.lever_test_images,
            }
            logs = [scratch / "logs" / f"lever_{model_name}_{label.replace(' ', '_')}_{job}.log" for job in range(jobs)]
            with ThreadPoolExecutor(jobs) as pool:
                runs[label] = list(pool.map(functools.partial(_train_logged, step), logs))
        again = in_child(
            training.train_step,
            scratch / "logs" / f"lever_{model_name}_bfloat16_again.log",
            **{**step, "settings": {**step["settings"], "precision": "mixed_bfloat16"}, "threads": 1},
        )
        rates = {label: sum(training.images_per_second(run) for run in group) for label, group in runs.items()}
        reference = rates["float32, 1 thread (the workflow)"]
        bfloat16 = runs["mixed_bfloat16, 1 thread"][0]
        for label, group in runs.items():
            run = group[0]
            report_.figure(
                "levers",
                label.split(" (")[0].replace(" ", "_").replace(",", ""),
                rates[label],
                "images/s",
                model_name,
                baseline=reference,
                target=TARGETS["lever_speedup"] if "bfloat16, 1 thread" in label else None,
            )
            rows.append(
                [
                    model_name,
                    label,
                    report.fmt(rates[label]),
                    f"{rates[label] / reference:.2f}x",
                    f"{100 * run['test_accuracy']:.1f}",
                    ", ".join(f"{value:.1f}" for value in run["epoch_wall_s"]),
                ]
            )
        same = again["weights_sha256"] == bfloat16["weights_sha256"]
        rows.append(
            [
                model_name,
                "mixed_bfloat16, 1 thread, run again",
                "",
                "",
                f"{100 * again['test_accuracy']:.1f}",
                "same weights" if same else "different weights",
            ]
        )
    report_.add(
        "## 7. Training levers: bfloat16 and the thread layout\n\n"
        f"CIFAR-10 (the mirror), {args.train_images} seeded training images, {args.epochs} epochs of the default "
        f"recipe, test accuracy on the first {args.lever_test_images} test images (a check that a lever does not "
        "break training, not a study result: the seeds study gives the spread). Throughput as in section 2; "
        "`2 jobs x 1 thread` is the sum of two runs at once. `vs workflow`: against float32 at one thread a job, "
        f"what rule `train_model` runs. A lever is adopted at {TARGETS['lever_speedup']}x or more per core with "
        "accuracy within the seeds' spread.\n\n"
        + report.table(["model", "layout", "images/s", "vs workflow", "test accuracy (%)", "epoch wall (s)"], rows)
    )


# --------------------------------------------------------------------------- evaluation


def bench_evaluation(args, report_, config, data_path, scratch, threads, batch_size, training_threads):
    evaluations = {}
    for model_name in args.models:
        architecture = config["architectures"].get(model_name, {})
        folder = scratch / "models" / model_name
        folder.mkdir(parents=True, exist_ok=True)
        settings = {
            **study.training_settings(config["training"], "cifar10", model_name),
            "epochs": 1,
            "seed": config["seeds"][0],
        }
        log(f"training {model_name} briefly for the evaluation timings")
        in_child(
            training.train_and_save,
            scratch / "logs" / f"evalmodel_{model_name}.log",
            dataset_path=str(data_path),
            model_name=model_name,
            architecture=architecture,
            settings=settings,
            threads=training_threads,
            train_images=2000,
            model_path=str(folder / "model.keras"),
        )
        log(f"converting and evaluating {model_name} ({args.test_images or 'all'} test images)")
        evaluations[model_name] = in_child(
            evaluation.evaluation_step,
            scratch / "logs" / f"evaluate_{model_name}.log",
            dataset_path=str(data_path),
            model_path=str(folder / "model.keras"),
            folder=str(folder),
            schemes=list(SCHEMES),
            conversion_settings=config["conversion"],
            threads=threads,
            batch_size=batch_size,
            test_images=args.test_images,
            repeats=args.repeats,
            int16x8_sample=args.int16x8_sample,
        )
    rows = []
    for model_name, result in evaluations.items():
        keras_rate = max(entry["images_per_s"] for entry in result["keras"].values())
        report_.figure("evaluation", "keras_predict_images_per_s", keras_rate, "images/s", model_name)
        fp32 = result["litert"]["fp32"]
        for scheme, entry in result["litert"].items():
            if scheme == "fp32":
                ratio = report_.figure(
                    "evaluation",
                    "litert_fp32_vs_keras",
                    fp32["images_per_s"],
                    "images/s",
                    model_name,
                    baseline=keras_rate,
                    target=TARGETS["litert_fp32_vs_keras"],
                )
            elif scheme == "int8":
                ratio = report_.figure(
                    "evaluation",
                    "int8_vs_litert_fp32",
                    entry["images_per_s"],
                    "images/s",
                    model_name,
                    baseline=fp32["images_per_s"],
                    target=TARGETS["int8_vs_litert_fp32"],
                )
                report_.figure(
                    "evaluation",
                    "int8_vs_litert_fp32_invoke_only",
                    entry["invoke_images_per_s"],
                    "images/s",
                    model_name,
                    baseline=fp32["invoke_images_per_s"],
                )
            else:
                ratio = report_.figure(
                    "evaluation",
                    f"{scheme}_vs_litert_fp32",
                    entry["images_per_s"],
                    "images/s",
                    model_name,
                    baseline=fp32["images_per_s"],
                )
            other = entry["other"]
            rows.append(
                [
                    model_name,
                    scheme,
                    entry["layout"],
                    report.fmt(entry["images_per_s"]),
                    report.fmt(entry["invoke_images_per_s"]),
                    f"{ratio:.2f}x {'Keras' if scheme == 'fp32' else 'fp32'}",
                    f"{other['layout']}: {report.fmt(other['images_per_s'])}",
                    report.fmt(other["same_predictions"]),
                ]
            )
    first = next(iter(evaluations.values())) if evaluations else {"test_images": 0}
    log("int8 against fp32 as the network grows")
    shapes = [
        (
            "MobileNetV2-0.35, stem stride 2 (32x32 -> 1x1)",
            "mobilenet_v2",
            {"alpha": 0.35, "stem_stride": 2},
            (32, 32, 3),
        ),
        ("MobileNetV2-0.35, stem stride 1 (default)", "mobilenet_v2", {"alpha": 0.35, "stem_stride": 1}, (32, 32, 3)),
        ("MobileNetV2-1.0, stem stride 1", "mobilenet_v2", {"alpha": 1.0, "stem_stride": 1}, (32, 32, 3)),
        ("ResNet-20", "resnet_v1", {"depth": 20, "base_filters": 16}, (32, 32, 3)),
    ]
    scaling = in_child(
        evaluation.int8_scaling_step,
        scratch / "logs" / "int8_scaling.log",
        shapes=shapes,
        threads=threads,
        batch_size=batch_size,
        images=500 if args.quick else 2000,
    )
    scaling_rows = [
        [
            label,
            f"{entry['macs'] / 1e6:.1f}",
            entry["fp32"]["operators"],
            report.fmt(entry["fp32"]["invoke_images_per_s"]),
            report.fmt(entry["int8"]["invoke_images_per_s"]),
            f"{entry['int8_vs_fp32']:.2f}x",
            f"{entry['fp32']['invoke_us_per_operator']:.2f} / {entry['int8']['invoke_us_per_operator']:.2f}",
        ]
        for label, entry in scaling.items()
    ]
    for label, entry in scaling.items():
        report_.figure("int8 scaling", "int8_vs_fp32_invoke_only", entry["int8_vs_fp32"], "x", label)
    report_.add(
        "## 3. Evaluation throughput\n\n"
        f"CIFAR-10 test images: {first['test_images']}. Models trained briefly here (throughput does not depend on "
        f"accuracy). LiteRT runs as `run_evaluation` does (`evaluation_interpreters` + `predict`, batch {batch_size}, "
        f"{threads} threads, interpreter creation inside the timing); Keras `model.predict` after a warm-up call, the "
        'faster of batch 32 and the evaluation batch. "invoke" counts only the time inside `Interpreter.invoke`: '
        "LiteRT's kernels. The last columns time the other interpreter layout and check its predictions are the "
        "same.\n\n"
        + report.table(["model", "scheme", "layout", "images/s", "invoke only", "ratio", "other layout", "same"], rows)
        + "\n### int8 on small models\n\nThe same networks at growing size, invoke only (LiteRT, batch "
        f"{batch_size}, {threads} threads, random pixels): int8's advantage over fp32 grows with the work per "
        "operator. Per operator and image, a small network spends a few microseconds whatever the operator's size "
        "(XNNPACK's per-operator dispatch, int8 requantization); that part int8 cannot shrink.\n\n"
        + report.table(
            [
                "network",
                "MACs (M)",
                "operators",
                "fp32 images/s",
                "int8 images/s",
                "int8 / fp32",
                "us per operator and image, fp32 / int8",
            ],
            scaling_rows,
        )
    )
    return evaluations


# --------------------------------------------------------------------------- paper preset


def bench_paper(args, report_, config, data_path, scratch, threads):
    """What one CIFAR-10 epoch of each paper-preset model costs here, and its whole schedule."""
    paper = merged(config, study.load_yaml(REPOSITORY / "config" / "paper.yaml"))
    split = config["training"]["validation_split"]
    epoch_images = round(50_000 * (1 - split))
    rows = []
    for model_name in ARCHITECTURES:
        architecture = paper["architectures"].get(model_name, {})
        paper_settings = study.training_settings(paper["training"], "cifar10", model_name)
        # This machine's CPU under TensorFlow, as the other sections (the preset itself trains under JAX).
        settings = {**paper_settings, "epochs": 2, "seed": config["seeds"][0], "backend": "tensorflow"}
        log(f"paper preset: {model_name} {architecture} ({args.paper_images} images, 2 epochs)")
        run = in_child(
            training.train_step,
            scratch / "logs" / f"paper_{model_name}.log",
            kind="workflow",
            dataset_path=str(data_path),
            model_name=model_name,
            architecture=architecture,
            settings=settings,
            threads=threads,
            train_images=args.paper_images,
        )
        images_per_s = training.images_per_second(run)
        epoch_s = epoch_images / images_per_s
        paper_epochs = paper_settings["epochs"]
        report_.figure("paper preset", "cifar10_epoch_s", epoch_s, "s", model_name)
        rows.append(
            [
                model_name,
                ", ".join(f"{key} {value}" for key, value in architecture.items()),
                report.fmt(images_per_s),
                report.fmt(epoch_s / 60, 1),
                paper_epochs,
                report.fmt(paper_epochs * epoch_s / 3600, 1),
            ]
        )
    report_.add(
        "## 6. The paper preset on this machine\n\n"
        f"Each model of `config/paper.yaml` trained as the workflow trains it ({threads} threads, its recipe), on "
        f"{args.paper_images} CIFAR-10 images for 2 epochs; the second epoch's images/s, scaled to a full epoch "
        f"({epoch_images:,} images: the training split less validation). What the paper preset costs here, one model "
        "at a time; on a GPU or a cluster, see profiles/README.md.\n\n"
        + report.table(
            ["model", "architecture", "images/s", "min per CIFAR-10 epoch", "epochs", "hours for the schedule"], rows
        )
    )


# --------------------------------------------------------------------------- Snakemake


def bench_workflow(args, report_, scratch, mirror):
    cores = 2
    models = ["custom"] if args.quick else ["custom", "resnet_v1"]
    subset = Workflow.copy(scratch / "workflow_subset", mirror)
    arguments = [*SMOKE, subset.write_config("subset", {"datasets": ["mnist"], "models": models})]
    log(f"running the smoke preset on mnist x {models} (the up-to-date folder for the rerun timings)")
    subset.run("--cores", cores, *arguments)
    repeats = 1 if args.quick else 3
    startup = workflow.timed(subset, "--version", repeats=repeats)
    parse = workflow.timed(subset, "--list-rules", repeats=repeats)
    noop = workflow.timed(subset, "--cores", cores, *arguments, repeats=repeats, nothing_to_do=True)
    dry = workflow.timed(subset, "--dry-run", *arguments, repeats=repeats, nothing_to_do=True)
    report_.figure(
        "reruns",
        "noop_rerun_s",
        noop["wall_s"],
        "s",
        "smoke subset",
        target=TARGETS["noop_rerun_s"],
        higher_is_better=False,
    )
    report_.figure(
        "reruns", "dry_run_s", dry["wall_s"], "s", "smoke subset", target=TARGETS["dry_run_s"], higher_is_better=False
    )
    report_.figure("reruns", "snakemake_startup_s", startup["wall_s"], "s")
    report_.figure("reruns", "list_rules_s", parse["wall_s"], "s")
    default_rows = []
    default_study = args.default_run / "results" / "default"
    if (default_study / "reports" / "results.csv").is_file():
        real = Workflow(args.default_run, mirror)
        default_dry = workflow.timed(real, "--dry-run", repeats=repeats, nothing_to_do=True)
        report_.figure(
            "reruns",
            "dry_run_s",
            default_dry["wall_s"],
            "s",
            "default study",
            target=TARGETS["dry_run_s"],
            higher_is_better=False,
            note=str(args.default_run),
        )
        default_rows.append(["dry run, the finished default study", f"{default_dry['wall_s']:.2f}"])
    fresh = Workflow.copy(scratch / "workflow_default", mirror)
    fresh_dry = workflow.timed(fresh, "--dry-run", repeats=repeats)
    report_.figure(
        "reruns",
        "dry_run_fresh_s",
        fresh_dry["wall_s"],
        "s",
        "default config",
        target=TARGETS["dry_run_s"],
        higher_is_better=False,
        note="nothing exists yet",
    )
    empty = scratch / "empty_workflow"
    empty.mkdir()
    (empty / "Snakefile").write_text('rule a:\n    output:\n        "a"\n    shell:\n        "touch a"\n')
    ours = set(workflow.imported_modules(subset.folder, subset.environment, "--list-rules"))
    baseline = set(workflow.imported_modules(empty, subset.environment, "--list-rules"))
    heavy = sorted(ours & set(workflow.HEAVY_MODULES))
    report_.figure("reruns", "heavy_modules_at_parse", len(heavy), "modules", note=", ".join(heavy) or "none")

    log("timing the subset's conversions and evaluations with --cores 1 and --cores 2")
    scaling = {}
    for count in (1, 2):
        started = time.perf_counter()
        subset.run("--cores", count, *arguments, "--forcerun", "convert_model", "--until", "evaluate_model")
        scaling[count] = time.perf_counter() - started
    report_.figure(
        "parallel jobs",
        "cores2_vs_cores1",
        scaling[1],
        "s",
        "smoke subset",
        baseline=scaling[2],
        target=TARGETS["cores2_vs_cores1"],
        note="wall of --cores 1 over --cores 2",
    )
    report_.add(
        "## 4. Reruns and parallel jobs\n\n"
        f"Snakemake takes {startup['wall_s']:.2f} s to start (`--version`) and {parse['wall_s']:.2f} s to start and "
        f"parse the workflow (`--list-rules`); on a finished smoke subset (mnist x {models}) a run with nothing to "
        f'do takes {noop["wall_s"]:.2f} s and a dry run {dry["wall_s"]:.2f} s (median of {repeats}; "nothing to do" '
        "checked from Snakemake's structured log: no job announced). A dry run of the default config with nothing "
        f"built plans every job in {fresh_dry['wall_s']:.2f} s. "
        + (f"On the finished default study: {default_rows[0][1]} s. " if default_rows else "")
        + f"Parsing imports {len(ours - baseline)} top-level modules beyond an empty workflow's; of the heavy ones "
        f"({', '.join(workflow.HEAVY_MODULES)}): {', '.join(heavy) or 'none'}. Conversions and evaluations of the "
        f"subset (`--forcerun convert_model --until evaluate_model`): {scaling[1]:.1f} s with `--cores 1`, "
        f"{scaling[2]:.1f} s with `--cores 2` ({scaling[1] / scaling[2]:.2f}x).\n"
    )


def bench_scaling(args, report_, scratch, mirror):
    study_folder = args.default_run / "results" / "default"
    copy = Workflow.copy(scratch / "workflow_projection", mirror)
    jobs = copy.planned_jobs("--cores", 128)
    measured = workflow.benchmark_seconds(args.default_run, jobs)
    if not measured:
        report_.add(f"## 5. Scaling\n\nNo default study with benchmark files in {study_folder}: nothing to project.\n")
        return
    seconds, estimated = projection.durations(jobs, measured)
    result = projection.project(jobs, seconds, core_counts=(2, 16, 128), cluster_jobs=(16, 128))
    by_id = {job.jobid: job for job in jobs}
    path = " -> ".join(
        f"{by_id[key].rule} {'/'.join(by_id[key].wildcards.values())} ({seconds[key]:.0f} s)"
        for key in result["critical_path"]
        if by_id[key].rule != "all"
    )
    for cores, value in result["cores"].items():
        report_.figure("scaling", f"projected_wall_s_{cores}_cores", value, "s", "default")
    report_.figure("scaling", "critical_path_s", result["critical_path_s"], "s", "default", note=path)
    stages = stage_summary(jobs_table([args.default_run / key for key in measured]))
    stage_rows = [
        [row.stage, row.jobs, report.fmt(row.wall_s), report.fmt(row.share_pct, 1), report.fmt(row.max_job_s)]
        for row in stages.itertuples()
    ]
    report_.add(
        "## 5. Scaling: the default study on more cores\n\n"
        f"From the per-job wall times of the default study's benchmark files ({len(measured)} jobs; "
        f"{len(estimated)} planned jobs without one get their rule's median) over the job graph of a dry run "
        "(`tools.workflow`: every job, its threads, inputs and products); method and assumptions in "
        "`tools/bench/projection.py`. Jobs after the deployment plans (checkpoints) are planned only once those "
        "exist, so they are counted where the run has their files.\n\n"
        + report.table(
            ["", "hours"],
            [
                ["job time, summed", f"{result['job_seconds'] / 3600:.2f}"],
                ["critical path", f"{result['critical_path_s'] / 3600:.2f}"],
                *([f"--cores {n}", f"{value / 3600:.2f}"] for n, value in result["cores"].items()),
                *([f"cluster, {n} jobs at once", f"{value / 3600:.2f}"] for n, value in result["cluster"].items()),
            ],
        )
        + f"\nCritical path: {path}.\n\nThe default study's job time per stage:\n\n"
        + report.table(["stage", "jobs", "job wall (s)", "share (%)", "longest job (s)"], stage_rows)
    )


def parse_arguments(argv):
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__)
    parser.add_argument(
        "--mirror",
        type=Path,
        default=None,
        help="offline dataset mirror (default: $TINYML_DATASET_MIRROR, else ../shared/datasets beside the checkout)",
    )
    parser.add_argument("--output-dir", type=Path, default=REPOSITORY / "reports")
    parser.add_argument("--scratch", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument(
        "--default-run",
        type=Path,
        default=REPOSITORY,
        help="the folder where the default study ran (its results/default/): reruns and projection",
    )
    parser.add_argument("--models", default="resnet_v1,mobilenet_v2", help="models of the evaluation timings")
    parser.add_argument("--models-training", default=",".join(TRAINING_MODELS), help="models of the training timings")
    parser.add_argument("--train-images", type=int, default=6000)
    parser.add_argument("--models-levers", default=",".join(LEVER_MODELS), help="models of the training levers")
    parser.add_argument("--lever-test-images", type=int, default=2000)
    parser.add_argument("--paper-images", type=int, default=2560, help="training images of the paper-preset timings")
    parser.add_argument("--epochs", type=int, default=3, help="training epochs; the first is not counted")
    parser.add_argument("--test-images", type=int, default=0, help="test images (default 0: all 10,000)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--int16x8-sample", type=int, default=2000)
    parser.add_argument(
        "--path-models", default="", help="models of the training paths (default: the default config's models)"
    )
    parser.add_argument("--path-steps", type=int, default=32, help="training steps per epoch of each path's runs")
    parser.add_argument("--path-epochs", type=int, default=3, help="epochs of each path's runs; the first not timed")
    parser.add_argument("--path-batch-size", type=int, default=0, help="default 0: the recipe's batch size")
    parser.add_argument("--path-test-images", type=int, default=2000, help="seeded test images of the paths' accuracy")
    parser.add_argument(
        "--accuracy-spread",
        type=float,
        default=None,
        help="percentage points; default: the widest fp32 accuracy range over the seeds in --seeds-results",
    )
    parser.add_argument(
        "--seeds-results",
        type=Path,
        default=REPOSITORY / "reports" / "seeds" / "results.csv",
        help="the seeds study's published results.csv (config/seeds.yaml)",
    )
    parser.add_argument("--parts", default="roofline,training,paths,levers,paper,evaluation,workflow,scaling")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check the command end to end")
    args = parser.parse_args(argv)
    args.argv = list(argv)
    if args.quick:
        args.train_images, args.epochs, args.test_images, args.repeats, args.int16x8_sample = 600, 2, 500, 1, 100
        args.paper_images = 600
        args.models_training = "custom"
        args.models_levers, args.lever_test_images = "custom", 200
        args.path_models, args.path_steps, args.path_epochs = "custom,resnet8", 2, 2
        args.path_batch_size, args.path_test_images = 32, 64
    args.models = [name for name in args.models.split(",") if name]
    args.models_training = [name for name in args.models_training.split(",") if name]
    args.models_levers = [name for name in args.models_levers.split(",") if name]
    args.path_models = [name for name in args.path_models.split(",") if name]
    args.parts = set(args.parts.split(","))
    if args.mirror is None:
        args.mirror = Path(dataset_mirror("", REPOSITORY) or ".")
    args.mirror, args.default_run = args.mirror.resolve(), args.default_run.resolve()
    return args


def main(argv=None):
    args = parse_arguments(sys.argv[1:] if argv is None else argv)
    started = time.perf_counter()
    machine = machine_info()
    log(f"{machine['cores']} cores, {machine['cpu_model']}, load average {machine['load_average_at_start'][0]:.2f}")
    scratch = (args.scratch or Path(tempfile.mkdtemp(prefix="tinyml-bench-"))).resolve()
    (scratch / "logs").mkdir(parents=True, exist_ok=True)
    config = study.load_yaml(REPOSITORY / "config" / "config.yaml")
    threads = rule_threads(Workflow.copy(scratch / "workflow_threads", args.mirror))
    report_ = report.Report()
    try:
        limits = None
        if args.parts & {"roofline", "training"}:
            limits = bench_roofline(args, report_, scratch, threads["train_model"])
        if args.parts & {"training", "paths", "levers", "evaluation", "paper"}:
            log(f"CIFAR-10 from the mirror {args.mirror}")
            data_path = prepare_cifar10(args.mirror, scratch)
            if "training" in args.parts:
                bench_training(args, report_, config, data_path, scratch, threads["train_model"], limits)
            if "paths" in args.parts:
                bench_paths(args, report_, config, data_path, scratch, threads["train_model"])
            if "levers" in args.parts:
                bench_levers(args, report_, config, data_path, scratch)
            if "paper" in args.parts:
                bench_paper(args, report_, config, data_path, scratch, threads["train_model"])
            if "evaluation" in args.parts:
                bench_evaluation(
                    args,
                    report_,
                    config,
                    data_path,
                    scratch,
                    threads["evaluate_model"],
                    config["evaluation"]["batch_size"],
                    threads["train_model"],
                )
        if "workflow" in args.parts:
            bench_workflow(args, report_, scratch, args.mirror)
        if "scaling" in args.parts:
            bench_scaling(args, report_, scratch, args.mirror)
    finally:
        if report_.rows:
            command = "python -m tools.bench " + " ".join(args.argv)
            elapsed, target_rows = report.write(report_, machine, command.strip(), args.output_dir, started)
            print(f"\n{args.output_dir / 'bench.md'} and bench.csv written ({elapsed / 60:.1f} min).\n")
            print(report.table(["section", "figure", "model", "value", "ratio", "target", "met"], target_rows))
        if args.scratch is None:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
