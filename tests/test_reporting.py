"""The results tables, from records written here as the stages write them (every stage's own tests check those)."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from tinyml_quant.devices import run_fit_table
from tinyml_quant.reporting import run_gather
from tinyml_quant.results_table import npu_table

from conftest import REPOSITORY
from synthetic import save_as_prepared

VERSIONS = {"tensorflow": "tf", "keras": "k", "workflow": "w"}


def write(path, record):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return path


def study_records(
    folder, models, schemes=("fp32", "int8"), test_images=200, accuracy=None, predictions=None, dataset="toy"
):
    """Every record ``run_gather`` reads, for ``models`` ({name: training record}) on ``dataset``, seed 1.

    The test labels are 0, 1, 2, 0, 1, 2, ...; a variant's predictions are ``predictions(model, scheme, labels)``,
    by default the labels with its first ``number x 2`` images wrong.
    """
    labels = np.arange(test_images) % 3
    save_as_prepared(
        folder / "toy.npz", np.zeros((test_images, 4, 4, 1), np.uint8), labels, dataset=dataset, name="toy (test)"
    )
    paths = {kind: [] for kind in ("evaluations", "training_metrics", "graphs", "micro_measurements", "latencies")}
    paths.update(datasets=[folder / "toy.npz"], predictions=[], layer_errors=[], recoveries=[], calibrations=[])
    paths["qat_records"] = []
    paths["calibration_predictions"] = []
    paths["published_int8"] = []
    paths["npu_estimates"] = []
    for model, trained in models.items():
        base = {"dataset": dataset, "dataset_name": "toy (test)", "model": model, "seed": 1}
        paths["training_metrics"].append(
            write(folder / "train" / f"{model}.json", {**base, "versions": VERSIONS, **trained})
        )
        for number, scheme in enumerate(schemes):
            variant = {**base, "scheme": scheme}
            if predictions:
                predicted = predictions(model, scheme, labels)
            else:
                predicted = labels.copy()
                predicted[: number * 2] = (predicted[: number * 2] + 1) % 3
            value = accuracy(model, scheme) if accuracy else float(np.mean(predicted == labels))
            evaluation = {
                **variant,
                "status": "converted",
                "accuracy": value,
                "agreement_with_fp32": 1.0 - 0.02 * number,
                "test_images": test_images,
                "input_type": "float32" if scheme == "fp32" else "int8",
                "mean_inference_ms": 0.1,
                "threads": 2,
                "litert_version": "l",
                "predictions_file": f"{scheme}.predictions.npy",
            }
            metrics = write(folder / "evaluate" / model / f"{scheme}.json", evaluation)
            np.save(folder / "evaluate" / model / f"{scheme}.predictions.npy", predicted.astype(np.int16))
            paths["evaluations"].append(metrics)
            paths["predictions"].append(folder / "evaluate" / model / f"{scheme}.predictions.npy")
            graph = {
                **variant,
                "macs": 1000,
                "parameters": 100,
                "operator_total": 3,
                "operators": {"CONV_2D": 3},
                "file_bytes": 4096 // (number + 1),
            }
            paths["graphs"].append(write(folder / "graph" / model / f"{scheme}.json", graph))
            micro = {**variant, "status": "runs", "arena_bytes": 2048, "unsupported_operator": None, "agreement": None}
            paths["micro_measurements"].append(write(folder / "micro" / model / f"{scheme}.json", micro))
            latency = {**variant, "median_ms": 0.5, "p90_ms": 0.6, "threads": 1}
            paths["latencies"].append(write(folder / "latency" / model / f"{scheme}.json", latency))
    return paths


def gathered(folder, paths):
    config = yaml.safe_load((REPOSITORY / "config" / "config.yaml").read_text())
    parameters = {
        "board_labels": {board["name"]: board["label"] for board in config["boards"]},
        "cortex_m_latency": config["cortex_m_latency"],
        "mlperf_reference": config["mlperf_reference"],
        "recovery_threshold_points": 1.0,
        "calibration_images": 500,
        "int4_weight_algorithm": config["conversion"]["int4"]["weight_algorithm"],
    }
    outputs = {
        name: folder / f"{name}.out" for name in ("csv", "calibration_csv", "npu_csv", "int4_ranges_csv", "ladder_csv")
    }
    outputs["markdown"] = folder / "results.md"
    table = run_gather({name: [str(path) for path in value] for name, value in paths.items()}, parameters, outputs)
    return table, (folder / "results.md").read_text()


TRAINED = {
    "source": "trained here",
    "test_accuracy": 0.8,
    "parameters": 100,
    "epoch_seconds_median": 0.4213,
    "final_epoch": {"epoch": 3, "accuracy": 0.7, "val_accuracy": 0.75},
}
IMPORTED = {
    "source": "imported from /models/mine.keras",
    "test_accuracy": 0.3,
    "parameters": 90,
    "warning": "trained_models.mine.input_scale: the model scores 30.0% ... with input_scale 0.00392157",
}


def test_the_tables_say_which_model_is_imported_and_show_its_warning_first(tmp_path):
    table, markdown = gathered(tmp_path, study_records(tmp_path, {"custom": TRAINED, "mine": IMPORTED}))
    assert list(table.model_source.unique()) == ["trained here", "imported from /models/mine.keras"]
    assert markdown.index("## Warnings") < markdown.index("## toy (test)")
    assert f"- **mine** on toy (test): {IMPORTED['warning']}" in markdown
    # 30 % on 4 classes and 200 images is not clearly above chance (its own test below).
    assert "| mine (imported, at chance) |" in markdown and "| custom " in markdown
    written = pd.read_csv(tmp_path / "csv.out")
    assert written[written.model == "mine"].model_warning.unique().tolist() == [IMPORTED["warning"]]
    assert written[written.model == "custom"].model_warning.isna().all()


def test_a_model_trained_in_under_a_second_an_epoch_does_not_read_zero(tmp_path):
    _, markdown = gathered(tmp_path, study_records(tmp_path, {"custom": TRAINED}))
    training = markdown[markdown.index("## Training") :]
    row = next(line for line in training.splitlines() if line.startswith("| toy (test) | custom"))
    assert row.rstrip(" |").endswith("0.421")


def test_no_warning_section_without_a_warning(tmp_path):
    _, markdown = gathered(tmp_path, study_records(tmp_path, {"custom": TRAINED}))
    assert "## Warnings" not in markdown


def test_size_compression_and_accuracy_change_are_against_the_models_own_fp32(tmp_path):
    table, _ = gathered(tmp_path, study_records(tmp_path, {"custom": TRAINED}))
    int8 = table[table.scheme == "int8"].iloc[0]
    assert int8.compression_vs_fp32 == pytest.approx(2.0) and int8.size_kb == pytest.approx(2.0)
    assert int8.accuracy_change_vs_fp32 == pytest.approx(-1.0)  # 2 of 200 images wrong
    assert np.isclose(table[table.scheme == "fp32"].accuracy_change_vs_fp32, 0).all()


def test_every_accuracy_carries_its_wilson_interval(tmp_path):
    from tinyml_quant.statistics import wilson_interval

    table, markdown = gathered(tmp_path, study_records(tmp_path, {"custom": TRAINED}))
    int8 = table[table.scheme == "int8"].iloc[0]
    assert (int8.accuracy_ci_low, int8.accuracy_ci_high) == pytest.approx(wilson_interval(198, 200))
    low, high = wilson_interval(198, 200)
    assert f"99.00 [{100 * low:.2f}, {100 * high:.2f}]" in markdown


def test_each_change_is_tested_against_the_same_images_and_corrected_over_the_study(tmp_path):
    """fp32 right on every image; int8 wrong on 40 of them: b = 40, c = 0; int4 wrong on 2: b = 2, c = 0."""
    from tinyml_quant.statistics import holm, mcnemar_exact

    def predictions(model, scheme, labels):
        wrong = {"fp32": 0, "int8": 40, "int4": 2}[scheme]
        predicted = labels.copy()
        predicted[:wrong] = (predicted[:wrong] + 1) % 3
        return predicted

    paths = study_records(tmp_path, {"custom": TRAINED}, ("fp32", "int8", "int4"), predictions=predictions)
    table, markdown = gathered(tmp_path, paths)
    tested = table[table.scheme != "fp32"].set_index("scheme")
    assert tested.fp32_only_right.tolist() == [40, 2] and tested.variant_only_right.tolist() == [0, 0]
    raw = [mcnemar_exact(40, 0), mcnemar_exact(2, 0)]
    assert tested.mcnemar_p.astype(float).tolist() == pytest.approx(raw)
    adjusted, rejected = holm(raw)
    assert tested.holm_p.astype(float).tolist() == pytest.approx(list(adjusted))
    assert tested.significant.tolist() == list(rejected) == [True, False]
    assert "40 / 0, p " in markdown and " *" in markdown and "corrected over the study's 2 tests" in markdown


def test_several_seeds_give_means_spreads_and_the_change_of_each_seed(tmp_path):
    seeds = {}
    for seed, int8_wrong in ((1, 2), (2, 6)):
        folder = tmp_path / f"seed{seed}"
        paths = study_records(
            folder,
            {"custom": TRAINED},
            predictions=lambda m, s, labels, w=int8_wrong: np.where(
                np.arange(len(labels)) < (w if s == "int8" else 0), (labels + 1) % 3, labels
            ),
        )
        for path in (
            paths["training_metrics"]
            + paths["evaluations"]
            + paths["graphs"]
            + paths["micro_measurements"]
            + paths["latencies"]
        ):
            record = json.loads(path.read_text())
            record["seed"] = seed
            path.write_text(json.dumps(record))
        seeds[seed] = paths
    merged = {name: seeds[1][name] + (seeds[2][name] if name != "datasets" else []) for name in seeds[1]}
    table, markdown = gathered(tmp_path, merged)
    assert sorted(table.seed.unique()) == [1, 2]
    assert "## Across trainings: every model trained once per seed" in markdown
    assert "-2.00 ± 1.41" in markdown and "-1.00, -3.00" in markdown


def test_what_to_choose_is_the_smallest_variant_tflite_micro_runs_within_a_point(tmp_path):
    """int8 loses 0.5 points at half fp32's size; int4 is smallest but loses 3; int8_lut, smaller than int8,
    does not run on TFLite Micro here: int8 is the choice, int4 the largest loss."""
    wrong = {"fp32": 0, "int8": 1, "int8_lut": 0, "int4": 6}
    sizes = {"fp32": 4000, "int8": 2000, "int8_lut": 1500, "int4": 1000}

    def predictions(model, scheme, labels):
        predicted = labels.copy()
        predicted[: wrong[scheme]] = (predicted[: wrong[scheme]] + 1) % 3
        return predicted

    schemes = ("fp32", "int8", "int8_lut", "int4")
    paths = study_records(tmp_path, {"custom": TRAINED}, schemes, predictions=predictions)
    for path in paths["graphs"]:
        record = json.loads(path.read_text())
        record["file_bytes"] = sizes[record["scheme"]]
        path.write_text(json.dumps(record))
    for path in paths["micro_measurements"]:
        record = json.loads(path.read_text())
        if record["scheme"] == "int8_lut":
            record.update(status="unsupported on TFLite Micro", arena_bytes=None, unsupported_operator="X")
        path.write_text(json.dumps(record))
    _, markdown = gathered(tmp_path, paths)
    choice = markdown[markdown.index("## What to choose") :].split("\n## ")[0]
    row = next(line for line in choice.splitlines() if line.startswith("| toy (test) | custom"))
    assert "int8 (2.0 KB, -0.50 points)" in row and "int4 (-3.00 points)" in row


def test_a_model_at_chance_is_flagged_in_every_table_and_never_recommended(tmp_path):
    """On 4 classes and 200 images, 30 % is within the Wilson interval of guessing (25 %) and 36 % is not.

    Each model's int8 variant is half its fp32's size and loses one point: without the flag it would be
    recommended for every model.
    """
    from scipy.stats import binomtest

    accuracies = {"custom": 0.8, "clear": 0.36, "guess": 0.30}
    models = {name: {**TRAINED, "test_accuracy": value} for name, value in accuracies.items()}
    table, markdown = gathered(tmp_path, study_records(tmp_path, models))
    classes, images = 4, 200  # save_as_prepared's four classes, study_records' test images
    expected = {
        name: binomtest(round(value * images), images).proportion_ci(method="wilson").low > 1 / classes
        for name, value in accuracies.items()
    }
    assert expected == {"custom": True, "clear": True, "guess": False}
    written = pd.read_csv(tmp_path / "csv.out")
    assert dict(zip(written.model, written.above_chance)) == expected
    assert dict(zip(table.model, table.above_chance)) == expected
    results, device = (
        markdown.split(heading)[1].split("\n#")[0] for heading in ("## toy (test)", "on a microcontroller")
    )
    for shown in (results, device):
        models_shown = [cells(line)[0] for line in shown.splitlines() if line.startswith("| ")][1:]  # less the header
        assert sorted(models_shown) == ["clear"] * 2 + ["custom"] * 2 + ["guess (at chance)"] * 2
    choice = markdown[markdown.index("## What to choose") :].split("\n## ")[0]
    rows = {cells(line)[1]: cells(line)[2] for line in choice.splitlines() if line.startswith("| toy (test)")}
    assert rows == {
        "clear": "int8 (2.0 KB, -1.00 points)",
        "custom": "int8 (2.0 KB, -1.00 points)",
        "guess (at chance)": "none: the model is at chance",
    }
    config = yaml.safe_load((REPOSITORY / "config" / "config.yaml").read_text())
    outputs = (tmp_path / "fit.csv", tmp_path / "fit.md")
    fit = run_fit_table(tmp_path / "csv.out", [], config["boards"], config["cortex_m_latency"], *outputs)
    assert dict(zip(fit.model, fit.above_chance)) == expected
    fit_section = (tmp_path / "fit.md").read_text().split("## toy (test)")[1]
    fit_models = {cells(line)[0] for line in fit_section.splitlines() if line.startswith("| ")} - {"model"}
    assert fit_models == {"clear", "custom", "guess (at chance)"}


def cells(line):
    """The cells of a Markdown table row, unpadded."""
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def test_the_mlperf_table_holds_the_published_figures_mlperfs_model_measured_here_and_the_studys(tmp_path):
    """Through ``run_gather``: MLPerf's own int8 file's record joins the table by its key."""
    from tinyml_quant.mlperf import HEADING
    from tinyml_quant.statistics import wilson_interval

    config = yaml.safe_load((REPOSITORY / "config" / "config.yaml").read_text())["mlperf_reference"]
    pretrained = {**IMPORTED, "source": "imported: MLPerf Tiny's pretrained ResNet-8", "warning": None}
    models = {config["model"]: {**TRAINED, "settings": {"epochs": 30}}, config["pretrained_model"]: pretrained}
    paths = study_records(tmp_path, models, dataset=config["dataset"])
    low, high = wilson_interval(150, 200)
    own = {"dataset": config["dataset"], "model": config["pretrained_model"], "seed": 1, "scheme": "int8"}
    own |= {"accuracy": 0.75, "accuracy_ci_low": low, "accuracy_ci_high": high, "file": "own_int8.tflite"}
    paths["published_int8"] = [write(tmp_path / "published" / "int8.json", own)]
    _, markdown = gathered(tmp_path, paths)
    section = markdown[markdown.index(HEADING) :].split("\n## ")[0]
    rows = [cells(line) for line in section.splitlines() if line.startswith("| ")][1:]
    study_fp32, study_int8 = wilson_interval(200, 200), wilson_interval(198, 200)  # int8: 2 of 200 images wrong

    def shown(accuracy, interval):
        return f"{100 * accuracy:.2f} [{100 * interval[0]:.2f}, {100 * interval[1]:.2f}]"

    assert [row[0] for row in rows] == [
        "published by MLPerf Tiny",
        f"`{config['pretrained_model']}`: MLPerf's pretrained model, its own int8 file (own_int8.tflite)",
        f"`{config['pretrained_model']}`: MLPerf's pretrained model, this study's int8 of its weights",
        f"`{config['model']}` trained here",
    ]
    assert rows[1][3:] == [shown(1.0, study_fp32), shown(0.75, (low, high)), "no"]
    assert rows[2][3:] == rows[3][3:] == [shown(1.0, study_fp32), shown(0.99, study_int8), "yes"]
    assert rows[3][2] == "30 (this study's recipe)" and rows[1][1] == "toy (test), 200"
    assert rows[0][3] == shown(config["published_accuracy"]["fp32"], wilson_interval(8720, 10_000))
    # The Cortex-M range's check follows, as its own section.
    assert markdown.index(HEADING) < markdown.index("## How far to trust the Cortex-M range")


def test_a_mixed_variant_that_could_not_be_made_shows_why(tmp_path):
    paths = study_records(tmp_path, {"custom": TRAINED}, ("fp32", "int4"))
    record = {"dataset": "toy", "model": "custom", "seed": 1, "scheme": "int4", "status": "not converted"}
    record |= {"method": "worst layers with 8-bit weights", "reason": "int4 loses 1.00 points (more than 0.5)"}
    record |= {"reference_accuracy": 1.0, "quantized_accuracy": 0.99, "quantized_file_bytes": 2048}
    record["reason_not_made"] = "RuntimeError: Unsupported op"
    paths["recoveries"] = [write(tmp_path / "recover" / "int4_mixed.json", record)]
    _, markdown = gathered(tmp_path, paths)
    section = markdown[markdown.index("## What buys the accuracy back") :]
    row = next(line for line in section.splitlines() if line.startswith("| toy"))
    assert "not made: RuntimeError: Unsupported op" in row and "2.0 / -" in row


def test_a_variant_whose_device_file_could_not_be_made_has_no_change_and_no_test(tmp_path):
    paths = study_records(tmp_path, {"custom": TRAINED}, ("fp32", "int8", "int8_lut"))
    reason = "TFLite Micro compression: no weight tensor is large enough"
    for kind in ("graphs", "micro_measurements"):
        for path in paths[kind]:
            record = json.loads(path.read_text())
            if record["scheme"] == "int8_lut":
                record.update(status="not converted", reason=reason, file_bytes=None, arena_bytes=None)
            path.write_text(json.dumps(record))
    table, markdown = gathered(tmp_path, paths)
    lut = table[table.scheme == "int8_lut"].iloc[0]
    assert lut.status == "not converted" and lut.reason == reason
    assert pd.isna(lut.accuracy) and pd.isna(lut.accuracy_change_vs_fp32) and pd.isna(lut.mcnemar_p)
    assert "corrected over the study's 1 tests" in markdown  # int8's only
    assert f"not converted ({reason})" in markdown


def test_each_calibration_size_is_tested_against_fp32_on_the_same_images(tmp_path):
    from tinyml_quant.statistics import holm, mcnemar_exact

    paths = study_records(tmp_path, {"custom": TRAINED})  # fp32 right on every image
    labels = np.arange(200) % 3
    for images, wrong in ((1, 30), (10, 4)):
        record = {"dataset": "toy", "dataset_name": "toy (test)", "model": "custom", "seed": 1, "scheme": "int8"}
        record |= {"calibration_images": images, "accuracy": 1 - wrong / 200, "test_images": 200}
        record |= {"predictions_file": f"int8_{images}.predictions.npy"}
        path = write(tmp_path / "calibration" / f"int8_{images}.metrics.json", record)
        predicted = labels.copy()
        predicted[:wrong] = (predicted[:wrong] + 1) % 3
        np.save(tmp_path / "calibration" / f"int8_{images}.predictions.npy", predicted.astype(np.int16))
        paths["calibrations"].append(path)
        paths["calibration_predictions"].append(tmp_path / "calibration" / f"int8_{images}.predictions.npy")
    gathered(tmp_path, paths)
    sweep = pd.read_csv(tmp_path / "calibration_csv.out")
    tested = sweep[~sweep.study_variant].set_index("calibration_images")
    assert tested.fp32_only_right.tolist() == [30, 4] and tested.variant_only_right.tolist() == [0, 0]
    raw = [mcnemar_exact(30, 0), mcnemar_exact(4, 0)]
    assert tested.mcnemar_p.tolist() == pytest.approx(raw)
    assert tested.holm_p.tolist() == pytest.approx(list(holm(raw)[0]))
    assert sweep[sweep.study_variant].mcnemar_p.isna().all()  # the study's int8 is tested in its own table


NPU_HEADING = "## On an Ethos-U NPU: Arm Vela's estimates"


def npu_boards():
    """``{board name: (label, npu)}`` of the config's boards with an NPU, as ``estimate_npu`` gets them."""
    config = yaml.safe_load((REPOSITORY / "config" / "config.yaml").read_text())
    return {board["name"]: (board["label"], board["npu"]) for board in config["boards"] if board.get("npu")}


