"""The Snakemake workflow itself: lint, formatting, dry runs, the smoke study end to end, caching and --report."""

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tinyml_quant.figures import (
    COST_FIGURES,
    DEVICE_FIGURES,
    DIAGNOSTIC_FIGURES,
    LADDER_FIGURES,
    RESULT_FIGURES,
    TRAINING_FIGURES,
)
from tinyml_quant.schemes import INTEGER_SCHEMES
from tools.workflow import Workflow

from conftest import REPOSITORY, SMOKE, SMOKE_STUDY

MODELS = ["custom", "mobilenet_v1", "mobilenet_v2", "resnet8", "resnet_v1", "resnet_v2"]  # the built-in ones
# MLPerf Tiny's pretrained ResNet-8, imported from the model mirror: on CIFAR-10 only.
MLPERF_MODEL = "mlperf_resnet8"
SMOKE_CONFIG = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "smoke.yaml").read_text())
# The smoke preset studies every built-in model on CIFAR-10 and these on MNIST (dataset_models).
MNIST_MODELS = SMOKE_CONFIG["dataset_models"]["mnist"]
TRAINED_INSTANCES = len(MODELS) + len(MNIST_MODELS)  # one seed
INSTANCES = TRAINED_INSTANCES + 1  # and MLPerf's model
# The study's schemes: config.yaml's, which the smoke preset keeps (int8_qat is on request only).
SCHEMES = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "config.yaml").read_text())["schemes"]
VARIANTS = INSTANCES * len(SCHEMES)
SEED = 42  # the smoke preset's one seed (config.yaml's seeds)
QAT_MODELS = SMOKE_CONFIG["qat"]["models"]  # the models the smoke preset fine-tunes
# Rules with one job per variant, and the report's rules (one job each).
VARIANT_RULES = ("evaluate_model", "analyze_graph", "measure_micro", "measure_latency")
# The tools that make the study's variants, jobs per model: the LUT schemes' compression is
# int8_lut's and int8_lut_qat's; QAT fine-tunes and converts int4_qat and int8_lut_qat.
CONVERTER_RULE_JOBS = {
    "convert_model": 5,
    "quantize_model": 4,
    "bin_weights": 1,
    "compress_model": 2,
    "finetune_qat": 2,
    "convert_qat": 2,
}
NPU_BOARDS = 3  # the NPU boards of config.yaml's board list
VELA_SCHEMES = len([scheme for scheme in SCHEMES if scheme in INTEGER_SCHEMES])  # what layer_error and Vela see
REPORT_RULES = (
    "gather_results",
    "plot_results",
    "fit_table",
    "board_choice",
    "plot_device_fit",
    "plot_learning_curves",
    "plot_layer_errors",
    "plot_recovery_ladder",
    "stage_costs",
)
FIGURES = (*RESULT_FIGURES, *DEVICE_FIGURES, *TRAINING_FIGURES, *DIAGNOSTIC_FIGURES, *LADDER_FIGURES, *COST_FIGURES)

# --------------------------------------------------------------------------- fast checks


