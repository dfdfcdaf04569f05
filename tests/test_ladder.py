"""The recovery ladder, and the mixed-precision variants in "What to choose" and the per-board answer.

A hand-made study of 300 test images (labels 0, 1, 2, ...) whose every
variant is wrong on a listed set of images, so that each accuracy, each
discordant count and each choice is known before the code runs:

* model ``a``: int4 loses 8 points; of its better ranges int4_mse (96 %) beats
  int4_octav; its mixed variant (97 %) is right on two images fp32 gets wrong;
  its QAT variant took 123.4 s. int8_lut's mixed variant is the most accurate
  small variant of all, but TFLite Micro runs it with wrong output: the gate
  must keep it out of every answer. int8_per_tensor loses a third of a point:
  no mixed variant was asked for.
* model ``b``: its int4 mixed variant could not be made; its int4_qat was
  fine-tuned (50 s) and then not made by its tool.
"""

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.stats import binomtest
from test_reporting import TRAINED, cells, gathered, study_records, write

from tinyml_quant.board_choice import run_board_choice
from tinyml_quant.cortex_m import variant_range_ms
from tinyml_quant.devices import KB
from tinyml_quant.ladder import qat_records_by_key
from tinyml_quant.statistics import wilson_interval

from conftest import REPOSITORY

IMAGES = 300
SCHEMES = (
    *("fp32", "int8", "int8_per_tensor", "int4", "int4_octav", "int4_mse", "int8_lut", "int4_qat", "int8_lut_qat"),
)
# Each variant's wrong images and file KB (the same for both models); fp32 is wrong on images 0-5.
WRONG = {
    "fp32": range(6),
    "int8": range(6),
    "int8_per_tensor": range(7),
    "int4": range(30),
    "int4_octav": range(20),
    "int4_mse": range(12),
    "int8_lut": range(15),
    "int4_qat": range(10),
    "int8_lut_qat": range(0),
    "int4_mixed": [*range(2, 9), 100, 101],
    "int8_lut_mixed": range(4),
}
FILE_KB = {"fp32": 400, "int8": 100, "int8_per_tensor": 100, "int8_lut": 60, "int4_mixed": 58, "int8_lut_mixed": 55}
FILE_KB |= dict.fromkeys(("int4", "int4_octav", "int4_mse", "int4_qat", "int8_lut_qat"), 50)
CORTEX = yaml.safe_load((REPOSITORY / "config" / "config.yaml").read_text())["cortex_m_latency"]
# Flash budget 64 KB, RAM 48 KB: the int4 family, int8_lut and both mixed variants fit.
SMALL = {"name": "small", "label": "Small", "cpu": "Cortex-M4F", "clock_mhz": 100, "flash_kb": 88, "ram_kb": 64}
SMALL |= {"flash_allowance_kb": 24, "ram_allowance_kb": 16}
LUT_QAT_REASON = "TFLite Micro compression: no QAT variant: int8_lut loses 3.00 points: not needed"
B_QAT_REASON = "AI Edge Quantizer: RuntimeError: cannot quantize"


def predicted(model, scheme, labels):
    predictions = labels.copy()
    wrong = np.array(list(WRONG[scheme]), dtype=int)
    predictions[wrong] = (predictions[wrong] + 1) % 3
    return predictions