def npu_estimate(folder, variant, board, npu, cycles=None, reason=None, sram_kb=0.0, flash_kb=0.0, on_cpu=()):
    """The record ``npu.run_npu_estimate`` writes: the variant and board, then ``compile_for_npu``'s fields.

    Compiled when ``cycles`` is given (the time is Vela's cycles at the board's NPU clock, its own time at
    its system configuration's 500 MHz beside it), else unsupported by Vela with ``reason``.
    """
    record = {**variant, "board": board, "npu": dict(npu), "vela_version": "v", "estimate": "Arm Vela's own estimate"}
    if cycles is None:
        record |= {"status": "unsupported by Vela", "reason": reason}
    else:
        record |= {
            "status": "compiled",
            "reason": None,
            "cycles": cycles,
            "vela_clock_hz": 500e6,
            "vela_inference_ms": 1000.0 * cycles / 500e6,
            "clock_hz": npu["clock_mhz"] * 1e6,
            "inference_ms": 1000.0 * cycles / (npu["clock_mhz"] * 1e6),
            "sram_kb": sram_kb,
            "flash_kb": flash_kb,
            "npu_macs": 1000,
            "cpu_operators": len(on_cpu),
            "cpu_operator_names": sorted(set(on_cpu)),
            "operators": 3,
        }
    name = f"{variant['model']}_seed{variant['seed']}_{variant['scheme']}_{board}.json"
    return write(folder / "npu" / name, record)


