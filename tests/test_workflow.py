"""The Snakemake workflow itself: lint, formatting, dry runs, the smoke run end to end, caching and --report."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPOSITORY

WORKFLOW_PARTS = ["Snakefile", "rules", "scripts", "config", "envs", "report"]


def snakemake(workdir, *arguments, mirror=None, check=True):
    environment = dict(os.environ)
    if mirror:
        environment["TINYML_DATASET_MIRROR"] = str(mirror)
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", *arguments],
        cwd=workdir,
        env=environment,
        capture_output=True,
        text=True,
    )
    if check and result.returncode:
        raise AssertionError(f"snakemake {' '.join(arguments)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def planned_jobs(workdir, *arguments, mirror=None):
    """The jobs a dry run would execute, as (rule, wildcards) pairs."""
    result = snakemake(workdir, "--dry-run", *arguments, mirror=mirror)
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", result.stdout):
        header = re.match(r"(?:local)?rule (\w+):", block)
        if not header:
            continue
        wildcards = re.search(r"^\s+wildcards: (.*)$", block, re.MULTILINE)
        jobs.append((header.group(1), wildcards.group(1) if wildcards else ""))
    return sorted(jobs)


def copy_workflow(destination):
    destination.mkdir(parents=True, exist_ok=True)
    for part in WORKFLOW_PARTS:
        source = REPOSITORY / part
        if source.is_dir():
            shutil.copytree(source, destination / part)
        else:
            shutil.copy2(source, destination / part)
    return destination


def write_change(workdir, name, change):
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(change))
    return str(path.name)


SMOKE = ("--configfile", "config/smoke.yaml")


# --------------------------------------------------------------------------- fast checks


def test_lint_finds_nothing():
    result = snakemake(REPOSITORY, "--lint", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations" in result.stdout + result.stderr


def test_snakefmt_formatting():
    files = [str(REPOSITORY / "Snakefile"), *map(str, sorted((REPOSITORY / "rules").glob("*.smk")))]
    result = subprocess.run([sys.executable, "-m", "snakefmt", "--check", *files], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_dry_run_plans_the_whole_grid(tmp_path):
    jobs = planned_jobs(copy_workflow(tmp_path), *SMOKE)
    rules = pd.Series([rule for rule, _ in jobs]).value_counts().to_dict()
    assert rules == {
        "fetch_dataset": 2, "prepare_dataset": 2, "train_model": 10, "convert_model": 50,
        "evaluate_model": 50, "gather_results": 1, "plot_results": 1, "all": 1,
    }  # fmt: skip


@pytest.mark.parametrize(
    "change, culprit",
    [
        ({"training": {"epochs": 0}}, "epochs"),
        ({"models": ["resnet_v1", "vgg"]}, "vgg"),
        ({"conversion": {"int8": {"calibration_images": -5}}}, "calibration_images"),
        ({"training": {"learning_rates": 0.1}}, "learning_rates"),
    ],
)
def test_bad_config_is_refused_before_any_job(tmp_path, change, culprit):
    workdir = copy_workflow(tmp_path)
    result = snakemake(workdir, "--dry-run", "--configfile", write_change(workdir, "bad", change), check=False)
    assert result.returncode != 0
    assert culprit in result.stdout + result.stderr
    assert not (workdir / "data" / "raw").exists()


# --------------------------------------------------------------------------- the smoke run


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, mirror):
    """The smoke preset run end to end once, in a copy of the workflow."""
    workdir = copy_workflow(tmp_path_factory.mktemp("smoke"))
    snakemake(workdir, "--cores", "2", *SMOKE, mirror=mirror)
    return workdir


@pytest.mark.e2e
def test_smoke_run_reports_every_variant(smoke_run):
    results = pd.read_csv(smoke_run / "reports" / "results.csv")
    assert len(results) == 50
    assert set(results.dataset_name) == {"mnist (official)", "cifar10 (jpeg mirror)"}
    assert results.accuracy.between(0, 1).all() and (results.file_bytes > 0).all()
    assert (results.test_images == 300).all()
    for extension in ("png", "svg"):
        assert (smoke_run / "reports" / "figures" / f"size_vs_accuracy.{extension}").stat().st_size > 0
    markdown = (smoke_run / "reports" / "results.md").read_text()
    assert "## mnist (official)" in markdown and "## cifar10 (jpeg mirror)" in markdown


@pytest.mark.e2e
def test_fp32_tflite_accuracy_equals_keras_accuracy(smoke_run):
    results = pd.read_csv(smoke_run / "reports" / "results.csv")
    fp32 = results[results.scheme == "fp32"]
    assert len(fp32) == 10
    difference_in_points = 100 * (fp32.accuracy - fp32.keras_test_accuracy).abs()
    assert (difference_in_points <= 0.1).all(), fp32[["dataset", "model", "accuracy", "keras_test_accuracy"]]


@pytest.mark.e2e
def test_file_sizes_order_as_the_schemes_promise(smoke_run):
    sizes = pd.read_csv(smoke_run / "reports" / "results.csv").pivot_table(
        index=["dataset", "model"], columns="scheme", values="file_bytes"
    )
    assert (sizes.fp32 > sizes.float16).all()
    assert (sizes.float16 > sizes.dynamic_range).all()
    assert (sizes.float16 > sizes.int8).all()
    # dynamic range and int8 both store int8 weights: within a fifth of each other.
    assert ((sizes.dynamic_range / sizes.int8).between(0.8, 1.25)).all()


@pytest.mark.e2e
def test_second_run_has_nothing_to_do(smoke_run, mirror):
    assert planned_jobs(smoke_run, *SMOKE, mirror=mirror) == []


@pytest.mark.e2e
def test_int8_calibration_change_reruns_only_int8(smoke_run, mirror):
    change = write_change(smoke_run, "calibration", {"conversion": {"int8": {"calibration_images": 16}}})
    jobs = planned_jobs(smoke_run, *SMOKE, change, mirror=mirror)
    rules = {rule for rule, _ in jobs} - {"all"}
    assert rules == {"convert_model", "evaluate_model", "gather_results", "plot_results"}
    variant_jobs = [wildcards for rule, wildcards in jobs if rule in ("convert_model", "evaluate_model")]
    assert len(variant_jobs) == 20
    assert all(wildcards.endswith("scheme=int8") for wildcards in variant_jobs)


@pytest.mark.e2e
def test_plot_setting_change_reruns_only_the_plots(smoke_run, mirror):
    change = write_change(smoke_run, "plots", {"plots": {"dpi": 80}})
    jobs = planned_jobs(smoke_run, *SMOKE, change, mirror=mirror)
    assert [rule for rule, _ in jobs if rule != "all"] == ["plot_results"]


@pytest.mark.e2e
def test_one_models_training_change_reruns_only_its_chain(smoke_run, mirror):
    change = write_change(smoke_run, "training", {"training": {"per_model": {"custom": {"epochs": 2}}}})
    jobs = planned_jobs(smoke_run, *SMOKE, change, mirror=mirror)
    per_variant = [(rule, wildcards) for rule, wildcards in jobs if "model=" in wildcards]
    assert all("model=custom" in wildcards for _, wildcards in per_variant)
    counts = pd.Series([rule for rule, _ in per_variant]).value_counts().to_dict()
    assert counts == {"train_model": 2, "convert_model": 10, "evaluate_model": 10}
    assert {rule for rule, wildcards in jobs if "model=" not in wildcards} == {"gather_results", "plot_results", "all"}


@pytest.mark.e2e
def test_replaced_dataset_file_reruns_only_what_depends_on_it(smoke_run, mirror):
    # Snakemake compares checksums when an input's mtime changes, so the
    # replacement must differ in content: one test pixel is brightened.
    prepared = smoke_run / "data" / "prepared" / "mnist.npz"
    original, before = prepared.read_bytes(), prepared.stat()
    with np.load(prepared, allow_pickle=False) as arrays:
        changed = dict(arrays)
    changed["x_test"] = changed["x_test"].copy()
    changed["x_test"][0, 0, 0, 0] ^= 1
    replacement = prepared.with_name("replacement.npz")
    np.savez(replacement, **changed)
    os.replace(replacement, prepared)
    try:
        jobs = planned_jobs(smoke_run, *SMOKE, mirror=mirror)
    finally:
        prepared.write_bytes(original)
        os.utime(prepared, ns=(before.st_atime_ns, before.st_mtime_ns))
    per_dataset = [wildcards for _, wildcards in jobs if "dataset=" in wildcards]
    assert per_dataset and all("dataset=mnist" in wildcards for wildcards in per_dataset)
    counts = pd.Series([rule for rule, _ in jobs]).value_counts().to_dict()
    assert counts == {"train_model": 5, "convert_model": 25, "evaluate_model": 25,
                      "gather_results": 1, "plot_results": 1, "all": 1}  # fmt: skip


@pytest.mark.e2e
def test_html_report_holds_figures_and_tables(smoke_run, mirror):
    snakemake(smoke_run, *SMOKE, "--report", "report.html", mirror=mirror)
    html = (smoke_run / "report.html").read_text(errors="replace")
    for name in ("size_vs_accuracy", "size_per_scheme", "accuracy_change_heatmap", "results.csv"):
        assert name in html