def rewrite(path, **changes):
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def mixed_record(folder, model, scheme, labels, status="runs", made=True):
    key = {"dataset": "toy", "model": model, "seed": 1, "scheme": scheme}
    record = key | {"method": "worst layers", "reason": f"{scheme} loses points", "reference_accuracy": 0.98}
    record |= {"quantized_accuracy": 0.9, "quantized_file_bytes": FILE_KB[scheme] * KB}
    record["predictions_file"] = f"{scheme}_mixed.predictions.npy"
    folder = folder / "recover" / model
    folder.mkdir(parents=True, exist_ok=True)
    if not made:
        record |= {"status": "not converted", "reason_not_made": "RuntimeError: Unsupported op"}
        np.save(folder / record["predictions_file"], np.zeros(0, np.int16))
        return write(folder / f"{scheme}_mixed.json", record)
    predictions = predicted(model, f"{scheme}_mixed", labels)
    agreement = {"images": 20, "top1_agreement": 1.0 if status == "runs" else 0.4, "tflm_accuracy": 0.9}
    agreement |= {"litert_accuracy": 0.9, "max_difference_steps": 1 if status == "runs" else 200}
    record |= {
        "status": "converted",
        "layers": [{"tensor": "t", "operator": "CONV_2D", "rmse_in_steps": 2.0}] * 3,
        "debug_images": 10,
        "accuracy": float(np.mean(predictions == labels)),
        "test_images": IMAGES,
        "file_bytes": FILE_KB[f"{scheme}_mixed"] * KB,
        "micro": {"status": status, "arena_bytes": 2048, "unsupported_operator": None, "agreement": agreement},
    }
    path = write(folder / f"{scheme}_mixed.json", record)
    np.save(folder / record["predictions_file"], predictions.astype(np.int16))
    return path


def study(folder, qat_order=None):
    """The study above through gather_results and board_choice: ``(results, ladder, results.md, board answers)``."""
    paths = study_records(folder, {"a": TRAINED, "b": TRAINED}, SCHEMES, test_images=IMAGES, predictions=predicted)
    labels = np.arange(IMAGES) % 3
    for kind in ("graphs",):
        for path in paths[kind]:
            rewrite(path, file_bytes=FILE_KB[json.loads(path.read_text())["scheme"]] * KB)
    not_made = {("a", "int8_lut_qat"): LUT_QAT_REASON, ("b", "int8_lut_qat"): LUT_QAT_REASON}
    not_made[("b", "int4_qat")] = B_QAT_REASON
    for path in paths["evaluations"]:
        record = json.loads(path.read_text())
        if (record["model"], record["scheme"]) in not_made:
            reason = not_made[record["model"], record["scheme"]]
            rewrite(path, status="not converted", reason=reason, accuracy=None)
    paths["recoveries"] = [
        mixed_record(folder, "a", "int4", labels),
        mixed_record(folder, "a", "int8_lut", labels, status="runs, wrong output"),
        mixed_record(folder, "b", "int4", labels, made=False),
    ]
    qat = {
        ("a", "int4_qat"): {"status": "fine-tuned", "training_seconds": 123.4},
        ("a", "int8_lut_qat"): {"status": "not needed", "reason": "int8_lut loses 3.00 points: not needed"},
        ("b", "int4_qat"): {"status": "fine-tuned", "training_seconds": 50.0},
        ("b", "int8_lut_qat"): {"status": "not needed", "reason": "int8_lut loses 3.00 points: not needed"},
    }
    # Written in an order that is not the key's, as a rule's list of inputs may be.
    order = qat_order or [("b", "int8_lut_qat"), ("a", "int8_lut_qat"), ("b", "int4_qat"), ("a", "int4_qat")]
    paths["qat_records"] = [
        write(
            folder / "qat" / model / f"{scheme}.json",
            {"dataset": "toy", "model": model, "seed": 1, "scheme": scheme} | qat[model, scheme],
        )
        for model, scheme in order
    ]
    results, markdown = gathered(folder, paths)
    ladder = pd.read_csv(folder / "ladder_csv.out")
    outputs = {"csv": folder / "board_choice.csv", "markdown": folder / "final.md"}
    inputs = {
        "csv": str(folder / "csv.out"),
        "body": str(folder / "results.md"),
        "npu_estimates": [],
        "evaluations": [str(path) for path in paths["evaluations"]],
        "recoveries": [str(path) for path in paths["recoveries"]],
        "datasets": [str(path) for path in paths["datasets"]],
    }
    answers = run_board_choice(inputs, {"boards": [SMALL], "cortex_m_latency": CORTEX}, outputs)
    return results, ladder, markdown, answers.set_index("board_name")


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    return study(tmp_path_factory.mktemp("ladder"))


def rungs(ladder, model, scheme):
    return ladder[(ladder.model == model) & (ladder.ladder == scheme)].set_index("rung")