def test_lint_finds_nothing():
    result = Workflow(REPOSITORY).run("--lint", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations" in result.stdout + result.stderr


@pytest.mark.style
def test_snakefmt_formatting():
    files = [str(REPOSITORY / "Snakefile"), *map(str, sorted((REPOSITORY / "rules").glob("*.smk")))]
    result = subprocess.run([sys.executable, "-m", "snakefmt", "--check", *files], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.style
@pytest.mark.parametrize("command", [["format", "--check"], ["check"]])
def test_ruff_formatting_and_lint(command):
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *command, "."], cwd=REPOSITORY, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_parsing_the_workflow_imports_nothing_heavy():
    """Every job parses the workflow again: TensorFlow, LiteRT, TFLite Micro and matplotlib must stay out of it."""
    from tools.bench.workflow import HEAVY_MODULES, imported_modules

    workflow = Workflow(REPOSITORY)
    modules = imported_modules(REPOSITORY, workflow.environment, "--list-rules")
    assert "tinyml_quant" in modules and "snakemake" in modules
    assert not set(modules) & set(HEAVY_MODULES)


def test_dry_run_plans_the_whole_grid(tmp_path):
    workflow = Workflow.copy(tmp_path)
    rules = Counter(job.rule for job in workflow.planned_jobs(*SMOKE))
    # After the deployment plans (checkpoints) come the firmware bundles and float fallbacks.
    assert rules == {
        "fetch_dataset": 2,
        "prepare_dataset": 2,
        "fetch_published_model": 1,
        "train_model": TRAINED_INSTANCES,
        "import_model": 1,
        "evaluate_published_int8": 1,
        **{rule: jobs * INSTANCES for rule, jobs in CONVERTER_RULE_JOBS.items()},
        **dict.fromkeys(VARIANT_RULES, VARIANTS),
        "layer_error": INSTANCES * VELA_SCHEMES,
        "estimate_npu": INSTANCES * VELA_SCHEMES * NPU_BOARDS,
        "calibrate_int8": INSTANCES * 2,  # the smoke sweep's two sizes
        "evaluate_calibration": INSTANCES * 2,
        "deployment_plan": 1,
        **dict.fromkeys(REPORT_RULES, 1),
        "all": 1,
    }


def test_every_preset_plans_inside_its_own_study_folder(tmp_path):
    workflow = Workflow.copy(tmp_path)
    for arguments, study in [((), "default"), (SMOKE, "smoke"), (("--configfile", "config/paper.yaml"), "paper")]:
        outputs = workflow.planned_outputs(*arguments)
        assert outputs and all(path.startswith(f"results/{study}/") for path in outputs), study
    published = workflow.planned_outputs("all", "publish_reports")
    # The per-board answer is published beside the other tables; results.md opens with it.
    assert {"reports/board_choice.csv", "reports/results.md", "reports/fit_table.md"} <= set(published)
    assert "reports/recovery_ladder.csv" in published
    assert {path for path in published if not path.startswith("results/default/")} == {
        path.replace("results/default/reports/", "reports/")
        for path in published
        if path.startswith("results/default/reports/")
    }


def test_only_the_default_study_publishes_to_the_tracked_reports_unless_a_folder_is_named(tmp_path):
    workflow = Workflow.copy(tmp_path)
    seeds = workflow.planned_outputs("all", "publish_reports", "--configfile", "config/seeds.yaml")
    published = {path for path in seeds if not path.startswith("results/seeds/")}
    assert published and all(path.startswith("reports/seeds/") for path in published)
    mine = workflow.write_config("mine", {"study": "mine"})
    planned = workflow.planned_outputs("all", "--configfile", mine)  # the study itself needs no folder
    assert planned and all(path.startswith("results/mine/") for path in planned)
    refused = workflow.run("-n", "all", "publish_reports", "--configfile", mine, check=False)
    assert refused.returncode != 0
    assert "published_reports: not set for study 'mine'; only the 'default' study publishes" in refused.stdout
    named = workflow.write_config("named", {"study": "mine", "published_reports": "elsewhere/mine"})
    published = workflow.planned_outputs("publish_reports", "--configfile", named)
    assert {path for path in published if not path.startswith("results/mine/")} == {
        path.replace("results/mine/reports/", "elsewhere/mine/")
        for path in published
        if path.startswith("results/mine/reports/")
    }


@pytest.mark.parametrize(
    "change, culprit",
    [
        ({"training": {"epochs": 0}}, "training.epochs: 0 is less than the minimum of 1"),
        ({"trainig": {"epochs": 2}}, "trainig: not a setting; did you mean 'training'?"),
        (
            {"architectures": {"resnet_v1": {"depth": 21}}},
            "architectures.resnet_v1.depth: resnet_v1 depth must be 6n+2",
        ),
        (
            {
                "boards": [
                    {"name": "tiny", "cpu": "Cortex-M0+", "clock_mhz": 48}
                    | {"flash_kb": 64, "ram_kb": 16, "flash_allowance_kb": 8, "ram_allowance_kb": 20}
                ]
            },
            "boards[0] (tiny).ram_allowance_kb: 20 is more than ram_kb 16",
        ),
    ],
)
def test_bad_config_is_refused_before_any_job(tmp_path, change, culprit):
    workflow = Workflow.copy(tmp_path)
    result = workflow.run("--dry-run", "--configfile", workflow.write_config("bad", change), check=False)
    assert result.returncode != 0
    assert culprit in result.stdout + result.stderr
    # The problem, not the whole schema and config after it.
    assert len((result.stdout + result.stderr).splitlines()) < 20
    assert not (tmp_path / "results").exists() and not (tmp_path / "data").exists()


def test_a_config_file_that_is_not_yaml_is_named_by_the_check_tool(tmp_path):
    workflow = Workflow.copy(tmp_path)
    (tmp_path / "broken.yaml").write_text("training:\n  epochs: [3\n")
    result = workflow.run("--dry-run", "--configfile", "broken.yaml", check=False)
    # Snakemake reads --configfile itself, before any of the workflow's code, and names neither file
    # nor line (config/README.md); tools.check_config does, with the same checks as the workflow.
    assert result.returncode != 0 and "not valid JSON or YAML" in result.stdout + result.stderr
    checked = subprocess.run(
        [sys.executable, "-m", "tools.check_config", str(tmp_path / "broken.yaml")],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 1
    assert "broken.yaml, line 3, column 1: not valid YAML" in checked.stderr


# --------------------------------------------------------------------------- the smoke study


def smoke_results(smoke_run):
    return pd.read_csv(smoke_run.study(SMOKE_STUDY) / "reports" / "results.csv")


def declared_resources(rules_folder):
    """``{rule: {"mem_mb": MB, "runtime": minutes}}`` as the rule files write them (plain numbers only)."""
    import re

    declared = {}
    for path in sorted(rules_folder.glob("*.smk")):
        for block in re.split(r"^(?:rule|checkpoint) ", path.read_text(), flags=re.MULTILINE)[1:]:
            name = block.split(":", 1)[0].strip()
            resources = re.search(r"^    resources:\n((?:        .*\n)+)", block, flags=re.MULTILINE)
            if resources:
                found = re.findall(r"^        (mem_mb|runtime)=(\d+),", resources.group(1), flags=re.MULTILINE)
                declared[name] = {key: int(value) for key, value in found}
    return declared


@pytest.mark.e2e
def test_every_smoke_job_stays_within_its_rules_resources(smoke_run):
    """Each job's benchmark file (peak memory, wall time) against what its rule declares, as read from rules/*.smk."""
    from tinyml_quant.costs import jobs_table

    declared = declared_resources(smoke_run.folder / "rules")
    assert {"train_model", "convert_model", "evaluate_model", "measure_micro"} <= set(declared)
    jobs = jobs_table(sorted((smoke_run.study(SMOKE_STUDY) / "benchmarks").rglob("*.tsv")))
    assert len(jobs) > VARIANTS
    judged = 0
    for job in jobs.itertuples(index=False):
        limits = declared.get(job.stage, {})
        if "mem_mb" in limits and job.max_rss_mb == job.max_rss_mb:  # NaN: Snakemake could not measure it
            assert job.max_rss_mb <= limits["mem_mb"], job
            judged += 1
        if "runtime" in limits:
            assert job.wall_s <= 60 * limits["runtime"], job
    assert judged > VARIANTS
    costs = (smoke_run.study(SMOKE_STUDY) / "reports" / "stage_costs.md").read_text()
    assert "Every job stayed within its rule's resources." in costs


@pytest.mark.e2e
def test_smoke_run_reports_every_variant(smoke_run):
    results = smoke_results(smoke_run)
    assert len(results) == VARIANTS and set(results.scheme) == set(SCHEMES) and (results.seed == SEED).all()
    assert set(results.dataset_name) == {"mnist (official)", "cifar10 (jpeg mirror)"}
    converted = results[results.status == "converted"]
    assert converted.accuracy.between(0, 1).all() and (converted.file_bytes > 0).all()
    # A variant a tool refuses is a row with the tool's reason, not a hole in the table.
    refused = results[results.status != "converted"]
    # The reason is the tool's ("AI Edge Quantizer: no QAT variant: ..."): the QAT record's, behind the tool's name.
    left_out = results.reason.fillna("").str.contains("no QAT variant: qat.models [", regex=False)
    assert set(results[left_out].model) == {*MODELS, MLPERF_MODEL} - set(QAT_MODELS)
    assert (refused.status == "not converted").all()
    assert refused[~left_out].reason.str.startswith("TFLite Micro compression").all()
    # Every variant evaluated saw the whole test sample; one never made has neither images nor accuracy.
    assert (results[results.accuracy.notna()].test_images == 300).all()
    assert results[left_out][["test_images", "accuracy"]].isna().all().all()
    trained = results.model != MLPERF_MODEL
    assert (results[trained].model_source == "trained here").all()
    assert results[~trained].model_source.str.startswith("imported: MLPerf Tiny's pretrained ResNet-8").all()
    assert set(results[~trained].dataset) == {"cifar10"}
    figures = smoke_run.study(SMOKE_STUDY) / "reports" / "figures"
    for name in (*FIGURES, "tradeoff_mnist", "tradeoff_cifar10"):
        assert (figures / f"{name}.png").read_bytes().startswith(b"\x89PNG"), name
        assert b"<svg" in (figures / f"{name}.svg").read_bytes()[:500], name
    markdown = (smoke_run.study(SMOKE_STUDY) / "reports" / "results.md").read_text()
    for heading in (
        "## mnist (official)",
        "## cifar10 (jpeg mirror)",
        "## What to choose",
        "## Calibration size",
        "## On an Ethos-U NPU",
        "## MLPerf Tiny's reference model: published, measured here, and trained here",
        "## Training: the last epoch",
        "## Where the quantization error is",
        "## What buys the accuracy back",
        "## Recovery ladder",
    ):
        assert heading in markdown
    # A smoke study writes nothing outside its own folder.
    assert not (smoke_run.folder / "reports").exists()
    assert sorted(path.name for path in (smoke_run.folder / "results").iterdir()) == [SMOKE_STUDY]


@pytest.mark.e2e
def test_the_smoke_models_learn(smoke_run):
    fp32 = smoke_results(smoke_run).query("scheme == 'fp32'").set_index(["dataset", "model"])
    # Ten classes: chance is 10 %; three short epochs on 720 images reach well above it.
    assert (fp32.accuracy.loc["mnist"] > 0.2).all(), fp32.accuracy


@pytest.mark.e2e
def test_mlperfs_pretrained_model_and_its_own_int8_file_score_as_on_the_jpeg_copy(smoke_run):
    """Raw pixels in, as MLPerf trained it: about 79 % of the JPEG copy's test images (a wrong scale: chance)."""
    study = smoke_run.study(SMOKE_STUDY)
    results = smoke_results(smoke_run).set_index(["dataset", "model", "scheme"])
    assert results.loc[("cifar10", MLPERF_MODEL, "fp32"), "accuracy"] > 0.6
    own = yaml.safe_load(
        (study / "evaluate_published" / "cifar10" / MLPERF_MODEL / f"seed{SEED}" / "int8.json").read_text()
    )
    assert own["test_images"] == 300 and own["accuracy"] > 0.6 and own["input_type"] == "int8"
    assert own["accuracy_ci_low"] < own["accuracy"] < own["accuracy_ci_high"] and own["agreement_with_fp32"] > 0.8
    markdown = (study / "reports" / "results.md").read_text()
    section = markdown.split("## MLPerf Tiny's reference model")[1].split("\n## ")[0]
    assert "its own int8 file (pretrainedResnet_quant.tflite)" in section and "on shifted data" in section


@pytest.mark.e2e
def test_every_variant_is_measured_for_microcontrollers(smoke_run):
    results = smoke_results(smoke_run)
    converted = results[results.status == "converted"]
    assert set(converted.tflm_status) <= {"runs", "runs, wrong output", "unsupported on TFLite Micro"}
    # Executes on TFLite Micro, whether or not its outputs pass the correctness gate (tested below).
    runs = converted[converted.tflm_status.isin(["runs", "runs, wrong output"])]
    refused = converted[~converted.index.isin(runs.index)]
    assert (runs.arena_bytes > 0).all()
    assert (runs.tflm_sample_images == 20).all() and runs.tflm_top1_agreement.between(0, 1).all()
    assert runs.tflm_sample_accuracy.notna().all()
    # TFLite Micro's reference kernels round differently from LiteRT's (XNNPACK): a few output steps
    # apart, sometimes another class. Data, not an error: recorded, and bounded here only loosely, and
    # only for models that learned (a smoke model near chance has near-tied outputs that any step flips).
    int8 = runs[runs.scheme == "int8"]
    learned = int8[int8.accuracy > 0.5]
    assert (int8.tflm_max_difference_steps >= 0).all() and len(learned) >= 2
    assert (learned.tflm_top1_agreement >= 0.8).all()
    assert refused.arena_bytes.isna().all() and refused.tflm_unsupported_operator.notna().all()
    float16 = results[results.scheme == "float16"]
    assert (float16.tflm_status == "unsupported on TFLite Micro").all()
    assert (float16.tflm_unsupported_operator == "DEQUANTIZE").all()
    # Every integer scheme of the grid runs on TFLite Micro, the LUT-compressed one with its decoder.
    for scheme in ("int8", "int8_per_tensor", "int4", "int4_octav", "int4_mse"):
        assert (results.scheme == scheme).sum() == (runs.scheme == scheme).sum() == INSTANCES, scheme
    lut = converted[converted.scheme == "int8_lut"]
    assert len(lut) and lut.index.isin(runs.index).all() and lut.operators.str.contains("TFLM_DECODE").all()
    assert (converted.macs > 0).all() and (converted.host_latency_median_ms > 0).all()
    assert (converted.host_latency_p90_ms >= converted.host_latency_median_ms).all()
    assert (converted.host_latency_threads == 1).all()
    # MACs and parameters belong to the model, whatever the scheme.
    assert (converted.groupby(["dataset", "model"])[["macs", "tflite_parameters"]].nunique() == 1).all().all()


@pytest.mark.e2e
def test_a_variant_a_tool_could_not_make_is_marked_with_the_tools_reason(smoke_run):
    results = smoke_results(smoke_run)
    missing = results[results.status != "converted"]
    assert set(missing.status) <= {"not converted"} and missing.reason.notna().all()
    assert missing.accuracy.isna().all() and missing.scheme.isin(["int8_lut", "int4_qat", "int8_lut_qat"]).all()
    markdown = (smoke_run.study(SMOKE_STUDY) / "reports" / "results.md").read_text()
    for row in missing.itertuples():
        assert row.reason in markdown


@pytest.mark.e2e
def test_the_new_schemes_shrink_the_file_where_they_promise(smoke_run):
    sizes = smoke_results(smoke_run).pivot_table(index=["dataset", "model"], columns="scheme", values="file_bytes")
    # 4-bit weights where TFLite Micro has 4-bit kernels: smaller than int8 on every model.
    assert (sizes.int4 < sizes.int8).all()
    # Other ranges of the same 4-bit weights: the same file, scales aside.
    assert (sizes.int4_octav == sizes.int4).all() and (sizes.int4_mse == sizes.int4).all()
    # One scale per tensor instead of per channel: a few bytes smaller, never larger.
    assert (sizes.int8_per_tensor <= sizes.int8).all()
    lut = sizes.int8_lut.dropna()
    assert (lut < sizes.int8[lut.index]).all()


@pytest.mark.e2e
def test_fit_table_gives_a_verdict_and_a_labelled_latency_estimate_for_every_variant_and_board(smoke_run):
    reports = smoke_run.study(SMOKE_STUDY) / "reports"
    fit = pd.read_csv(reports / "fit_table.csv")
    boards = yaml.safe_load((smoke_run.folder / "config" / "config.yaml").read_text())["boards"]
    assert len(fit) == VARIANTS * len(boards) and set(fit.board) == {board["label"] for board in boards}
    npu_boards = {board["label"] for board in boards if board.get("npu")}
    cpu = fit[~fit.board.isin(npu_boards)]
    npu = fit[fit.board.isin(npu_boards)]
    verdicts = (
        r"fits|unsupported( \([A-Z_0-9]+\))?|not converted|wrong output|flash \+\d+ KB(, RAM \+\d+ KB)?|RAM \+\d+ KB"
    )
    assert cpu.verdict.str.fullmatch(verdicts).all(), set(cpu.verdict)
    assert (cpu[cpu.scheme == "float16"].verdict == "unsupported (DEQUANTIZE)").all()
    # A short cell, and the tool's full words in the CSV.
    assert npu.verdict.str.fullmatch(rf"{verdicts}|not for the NPU \(float\)|Vela (crashed|failed|timed out).*").all()
    assert fit[fit.verdict.str.startswith("Vela")].reason.str.startswith("Vela").all()
    ranged = fit[fit.latency_kind == "Cortex-M range, MLPerf Tiny-derived"]
    assert ranged.latency_lower_bound.eq(ranged.scheme.str.contains("int4|lut")).all()
    estimated = fit[fit.latency_low_ms.notna()]
    assert (estimated.latency_low_ms <= estimated.latency_high_ms).all() and estimated.latency_source.notna().all()
    # On an NPU board the time is Vela's; on a Cortex-M board a range.
    assert npu[npu.latency_low_ms.notna()].latency_source.str.startswith("Vela's").all()
    assert npu[npu.scheme == "int8"].latency_low_ms.notna().all()
    markdown = (reports / "fit_table.md").read_text()
    assert "## mnist (official)" in markdown and "an estimate, not a measurement" in markdown


@pytest.mark.e2e
def test_vela_compiles_every_int8_variant_for_every_npu_board(smoke_run):
    npu = pd.read_csv(smoke_run.study(SMOKE_STUDY) / "reports" / "npu.csv")
    int8 = npu[npu.scheme == "int8"]
    assert len(int8) == INSTANCES * NPU_BOARDS and (int8.vela_status == "compiled").all()
    assert (int8.cycles > 0).all() and (int8.inference_ms_estimate > 0).all() and (int8.sram_kb > 0).all()
    failed = npu[npu.vela_status != "compiled"]
    assert failed.vela_reason.notna().all()
    for row in int8.itertuples():
        layers = smoke_run.study(SMOKE_STUDY) / "npu" / row.dataset / row.model / f"seed{SEED}" / "int8"
        assert (layers / f"{row.board_name}.layers.csv").stat().st_size > 0


@pytest.mark.e2e
def test_fp32_tflite_accuracy_equals_keras_accuracy(smoke_run):
    fp32 = smoke_results(smoke_run).query("scheme == 'fp32'")
    assert len(fp32) == INSTANCES
    difference_in_points = 100 * (fp32.accuracy - fp32.keras_test_accuracy).abs()
    assert (difference_in_points <= 0.1).all(), fp32[["dataset", "model", "accuracy", "keras_test_accuracy"]]


@pytest.mark.e2e
def test_file_sizes_order_as_the_schemes_promise(smoke_run):
    sizes = smoke_results(smoke_run).pivot_table(index=["dataset", "model"], columns="scheme", values="file_bytes")
    assert (sizes.fp32 > sizes.float16).all()
    assert (sizes.float16 > sizes.dynamic_range).all()
    assert (sizes.float16 > sizes.int8).all()
    # dynamic range and int8 both store int8 weights: within a fifth of each other.
    assert ((sizes.dynamic_range / sizes.int8).between(0.8, 1.25)).all()


@pytest.mark.e2e
def test_every_accuracy_carries_its_interval_and_every_change_its_paired_test(smoke_run):
    results = smoke_results(smoke_run)
    converted = results[results.status == "converted"]
    assert (converted.accuracy_ci_low <= converted.accuracy).all()
    assert (converted.accuracy <= converted.accuracy_ci_high).all()
    tested = converted[converted.scheme != "fp32"]
    assert tested.mcnemar_p.between(0, 1).all() and (tested.holm_p >= tested.mcnemar_p).all()
    # The discordant images: fp32 right alone minus the variant right alone is the change, in images.
    change_in_images = tested.accuracy_change_vs_fp32 / 100 * tested.test_images
    assert np.allclose(tested.variant_only_right - tested.fp32_only_right, change_in_images, atol=1e-6)


@pytest.mark.e2e
def test_the_calibration_sweep_makes_an_int8_variant_per_size(smoke_run):
    sweep = pd.read_csv(smoke_run.study(SMOKE_STUDY) / "reports" / "calibration.csv")
    sizes = yaml.safe_load((smoke_run.folder / "config" / "smoke.yaml").read_text())["conversion"]
    expected = {*sizes["calibration_sweep"], sizes["int8"]["calibration_images"]}
    assert set(sweep.calibration_images) == expected
    assert sweep.groupby(["dataset", "model"]).calibration_images.nunique().eq(len(expected)).all()
    assert sweep.accuracy.between(0, 1).all()


@pytest.mark.e2e
def test_layer_errors_cover_every_quantized_layer(smoke_run):
    study = smoke_run.study(SMOKE_STUDY)
    pairs = [("cifar10", model) for model in MODELS] + [("mnist", model) for model in MNIST_MODELS]
    for dataset, model in pairs:
        for scheme in ("int8", "int16x8", "int4"):
            layers = pd.read_csv(study / "layer_error" / dataset / model / f"seed{SEED}" / f"{scheme}.csv")
            assert len(layers) >= 3 and (layers.images == 8).all()
            assert (layers.rmse >= 0).all() and layers.cosine_similarity.between(-1, 1.000001).all()
            assert np.allclose(layers.rmse_in_steps, layers.rmse / layers.scale, rtol=1e-4)
            assert layers.depth.iloc[0] == 0 and layers.depth.iloc[-1] == 1
            # 16-bit activations have 256 times finer steps: their output matches fp32 closer. On MNIST,
            # where three epochs train: a CIFAR-10 smoke model near chance has outputs too flat for it.
            if scheme == "int16x8" and dataset == "mnist":
                int8 = pd.read_csv(study / "layer_error" / dataset / model / f"seed{SEED}" / "int8.csv")
                assert layers.snr_db.iloc[-1] > int8.snr_db.iloc[-1] - 3


@pytest.mark.e2e
def test_every_schemes_mixed_variant_runs_for_the_model_the_smoke_preset_names(smoke_run):
    study = smoke_run.study(SMOKE_STUDY)
    folder = study / "recover" / "mnist" / "custom" / f"seed{SEED}"
    plan = yaml.safe_load((study / "plan" / "mnist" / "custom" / f"seed{SEED}.json").read_text())
    # The smoke CNN is too small for LUT compression to pay: its int8_lut is not made, so not recovered.
    assert plan["reasons"]["int8_lut"] == "not converted: nothing to recover"
    assert set(plan["recover"]) == {"int8", "int8_per_tensor", "int4"}
    for scheme in plan["recover"]:
        record = yaml.safe_load((folder / f"{scheme}_mixed.json").read_text())
        # Listed, or losing more than the threshold: either way recovered, and the reason says which.
        assert record["reason"].startswith(("listed in diagnostics.always_recover", f"{scheme} loses")), scheme
        # Its per-image predictions, beside it: the recovery ladder tests its change on the same images.
        predictions = np.load(folder / record["predictions_file"])
        if record["status"] == "converted":
            assert len(predictions) == 300
            assert len(record["layers"]) == 3 and record["test_images"] == 300
            assert 0 <= record["accuracy"] <= 1 and record["file_bytes"] > 0
            assert record["micro"]["status"] in ("runs", "unsupported on TFLite Micro")
        else:
            assert record["reason_not_made"] and len(predictions) == 0
    plans = {
        path.relative_to(study / "plan").as_posix(): yaml.safe_load(path.read_text())
        for path in (study / "plan").rglob("*.json")
    }
    assert len(plans) == INSTANCES
    recovered = sum(len(plan["recover"]) for plan in plans.values())
    assert len(list((study / "recover").rglob("*_mixed.json"))) == recovered


@pytest.mark.e2e
def test_no_variant_outside_the_correctness_gate_is_chosen_or_bundled(smoke_run):
    # The smoke preset's gate: its own settings merged over the defaults, as Snakemake merges them.
    config = {
        **yaml.safe_load((REPOSITORY / "config" / "config.yaml").read_text())["micro"],
        **yaml.safe_load((REPOSITORY / "config" / "smoke.yaml").read_text())["micro"],
    }
    study = smoke_run.study(SMOKE_STUDY)
    results = smoke_results(smoke_run)
    measured = results[results.tflm_sample_images.notna()]
    low = measured[
        (measured.tflm_top1_agreement < config["min_top1_agreement"])
        | (measured.tflm_max_difference_steps > config["max_output_steps"])
    ]
    assert (low.tflm_status == "runs, wrong output").all(), low[["model", "scheme", "tflm_status"]]
    passing = measured[~measured.index.isin(low.index)]
    assert (passing.tflm_status == "runs").all()
    wrong = results[results.tflm_status == "runs, wrong output"]
    bundled = {path.parent.relative_to(study / "firmware") for path in (study / "firmware").rglob("model_data.cc")}
    for row in wrong.itertuples():
        assert Path(row.dataset, row.model, f"seed{row.seed}", row.scheme) not in bundled
    fit = pd.read_csv(study / "reports" / "fit_table.csv")
    wrong_keys = set(zip(wrong.dataset_name, wrong.model, wrong.seed, wrong.scheme))
    for row in fit.itertuples():
        if (row.dataset_name, row.model, row.seed, row.scheme) in wrong_keys:
            assert row.verdict.startswith("wrong output") and pd.isna(row.latency_low_ms)
    # The per-board answer never names a variant outside the gate, nor a model at chance; the mixed-precision
    # variants, candidates too, by their records' TFLite Micro measurement.
    tflm = {(row.dataset, row.model, row.seed, row.scheme): row.tflm_status for row in results.itertuples()}
    for path in (study / "recover").rglob("*_mixed.json"):
        record = yaml.safe_load(path.read_text())
        key = (record["dataset"], record["model"], int(record["seed"]), f"{record['scheme']}_mixed")
        tflm[key] = (record.get("micro") or {}).get("status", "not converted")
    above = {(row.dataset, row.model, row.seed): row.above_chance for row in results.itertuples()}
    answers = pd.read_csv(study / "reports" / "board_choice.csv")
    assert set(answers.board) == set(fit.board)
    for prefix in ("", "smaller_", "miss_"):
        named = answers.dropna(subset=[f"{prefix}model"])
        for row in named.itertuples():
            key = (row.dataset, getattr(row, f"{prefix}model"), int(getattr(row, f"{prefix}seed")))
            assert tflm[(*key, getattr(row, f"{prefix}scheme"))] == "runs" and above[key], (prefix, row)
    markdown = (study / "reports" / "results.md").read_text()
    assert [line for line in markdown.splitlines() if line.startswith("## ")][0] == "## Which variant for each board"
    choice = markdown.split("## What to choose")[1].split("\n## ")[0]
    for line in choice.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if not line.startswith("|") or cells[0] not in set(results.dataset_name) or cells[2] == "-":
            continue
        if cells[2].startswith("none"):  # a model at chance: recommended nothing
            continue
        dataset_name, model, chosen = cells[0], cells[1], cells[2].split(" (")[0]
        dataset = results[results.dataset_name == dataset_name].dataset.iloc[0]
        assert tflm[(dataset, model, SEED, chosen)] == "runs", line


@pytest.mark.e2e
def test_a_firmware_bundle_for_every_variant_tflite_micro_runs(smoke_run):
    study = smoke_run.study(SMOKE_STUDY)
    results = smoke_results(smoke_run)
    runs = results[results.tflm_status == "runs"]
    bundles = sorted(
        path.parent.relative_to(study / "firmware") for path in (study / "firmware").rglob("model_data.cc")
    )
    assert [str(path) for path in bundles] == sorted(
        f"{row.dataset}/{row.model}/seed{row.seed}/{row.scheme}" for row in runs.itertuples()
    )
    for row in runs[runs.scheme == "int8_lut"].itertuples():
        resolver = study / "firmware" / row.dataset / row.model / f"seed{row.seed}" / row.scheme / "op_resolver.h"
        assert "resolver.AddDecode()" in resolver.read_text()


@pytest.mark.e2e
def test_second_run_has_nothing_to_do(smoke_run):
    assert smoke_run.planned(*SMOKE) == []


@pytest.mark.e2e
def test_int8_calibration_change_reruns_only_int8(smoke_run):
    change = smoke_run.write_config("calibration", {"conversion": {"int8": {"calibration_images": 16}}})
    jobs = smoke_run.planned(*SMOKE, change)
    rules = {rule for rule, _ in jobs} - {"all"}
    # int8 and the LUT variant binned from it; the LUT QAT variant, whose fine-tuning is decided by
    # int8_lut's accuracy and whose file is calibrated as int8; their measurements, layer errors and
    # NPU estimates.
    assert rules == {
        "convert_model",
        "bin_weights",
        "compress_model",
        "finetune_qat",
        "convert_qat",
        *VARIANT_RULES,
        "layer_error",
        "estimate_npu",
        "deployment_plan",
        *REPORT_RULES,
    } - {"plot_learning_curves"}
    variant_jobs = [wildcards for rule, wildcards in jobs if rule in (*VARIANT_RULES, "layer_error")]
    assert len(variant_jobs) == 3 * INSTANCES * (len(VARIANT_RULES) + 1)
    schemes = {dict(part.split("=") for part in wildcards.split(", "))["scheme"] for wildcards in variant_jobs}
    assert schemes == {"int8", "int8_lut", "int8_lut_qat"}


@pytest.mark.e2e
def test_plot_setting_change_reruns_only_the_plots(smoke_run):
    change = smoke_run.write_config("plots", {"plots": {"dpi": 80}})
    assert [rule for rule, _ in smoke_run.planned(*SMOKE, change) if rule != "all"] == sorted(
        [
            "plot_device_fit",
            "plot_layer_errors",
            "plot_learning_curves",
            "plot_recovery_ladder",
            "plot_results",
            "stage_costs",
        ]
    )


@pytest.mark.e2e
def test_board_profile_change_reruns_only_the_fit_table_and_figures(smoke_run):
    boards = yaml.safe_load((smoke_run.folder / "config" / "config.yaml").read_text())["boards"]
    boards[0]["ram_kb"] = 512
    jobs = smoke_run.planned(*SMOKE, smoke_run.write_config("boards", {"boards": boards}))
    # The per-board answer (and results.md, which it opens) too; gather_results' tables stay.
    assert sorted(rule for rule, _ in jobs if rule != "all") == ["board_choice", "fit_table", "plot_device_fit"]


@pytest.mark.e2e
def test_latency_invoke_count_change_reruns_only_latency_and_the_report(smoke_run):
    change = smoke_run.write_config("latency", {"latency": {"invokes": 7}})
    counts = Counter(rule for rule, _ in smoke_run.planned(*SMOKE, change) if rule != "all")
    assert counts == {
        "measure_latency": VARIANTS,
        "gather_results": 1,
        "fit_table": 1,
        "board_choice": 1,
        "plot_results": 1,
        "plot_device_fit": 1,
        "plot_recovery_ladder": 1,
        "stage_costs": 1,
    }


def _per_model(jobs):
    return Counter(rule for rule, wildcards in jobs if "model=" in wildcards)


def _chain(instances, deployment_plans):
    """The jobs of ``instances`` trained models (dataset, model, seed) from training on, in the smoke preset."""
    per_instance = {
        "train_model": 1,
        **CONVERTER_RULE_JOBS,
        **dict.fromkeys(VARIANT_RULES, len(SCHEMES)),
        "layer_error": VELA_SCHEMES,
        "estimate_npu": VELA_SCHEMES * NPU_BOARDS,
        "calibrate_int8": 2,
        "evaluate_calibration": 2,
    }
    return {rule: count * instances for rule, count in per_instance.items()} | {"deployment_plan": deployment_plans}


@pytest.mark.e2e
def test_one_models_training_change_reruns_only_its_chain(smoke_run):
    # The learning rate, as no per-dataset setting overrides it for this model.
    change = smoke_run.write_config("training", {"training": {"per_model": {"custom": {"learning_rate": 0.02}}}})
    jobs = smoke_run.planned(*SMOKE, change)
    assert all("model=custom" in wildcards for _, wildcards in jobs if "model=" in wildcards)
    assert _per_model(jobs) == _chain(2, 1)


@pytest.mark.e2e
def test_one_datasets_training_change_reruns_only_its_chain(smoke_run):
    # The learning rate, as no per-model setting overrides it for this dataset.
    change = smoke_run.write_config("dataset", {"training": {"per_dataset": {"cifar10": {"learning_rate": 0.02}}}})
    jobs = smoke_run.planned(*SMOKE, change)
    assert all("dataset=cifar10" in wildcards for _, wildcards in jobs if "dataset=" in wildcards)
    # The pretrained model's QAT variants too: its fine-tuning takes CIFAR-10's recipe.
    qat = CONVERTER_RULE_JOBS["convert_qat"]
    assert (
        _per_model(jobs)["train_model"] == len(MODELS)
        and _per_model(jobs)["evaluate_model"] == len(SCHEMES) * len(MODELS) + qat
    )
    assert _per_model(jobs)["finetune_qat"] == qat * (len(MODELS) + 1)


@pytest.mark.e2e
def test_replaced_dataset_file_reruns_only_what_depends_on_it(smoke_copy):
    # Snakemake compares checksums when an input's mtime changes, so the
    # replacement must differ in content: one test pixel is brightened.
    prepared = smoke_copy.study(SMOKE_STUDY) / "data" / "mnist.npz"
    with np.load(prepared, allow_pickle=False) as arrays:
        changed = dict(arrays)
    changed["x_test"] = changed["x_test"].copy()
    changed["x_test"][0, 0, 0, 0] ^= 1
    replacement = prepared.with_name("replacement.npz")
    np.savez(replacement, **changed)
    os.replace(replacement, prepared)
    jobs = smoke_copy.planned(*SMOKE)
    per_dataset = [wildcards for _, wildcards in jobs if "dataset=" in wildcards]
    assert per_dataset and all("dataset=mnist" in wildcards for wildcards in per_dataset)
    assert _per_model(jobs) == _chain(len(MNIST_MODELS), 1)


@pytest.mark.e2e
def test_html_report_holds_figures_and_tables(smoke_run, tmp_path):
    report = tmp_path / "report.html"
    smoke_run.run(*SMOKE, "--report", report)
    html = report.read_text(errors="replace")
    for name in (*FIGURES, "results.csv", "fit_table.md", "stage_costs.md"):
        assert name in html, name
    assert set(SCHEMES) <= set(smoke_results(smoke_run).scheme)
