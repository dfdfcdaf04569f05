"""Training where the accelerator is: a preset's models trained under Keras' JAX backend, each on an epoch budget.

    python -m tools.bench.accelerator --mirror ../shared/datasets --output-dir reports/gpu \
        [--configfile config/paper.yaml] [--dataset cifar10] [--epochs 10] [--models ...] [--deadline 480]

What ``training.backend: jax`` with ``training.accelerator: gpu`` does on a GPU
node, run without Snakemake (such a node may have JAX and no TensorFlow): the
library's own fetch from the offline mirror (checksums verified), ``prepare``
and ``train``, with the preset's recipe and architectures and each model's
schedule shortened to the epoch budget (warm-up and cosine decay over it).
Nothing here imports TensorFlow. Writes ``accelerator_training.csv`` (one row
per model: images/s of the steady epochs, the first epoch with its
compilation, test accuracy at the budget) and ``accelerator_history.csv`` (per
epoch), both labelled with the machine.
"""

import argparse
import csv
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def machine_label(device):
    cpu = platform.processor() or platform.machine()
    return f"{device}; {os.cpu_count()} CPU threads ({cpu}); Python {platform.python_version()}"


def study_config(config_files):
    from tinyml_quant.config import load_yaml, merged

    config = load_yaml(ROOT / "config" / "config.yaml")
    for path in config_files:
        config = merged(config, load_yaml(path))
    return config


def prepared_dataset(dataset, mirror, folder):
    from tinyml_quant.datasets import load_prepared, prepare
    from tinyml_quant.fetch import fetch_builtin

    manifest = Path(folder) / f"{dataset}.manifest.json"
    prepared = Path(folder) / f"{dataset}.npz"
    fetch_builtin(dataset, manifest, mirror=str(mirror))
    prepare(manifest, prepared)
    return load_prepared(prepared)


def steady_images_per_second(rows, images):
    """Training images over the median of the epochs after the first (which traces and compiles)."""
    steady = [row["seconds"] for row in rows[1:]] or [rows[0]["seconds"]]
    return images / statistics.median(steady)


def write_rows(path, rows):
    from tinyml_quant.files import atomic_path

    fields = list(dict.fromkeys(key for row in rows for key in row))
    with atomic_path(path) as temporary, open(temporary, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def run(config_files, dataset_name, mirror, output_dir, epochs, models, deadline, accelerator):
    from tinyml_quant.backends import backend_version, select_backend

    select_backend("jax", accelerator, os.cpu_count())
    import keras

    from tinyml_quant.config import is_trained_model, training_settings
    from tinyml_quant.training import train

    started = time.perf_counter()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    config = study_config(config_files)
    with tempfile.TemporaryDirectory() as folder:
        dataset = prepared_dataset(dataset_name, mirror, folder)
    summary, history = [], []
    # The built-in models, which are trained here (an imported model is not).
    for model_name in models or [model for model in config["models"] if not is_trained_model(config, model)]:
        settings = {
            **training_settings(config["training"], dataset_name, model_name),
            "seed": config["seeds"][0],
            "epochs": epochs,
            "backend": "jax",
            "accelerator": accelerator,
        }
        settings["warmup_epochs"] = min(settings["warmup_epochs"], epochs / 2)
        left = deadline - (time.perf_counter() - started)
        walls = [row["wall_s"] for row in summary if "wall_s" in row]
        if walls and left < 1.5 * max(walls):
            print(f"{model_name}: not trained, {left:.0f} s left of the deadline", flush=True)
            summary.append({"model": model_name, "status": f"not trained: {left:.0f} s left of the deadline"})
            continue
        architecture = config["architectures"].get(model_name, {})
        began = time.perf_counter()
        model, rows, metrics = train(dataset, model_name, architecture, settings, threads=os.cpu_count())
        wall = time.perf_counter() - began
        summary.append(
            {
                "model": model_name,
                "status": "trained",
                "architecture": architecture,
                "parameters": metrics["parameters"],
                "epochs": epochs,
                "batch_size": settings["batch_size"],
                "training_images": metrics["training_images"],
                "images_per_s": round(steady_images_per_second(rows, metrics["training_images"]), 1),
                "first_epoch_s": round(rows[0]["seconds"], 2),
                "wall_s": round(wall, 1),
                "test_accuracy": metrics["test_accuracy"],
                "test_images": metrics["test_images"],
                "device": metrics["device"],
            }
        )
        summary[-1].update(
            {
                "dataset": dataset.name,
                "machine": machine_label(metrics["device"]),
                "versions": f"jax {backend_version('jax')}, keras {keras.__version__}",
            }
        )
        history += [{"model": model_name, **row} for row in rows]
        print(summary[-1], flush=True)
        # After each model: a later one that fails or runs out of time loses nothing trained before it.
        write_rows(output_dir / "accelerator_training.csv", summary)
        write_rows(output_dir / "accelerator_history.csv", history)
        del model
    write_rows(output_dir / "accelerator_training.csv", summary)
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configfile", nargs="*", default=[str(ROOT / "config" / "paper.yaml")])
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--mirror", required=True, help="the offline dataset mirror (config/README.md)")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--models", nargs="*", help="default: the preset's models")
    parser.add_argument("--deadline", type=float, default=480.0, help="seconds; later models are skipped")
    parser.add_argument("--accelerator", default="gpu", choices=["auto", "cpu", "gpu"])
    args = parser.parse_args(argv)
    run(
        args.configfile,
        args.dataset,
        args.mirror,
        args.output_dir,
        args.epochs,
        args.models,
        args.deadline,
        args.accelerator,
    )


if __name__ == "__main__":
    sys.exit(main())