def test_each_lossy_scheme_has_its_rungs_in_order_and_the_best_ranges(made):
    _, ladder, _, _ = made
    a = ladder[ladder.model == "a"]
    assert list(zip(a.ladder, a.rung, a.variant)) == [
        ("int4", "post-training", "int4"),
        ("int4", "better ranges", "int4_mse"),
        ("int4", "mixed precision", "int4_mixed"),
        ("int4", "QAT", "int4_qat"),
        ("int8_lut", "post-training", "int8_lut"),
        ("int8_lut", "mixed precision", "int8_lut_mixed"),
        ("int8_lut", "QAT", "int8_lut_qat"),
        ("int8_per_tensor", "post-training", "int8_per_tensor"),
        ("int8_per_tensor", "mixed precision", "int8_per_tensor_mixed"),
    ]
    int4 = rungs(ladder, "a", "int4")
    # Accuracy on 300 images, its Wilson interval, the change in points against fp32's 98 %.
    for rung, wrong in (("post-training", 30), ("better ranges", 12), ("mixed precision", 9), ("QAT", 10)):
        row = int4.loc[rung]
        assert row.accuracy == pytest.approx(1 - wrong / IMAGES), rung
        assert (row.accuracy_ci_low, row.accuracy_ci_high) == pytest.approx(wilson_interval(IMAGES - wrong, IMAGES))
        # The CSV keeps six significant digits.
        assert row.accuracy_change_vs_fp32 == pytest.approx(100 * (6 - wrong) / IMAGES, rel=1e-5), rung
    assert list(int4.flash_kb) == [50, 50, 58, 50]


def test_the_mixed_rungs_paired_test_is_the_binomial_test_of_its_own_predictions(made):
    _, ladder, _, _ = made
    mixed = rungs(ladder, "a", "int4").loc["mixed precision"]
    # fp32 wrong on 0-5; int4_mixed on 2-8, 100 and 101: fp32 alone right on 6, 7, 8, 100, 101; it alone on 0, 1.
    assert (mixed.fp32_only_right, mixed.variant_only_right) == (5, 2)
    assert mixed.mcnemar_p == pytest.approx(binomtest(2, 7, 0.5).pvalue)
    assert mixed.paired_test == "mixed variants"
    # Holm over the two mixed variants tested (int8_lut_mixed: fp32 alone right on none, it alone on 4 and 5).
    lut = rungs(ladder, "a", "int8_lut").loc["mixed precision"]
    assert (lut.fp32_only_right, lut.variant_only_right) == (0, 2)
    p = sorted([binomtest(2, 7, 0.5).pvalue, binomtest(2, 2, 0.5).pvalue])
    first = min(1.0, 2 * p[0])
    assert sorted([mixed.holm_p, lut.holm_p]) == pytest.approx([first, max(first, p[1])])
    # A grid rung keeps results.csv's test, Holm over the study.
    post = rungs(ladder, "a", "int4").loc["post-training"]
    assert (post.fp32_only_right, post.variant_only_right, post.paired_test) == (24, 0, "study")
    assert post.mcnemar_p == pytest.approx(binomtest(0, 24, 0.5).pvalue)


def test_each_rung_has_its_tflm_verdict_and_its_cost(made):
    _, ladder, _, _ = made
    int4, lut = rungs(ladder, "a", "int4"), rungs(ladder, "a", "int8_lut")
    assert list(int4.tflm_verdict) == ["passes the gate"] * 4
    assert lut.loc["mixed precision"].tflm_verdict == "wrong output"
    assert int4.loc["QAT"].training_seconds == pytest.approx(123.4)
    assert int4.loc["QAT"].cost == "123 s of fine-tuning"
    assert set(int4.cost[:3]) == {"none (post-training)"}


def test_a_rung_not_made_says_why(made):
    _, ladder, _, _ = made
    lut_qat = rungs(ladder, "a", "int8_lut").loc["QAT"]
    assert not lut_qat.made and lut_qat.cost == f"not made: {LUT_QAT_REASON}"
    assert lut_qat.tflm_verdict == "not measured" and pd.isna(lut_qat.accuracy)
    per_tensor = rungs(ladder, "a", "int8_per_tensor").loc["mixed precision"]
    assert per_tensor.reason == (
        "not asked for: int8_per_tensor loses 0.33 points, within diagnostics.recovery_threshold_points (1)"
    )
    b = rungs(ladder, "b", "int4")
    assert b.loc["mixed precision"].reason == "RuntimeError: Unsupported op"
    # Fine-tuned, then refused by its tool: the training was paid all the same.
    assert b.loc["QAT"].cost == f"not made: {B_QAT_REASON} (after 50 s of fine-tuning)"
    assert pd.isna(b.loc["QAT"].training_seconds)