def npu_rows(markdown):
    """The NPU section's table, one ``{column: cell}`` per row."""
    section = markdown[markdown.index(NPU_HEADING) :].split("\n## ")[0]
    header, *rows = [cells(line) for line in section.splitlines() if line.startswith("| ")]
    return section, [dict(zip(header, row)) for row in rows]


HP, HE = "alif_e7_high_performance", "alif_e7_high_efficiency"
CRASH = "Vela ended with signal 11: Segmentation fault"


def test_the_npu_table_shows_velas_time_memory_cpu_operators_and_reason_with_each_variants_accuracy(tmp_path):
    boards = npu_boards()
    # The accuracy by key: fp32 100 %, int8 99 %, int16x8 98 % (2 and 4 of 200 images wrong), and the
    # results table's rows (fp32 first) are not in the NPU table's order.
    paths = study_records(tmp_path, {"custom": TRAINED}, ("fp32", "int8", "int16x8"))
    base = {"dataset": "toy", "model": "custom", "seed": 1}
    int8, int16 = {**base, "scheme": "int8"}, {**base, "scheme": "int16x8"}
    # Written in another order than the table's (variant, then board).
    paths["npu_estimates"] = [
        npu_estimate(tmp_path, int16, HE, boards[HE][1], reason=CRASH),
        npu_estimate(tmp_path, int8, HE, boards[HE][1], 200_000, sram_kb=96.04, flash_kb=310.26, on_cpu=["SOFTMAX"]),
        npu_estimate(tmp_path, int16, HP, boards[HP][1], 480_000, sram_kb=150.0, flash_kb=600.0),
        npu_estimate(tmp_path, int8, HP, boards[HP][1], 200_000, sram_kb=96.04, flash_kb=310.26, on_cpu=["SOFTMAX"]),
    ]
    _, markdown = gathered(tmp_path, paths)
    section, rows = npu_rows(markdown)
    assert "**Every figure is Vela's own estimate**" in section
    # One seed: no seed column.
    assert list(rows[0]) == [
        *("dataset", "model", "scheme", "board", "accelerator", "accuracy (%)"),
        *("inference (ms, Vela estimate)", "SRAM / flash (KB, Vela)", "operators on the CPU"),
    ]
    shown = [
        [row[name] for name in ("scheme", "board", "accelerator", "accuracy (%)")]
        + [row[name] for name in ("inference (ms, Vela estimate)", "SRAM / flash (KB, Vela)", "operators on the CPU")]
        for row in rows
    ]
    hp, he = boards[HP], boards[HE]
    # The time is the cycles at the board's NPU clock (400 and 160 MHz), not Vela's at its 500 MHz.
    assert (hp[1]["clock_mhz"], he[1]["clock_mhz"]) == (400, 160)
    assert shown == [
        ["int8", he[0], he[1]["accelerator"], "99.00", "1.250", "96.0 / 310.3", "1 (SOFTMAX)"],
        ["int8", hp[0], hp[1]["accelerator"], "99.00", "0.500", "96.0 / 310.3", "1 (SOFTMAX)"],
        ["int16x8", he[0], he[1]["accelerator"], "98.00", f"unsupported by Vela ({CRASH})", "-", "-"],
        ["int16x8", hp[0], hp[1]["accelerator"], "98.00", "1.200", "150.0 / 600.0", "0 (none)"],
    ]
    # npu.csv keeps the record's figures by board name, Vela's own time beside the board's; counts as integers.
    assert ",200000," in (tmp_path / "npu_csv.out").read_text()
    written = pd.read_csv(tmp_path / "npu_csv.out").set_index(["scheme", "board_name"])
    assert written.loc[("int8", HE), "cycles"] == 200_000
    assert written.loc[("int8", HE), "npu_clock_mhz"] == 160
    assert written.loc[("int8", HE), "vela_inference_ms"] == pytest.approx(0.4)
    assert written.loc[("int16x8", HE), "vela_reason"] == CRASH


