"""The Snakemake workflow itself: lint, formatting, dry runs, the smoke run end to end, caching and --report."""

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPOSITORY
from snakemake_runs import REPORT_RULES, SMOKE, VARIANT_RULES, copy_workflow, planned_jobs, snakemake, write_change

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
        "fetch_dataset": 2, "prepare_dataset": 2, "train_model": 10,
        **{rule: 50 for rule in VARIANT_RULES}, **{rule: 1 for rule in REPORT_RULES}, "all": 1,
    }  # fmt: skip


ALLOWED_MODELS = "['resnet_v1', 'resnet_v2', 'mobilenet_v1', 'mobilenet_v2', 'custom']"


@pytest.mark.parametrize(
    "change, culprits",
    [
        ({"training": {"epochs": 0}}, ["instance['training']['epochs']", "'minimum': 1"]),
        ({"training": {"epochs": "three"}}, ["instance['training']['epochs']", "'three' is not of type 'integer'"]),
        ({"training": {"batch_size": -32}}, ["instance['training']['batch_size']"]),
        ({"conversion": {"int8": {"calibration_images": -5}}}, ["instance['conversion']['int8']['calibration_images']"]),
        ({"training": {"learning_rates": 0.1}}, ["'learning_rates' was unexpected"]),
        ({"trainning": {"epochs": 1}}, ["'trainning' was unexpected"]),
        ({"models": ["resnet_v1", "vgg"]}, ["'vgg' is not one of " + ALLOWED_MODELS]),
        ({"models": []}, ["instance['models']", "[] should be non-empty"]),
        ({"models": ["../resnet_v1"]}, ["'../resnet_v1' is not one of " + ALLOWED_MODELS]),
        ({"datasets": ["mnist/extra"]}, ["'mnist/extra' is not one of ['mnist', 'cifar10']"]),
        ({"schemes": ["fp32", "int4"]}, ["'int4' is not one of ['fp32'"]),
        ({"schemes": ["int8"]}, ["instance['schemes']", "'const': 'fp32'"]),
        ({"training": {"per_model": {"vgg": {"epochs": 2}}}}, ["'vgg' is not one of " + ALLOWED_MODELS]),
    ],
)
def test_bad_config_is_refused_before_any_job(tmp_path, change, culprits):
    workdir = copy_workflow(tmp_path)
    result = snakemake(workdir, "--dry-run", "--configfile", write_change(workdir, "bad", change), check=False)
    assert result.returncode != 0
    message = result.stdout + result.stderr
    assert "ValidationError" in message
    for culprit in culprits:
        assert culprit in message
    assert not (workdir / "data").exists() and not (workdir / "results").exists()


# --------------------------------------------------------------------------- the smoke run


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
def test_every_variant_is_measured_for_microcontrollers(smoke_run):
    results = pd.read_csv(smoke_run / "reports" / "results.csv")
    assert set(results.tflm_status) <= {"runs", "unsupported on TFLite Micro"}
    runs = results[results.tflm_status == "runs"]
    refused = results[results.tflm_status != "runs"]
    assert (runs.arena_bytes > 0).all() and runs.tflm_agrees_with_litert.astype(bool).all()
    assert refused.arena_bytes.isna().all() and refused.tflm_unsupported_operator.notna().all()
    float16 = results[results.scheme == "float16"]
    assert (float16.tflm_status == "unsupported on TFLite Micro").all()
    assert (float16.tflm_unsupported_operator == "DEQUANTIZE").all()
    assert (results.scheme == "int8").sum() == (runs.scheme == "int8").sum() == 10
    assert (results.macs > 0).all() and (results.latency_median_ms > 0).all()
    assert (results.latency_p90_ms >= results.latency_median_ms).all() and (results.latency_threads == 1).all()
    # MACs and parameters belong to the model, whatever the scheme.
    assert (results.groupby(["dataset", "model"])[["macs", "tflite_parameters"]].nunique() == 1).all().all()