def test_results_md_shows_the_ladder(made):
    _, _, markdown, _ = made
    section = markdown[markdown.index("## Recovery ladder") :].split("\n## ")[0]
    rows = [cells(line) for line in section.splitlines() if line.startswith("| a ")]
    mixed = next(row for row in rows if row[3] == "int4_mixed")
    low, high = wilson_interval(291, IMAGES)
    holm = min(1.0, 2 * binomtest(2, 7, 0.5).pvalue)
    assert mixed[1:] == [
        "int4",
        "mixed precision",
        "int4_mixed",
        f"97.00 [{100 * low:.2f}, {100 * high:.2f}]",
        "-1.00",
        f"5 / 2, p {holm:.2g} (m)",
        "58.0",
        "passes the gate",
        "none (post-training)",
    ]
    assert next(row for row in rows if row[3] == "int4_qat")[-1] == "123 s of fine-tuning"


def test_what_to_choose_takes_a_mixed_variant_that_passes_the_gate(made):
    """a's smallest variant within a point: int4_mixed (58 KB, -1.00), not the smaller int8_lut_mixed (55 KB,
    +0.67), which runs with wrong output; b has no mixed variant that runs: int8 (100 KB)."""
    _, _, markdown, _ = made
    choice = markdown[markdown.index("## What to choose") :].split("\n## ")[0]
    rows = {cells(line)[1]: cells(line)[2] for line in choice.splitlines() if line.startswith("| toy (test)")}
    assert rows == {"a": "int4_mixed (58.0 KB, -1.00 points)", "b": "int8 (100.0 KB, +0.00 points)"}


def test_the_per_board_answer_weighs_the_mixed_variants_behind_the_gate(made):
    _, _, _, answers = made
    small = answers.loc["small"]
    # int8_lut_mixed (98.67 %, 55 KB) would fit and win; it fails the gate. a's int4_mixed (97 %) is next.
    assert (small.model, small.scheme, small.flash_kb) == ("a", "int4_mixed", 58)
    assert small.accuracy == pytest.approx(0.97)
    # Its latency is int4's estimate from its MACs, a lower bound as int4's is.
    assert (small.latency_low_ms, small.latency_high_ms) == pytest.approx(variant_range_ms(1000, 100, CORTEX))
    assert small.latency_lower_bound
    # Within a point and smaller: a's int4_qat (96.67 %, 50 KB); tested on their own predictions (mixed wrong on
    # 2-8, 100, 101; QAT on 0-9): only the mixed right on 0, 1, 9, only QAT on 100, 101.
    assert (small.smaller_model, small.smaller_scheme) == ("a", "int4_qat")
    assert (small.best_only_right, small.smaller_only_right) == (3, 2)
    assert small.mcnemar_p == pytest.approx(binomtest(2, 5, 0.5).pvalue)


def test_a_qat_record_without_its_key_is_refused_by_name(tmp_path):
    path = write(tmp_path / "qat" / "int4_qat.json", {"scheme": "int4_qat", "status": "fine-tuned"})
    with pytest.raises(ValueError, match=r"int4_qat.json: this QAT record names no dataset, model, seed"):
        qat_records_by_key([path])


