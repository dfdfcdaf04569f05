"""The benchmark's helpers: quick, deterministic, no timing assertions (the benchmark itself is a command)."""

import csv
import os

import numpy as np
import pytest
from conftest import REPOSITORY

from tinyml_quant import bench
from tinyml_quant.costs import job_graph, parse_dry_run


def test_rule_threads_reads_the_rule_files(tmp_path):
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "a.smk").write_text(
        "rule first:\n    input:\n        'x'\n    threads: 3\n    resources:\n        mem_mb=1,\n\n\n"
        "rule second:\n    output:\n        'y'\n    shell:\n        'touch y'\n"
    )
    assert bench.rule_threads(tmp_path, "first") == 3
    assert bench.rule_threads(tmp_path, "second") == 1
    with pytest.raises(ValueError, match="rule third not found"):
        bench.rule_threads(tmp_path, "third")


def test_rule_threads_of_the_workflow_are_positive():
    for rule in ("train_model", "convert_model", "evaluate_model"):
        assert bench.rule_threads(REPOSITORY, rule) >= 1


def test_subset_is_seeded_sorted_and_whole_when_asked():
    chosen = bench._subset(100, 10)
    assert len(chosen) == 10 and list(chosen) == sorted(chosen)
    np.testing.assert_array_equal(chosen, bench._subset(100, 10))
    np.testing.assert_array_equal(bench._subset(5, 0), np.arange(5))
    np.testing.assert_array_equal(bench._subset(5, 50), np.arange(5))


DRY_RUN = """
rule prepare_dataset:
    output: data/prepared/mnist.npz
    log: logs/prepare_dataset/mnist.log
    benchmark: benchmarks/prepare_dataset/mnist.tsv
rule train_model:
    input: data/prepared/mnist.npz
    output: results/train/mnist/a/model.keras, results/train/mnist/a/history.csv
    log: logs/train_model/mnist/a.log
    benchmark: benchmarks/train_model/mnist/a.tsv
    threads: 2
rule report:
    input: results/train/mnist/a/history.csv, benchmarks/train_model/mnist/a.tsv
    output: reports/report.md
rule all:
    input: reports/report.md
"""


def test_fake_up_to_date_makes_every_product_newer_than_what_it_needs(tmp_path):
    assert bench.fake_up_to_date(tmp_path, DRY_RUN) == 4
    jobs = parse_dry_run(DRY_RUN)
    for key, required in job_graph(jobs).items():
        for product in jobs[key]["products"]:
            assert (tmp_path / product).is_file()
            for other in required:
                for needed in jobs[other]["products"]:
                    assert os.path.getmtime(tmp_path / product) > os.path.getmtime(tmp_path / needed)


def test_report_checks_ratios_and_limits():
    report = bench.Report()
    assert report.figure("s", "faster", 300.0, "images/s", baseline=100.0, target=1.5) == 3.0
    report.figure("s", "slower", 100.0, "images/s", baseline=100.0, target=1.5)
    report.figure("s", "quick", 1.2, "s", target=3.0, higher_is_better=False)
    report.figure("s", "info", 7.0, "s")
    assert [row["met"] for row in report.rows] == [True, False, True, None]
    assert len(report.targets()) == 3


def test_write_report_writes_markdown_and_csv(tmp_path):
    report = bench.Report()
    report.figure("evaluation", "int8_vs_litert_fp32", 3000.0, "images/s", "m", baseline=1000.0, target=1.5)
    report.add("## 1. Something\n\ntext\n")
    machine = {
        "cores": 2,
        "usable_cores": 2,
        "cpu_model": "A CPU",
        "machine": "Linux",
        "python": "3.11",
        "versions": {"numpy": "2"},
        "load_average_at_start": (0.1, 0.1, 0.1),
        "date": "today",
    }
    args = bench.parse_arguments(["--workflow", str(REPOSITORY), "--quick"])
    bench.write_report(report, machine, args, tmp_path, started=0.0)
    markdown = (tmp_path / "bench.md").read_text()
    assert (
        "| CPU | A CPU |" in markdown
        and "| evaluation | int8_vs_litert_fp32 | m | 3,000 | 3.00 | >= 1.5 | yes |" in markdown
    )
    assert "## 1. Something" in markdown
    rows = list(csv.DictReader(open(tmp_path / "bench.csv")))
    assert {"cores", "cpu_model", "version_numpy", "bench_wall_s"} <= {row["metric"] for row in rows}
    (figure,) = [row for row in rows if row["metric"] == "int8_vs_litert_fp32"]
    assert figure["ratio"] == "3" and figure["met"] == "True" and figure["target_kind"] == ">="


def test_quick_sizes_and_paths(tmp_path):
    args = bench.parse_arguments(["--workflow", str(REPOSITORY), "--quick", "--mirror", str(tmp_path)])
    assert (args.train_images, args.epochs, args.test_images, args.repeats) == (600, 2, 1000, 1)
    assert args.mirror == tmp_path.resolve() and args.output_dir == REPOSITORY / "reports"
    assert args.models == ["resnet_v1", "mobilenet_v2"]
    with pytest.raises(SystemExit):
        bench.parse_arguments(["--workflow", str(tmp_path)])  # no Snakefile there


def test_keras_macs_counts_convolutions_and_dense_layers():
    import keras

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)  # 8*8*4 outputs x 3*3*3
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)  # 8*8*4 outputs x 3*3
    x = keras.layers.SeparableConv2D(6, 3, strides=2, padding="same")(x)  # 4*4*4*3*3 + 4*4*6*4
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(5)(x)  # 6 * 5
    model = keras.Model(inputs, outputs)
    expected = 8 * 8 * 4 * 27 + 8 * 8 * 4 * 9 + (4 * 4 * 4 * 9 + 4 * 4 * 6 * 4) + 6 * 5
    assert bench.keras_macs(model) == expected