def test_the_npu_table_has_a_seed_column_only_with_several_seeds(tmp_path):
    boards = npu_boards()
    paths = study_records(tmp_path, {"custom": TRAINED})
    variant = {"dataset": "toy", "model": "custom", "seed": 1, "scheme": "int8"}
    paths["npu_estimates"] = [npu_estimate(tmp_path, variant, HP, boards[HP][1], 200_000, 1.0, 2.0)]
    _, rows = npu_rows(gathered(tmp_path, paths)[1])
    assert "seed" not in rows[0]
    paths["npu_estimates"].append(npu_estimate(tmp_path, {**variant, "seed": 2}, HP, boards[HP][1], 200_000, 1.0, 2.0))
    _, rows = npu_rows(gathered(tmp_path, paths)[1])
    # Seed 2 has no evaluation here: no accuracy rather than another seed's.
    assert [(row["seed"], row["accuracy (%)"]) for row in rows] == [("1", "99.00"), ("2", "-")]


def test_no_npu_section_without_an_npu_estimate(tmp_path):
    _, markdown = gathered(tmp_path, study_records(tmp_path, {"custom": TRAINED}))
    assert NPU_HEADING not in markdown


def test_a_second_npu_record_of_a_variant_and_board_is_refused_naming_its_file(tmp_path):
    boards = npu_boards()
    int8 = {"dataset": "toy", "model": "custom", "seed": 1, "scheme": "int8"}
    first = npu_estimate(tmp_path, int8, HP, boards[HP][1], 200_000)
    again = write(tmp_path / "elsewhere" / "again.json", json.loads(first.read_text()))
    labels = {HP: boards[HP][0]}
    assert len(npu_table([first], labels)) == 1
    with pytest.raises(ValueError, match="again.json: a second record"):
        npu_table([first, again], labels)