@pytest.mark.e2e
def test_fit_table_gives_a_verdict_for_every_variant_and_board(smoke_run):
    fit = pd.read_csv(smoke_run / "reports" / "fit_table.csv")
    boards = ["Arduino Nano 33 BLE Sense", "STM32F746G-DISCO", "ESP32", "Raspberry Pi Pico"]
    assert len(fit) == 50 and set(boards) <= set(fit.columns)
    verdicts = fit[boards].stack()
    assert verdicts.str.fullmatch(r"fits|unsupported|over (flash|RAM) by \d+ KB( and over RAM by \d+ KB)?").all()
    assert (fit[fit.scheme == "float16"][boards] == "unsupported").all().all()
    markdown = (smoke_run / "reports" / "fit_table.md").read_text()
    assert "## mnist (official)" in markdown and "| ESP32 | 4096 | 520 |" in markdown
    for extension in ("png", "svg"):
        for figure in ("accuracy_vs_arena", "accuracy_vs_flash"):
            assert (smoke_run / "reports" / "figures" / f"{figure}.{extension}").stat().st_size > 0


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
    assert rules == {*VARIANT_RULES, *REPORT_RULES}
    variant_jobs = [wildcards for rule, wildcards in jobs if rule in VARIANT_RULES]
    assert len(variant_jobs) == 10 * len(VARIANT_RULES)
    assert all(wildcards.endswith("scheme=int8") for wildcards in variant_jobs)


@pytest.mark.e2e
def test_plot_setting_change_reruns_only_the_plots(smoke_run, mirror):
    change = write_change(smoke_run, "plots", {"plots": {"dpi": 80}})
    jobs = planned_jobs(smoke_run, *SMOKE, change, mirror=mirror)
    assert [rule for rule, _ in jobs if rule != "all"] == ["plot_device_fit", "plot_results", "stage_costs"]


@pytest.mark.e2e
def test_board_profile_change_reruns_only_the_fit_table_and_figures(smoke_run, mirror):
    boards = yaml.safe_load((smoke_run / "config" / "config.yaml").read_text())["boards"]
    boards[0]["ram_kb"] = 512
    jobs = planned_jobs(smoke_run, *SMOKE, write_change(smoke_run, "boards", {"boards": boards}), mirror=mirror)
    assert [rule for rule, _ in jobs if rule != "all"] == ["fit_table", "plot_device_fit"]


@pytest.mark.e2e
def test_latency_invoke_count_change_reruns_only_latency_and_the_report(smoke_run, mirror):
    change = write_change(smoke_run, "latency", {"latency": {"invokes": 7}})
    jobs = planned_jobs(smoke_run, *SMOKE, change, mirror=mirror)
    counts = pd.Series([rule for rule, _ in jobs if rule != "all"]).value_counts().to_dict()
    assert counts == {"measure_latency": 50, **{rule: 1 for rule in REPORT_RULES}}


@pytest.mark.e2e
def test_one_models_training_change_reruns_only_its_chain(smoke_run, mirror):
    change = write_change(smoke_run, "training", {"training": {"per_model": {"custom": {"epochs": 2}}}})
    jobs = planned_jobs(smoke_run, *SMOKE, change, mirror=mirror)
    per_variant = [(rule, wildcards) for rule, wildcards in jobs if "model=" in wildcards]
    assert all("model=custom" in wildcards for _, wildcards in per_variant)
    counts = pd.Series([rule for rule, _ in per_variant]).value_counts().to_dict()
    assert counts == {"train_model": 2, **{rule: 10 for rule in VARIANT_RULES}}
    assert {rule for rule, wildcards in jobs if "model=" not in wildcards} == {*REPORT_RULES, "all"}


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
    assert counts == {"train_model": 5, **{rule: 25 for rule in VARIANT_RULES}, **{rule: 1 for rule in REPORT_RULES}, "all": 1}


@pytest.mark.e2e
def test_html_report_holds_figures_and_tables(smoke_run, mirror):
    snakemake(smoke_run, *SMOKE, "--report", "report.html", mirror=mirror)
    html = (smoke_run / "report.html").read_text(errors="replace")
    for name in ("size_vs_accuracy", "size_per_scheme", "accuracy_change_heatmap", "results.csv",
                 "accuracy_vs_arena", "accuracy_vs_flash", "fit_table.md", "stage_costs"):  # fmt: skip
        assert name in html