def test_the_ladder_figure_draws_every_made_rung(made, tmp_path):
    from matplotlib.collections import PathCollection

    from tinyml_quant import figures

    _, ladder, _, _ = made
    outputs = {"recovery_ladder": [tmp_path / "ladder.png", tmp_path / "ladder.svg"]}
    csv = tmp_path / "ladder.csv"
    ladder.to_csv(csv, index=False)
    figures.plot_recovery_ladder(csv, outputs, dpi=60)
    assert (tmp_path / "ladder.png").read_bytes().startswith(b"\x89PNG")
    figure = figures.recovery_ladder(ladder)
    # One panel per dataset and lossy scheme; in each, a point per made rung and model.
    axes = figure.axes
    assert [axis.get_title() for axis in axes] == [
        "toy (test): int4",
        "toy (test): int8_lut",
        "toy (test): int8_per_tensor",
    ]
    made_points = ladder[ladder.made].groupby("ladder").size()
    for axis, scheme in zip(axes, ("int4", "int8_lut", "int8_per_tensor")):
        drawn = sum(len(points.get_offsets()) for points in axis.collections if isinstance(points, PathCollection))
        wrong = int(((ladder.ladder == scheme) & (ladder.tflm_verdict == "wrong output")).sum())
        # Each made rung once as a marker, and once more as a red cross where the output is wrong.
        assert drawn == made_points[scheme] + wrong, scheme
    figures.pyplot().close(figure)


def test_every_scheme_the_recovery_stage_raises_has_its_mixed_variant_scheme():
    from tinyml_quant.recovery import RECOVERY_METHODS
    from tinyml_quant.schemes import MIXED_SCHEMES

    assert set(RECOVERY_METHODS) == set(MIXED_SCHEMES)


@pytest.mark.parametrize(
    ("scheme", "estimated", "lower_bound"),
    [("int8_per_tensor_mixed", True, False), ("int4_mixed", True, True), ("int8_lut_mixed", True, True)]
    + [("int8_mixed", False, False)],
)
def test_a_mixed_variants_cortex_m_estimate_is_its_schemes_and_none_with_float_layers(scheme, estimated, lower_bound):
    """int8's range covers int8 layers: the float layers int8_mixed keeps are outside it."""
    from types import SimpleNamespace

    from tinyml_quant.devices import board_from_config, decodes_weights, latency_estimate

    board = board_from_config(SMALL)
    variant = SimpleNamespace(scheme=scheme, tflm_status="runs", macs=1000)
    low, high, _, source = latency_estimate(variant, board, None, CORTEX)
    if estimated:
        assert (low, high) == pytest.approx(variant_range_ms(1000, 100, CORTEX))
    else:
        assert low is None and source == "no estimate: the range is from int8 models"
    assert decodes_weights(scheme) == lower_bound


def test_what_to_choose_takes_no_mixed_variant_made_for_only_some_seeds(tmp_path):
    """int4_mixed (1.5 KB, -0.50 points) exists for seed 1 only: a mean over one of two seeds is no model's,
    so the answer is int8 (2.0 KB, +0.00), made and run for both."""
    seeds = {}
    for seed in (1, 2):
        folder = tmp_path / f"seed{seed}"
        paths = study_records(
            folder,
            {"custom": TRAINED},
            ("fp32", "int8", "int4"),
            predictions=lambda m, s, labels: np.where(np.arange(len(labels)) < (6 if s == "int4" else 0), 0, labels),
        )
        for kind in ("training_metrics", "evaluations", "graphs", "micro_measurements", "latencies"):
            for path in paths[kind]:
                rewrite(path, seed=seed)
        seeds[seed] = paths
    mixed = {"dataset": "toy", "model": "custom", "seed": 1, "scheme": "int4", "status": "converted"}
    mixed |= {"method": "worst layers", "reason": "int4 loses points", "reference_accuracy": 1.0}
    mixed |= {"quantized_accuracy": 0.97, "quantized_file_bytes": 1365, "layers": [], "accuracy": 0.995}
    mixed |= {"test_images": 200, "file_bytes": 1500, "micro": {"status": "runs", "arena_bytes": 2048}}
    merged = {name: seeds[1][name] + (seeds[2][name] if name != "datasets" else []) for name in seeds[1]}
    merged["recoveries"] = [write(tmp_path / "recover" / "int4_mixed.json", mixed)]
    table, markdown = gathered(tmp_path, merged)
    assert table.seed.nunique() == 2
    choice = markdown[markdown.index("## What to choose") :].split("\n## ")[0]
    row = next(cells(line) for line in choice.splitlines() if line.startswith("| toy (test)"))
    assert row[2] == "int8 (2.0 KB, +0.00 points)"
