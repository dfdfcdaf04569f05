"""The tools beside the library: the benchmark's pure parts, the config checker, the workflow runner."""

import ast
import json

import pytest

from tinyml_quant.config import merged
from tools.bench import projection, report
from tools.bench.training import achieved_gflops, cost_shares, images_per_second, read_onednn_log
from tools.check_config import checked_config
from tools.workflow import REPOSITORY, Job, read_job_log


def job(jobid, rule, inputs=(), outputs=(), threads=1, benchmark="", **wildcards):
    return Job(jobid, rule, wildcards, threads, tuple(inputs), tuple(outputs), (), benchmark)


GRAPH = [
    job(1, "prepare_dataset", outputs=["data.npz"], benchmark="b/prepare.tsv"),
    job(2, "train_model", ["data.npz"], ["a.keras"], threads=2, benchmark="b/train_a.tsv", model="a"),
    job(3, "train_model", ["data.npz"], ["b.keras"], threads=2, benchmark="b/train_b.tsv", model="b"),
    job(4, "convert_model", ["a.keras"], ["a.tflite"], benchmark="b/convert_a.tsv", model="a", scheme="int8"),
    job(5, "convert_model", ["b.keras"], ["b.tflite"], model="b", scheme="int8"),
    job(0, "all", ["a.tflite", "b.tflite"]),
]
MEASURED = {"b/prepare.tsv": 2.0, "b/train_a.tsv": 30.0, "b/train_b.tsv": 10.0, "b/convert_a.tsv": 4.0}


def test_the_job_graph_links_jobs_through_their_files():
    assert projection.job_graph(GRAPH) == {1: [], 2: [1], 3: [1], 4: [2], 5: [3], 0: [4, 5]}


def test_a_job_without_a_figure_gets_its_rules_median():
    seconds, estimated = projection.durations(GRAPH, MEASURED)
    assert seconds[5] == 4.0 and estimated == [5] and seconds[0] == 0.0


def test_the_projection_follows_the_critical_path_and_the_cores():
    seconds, _ = projection.durations(GRAPH, MEASURED)
    result = projection.project(GRAPH, seconds, core_counts=(2, 4), cluster_jobs=(8,))
    assert result["critical_path"] == [1, 2, 4, 0] and result["critical_path_s"] == 36.0
    assert result["job_seconds"] == 50.0 and result["core_seconds"] == 90.0
    # Two 2-thread trainings cannot run side by side on 2 cores; on 4 they can.
    assert result["cores"][2] == 2 + 30 + 10 + 4 and result["cores"][4] == 36.0
    assert result["cluster"][8] == 36.0


def test_onednn_records_are_summed_per_primitive_from_the_later_half(tmp_path):
    log = tmp_path / "run.log"
    lines = [
        "onednn_verbose,v1,primitive,exec,cpu,convolution,brg:avx512,forward_training,src:f32,,alg:conv,mb1,2.0",
        "some other line",
        "onednn_verbose,v1,primitive,exec,cpu,convolution,brg:avx512,backward_weights,src:f32,,alg:conv,mb1,5.0",
        "onednn_verbose,v1,primitive,create:cache_miss,cpu,convolution,brg,forward_training,src,,alg,mb1,9.0",
        "onednn_verbose,v1,primitive,exec,cpu,reorder,simple:any,undef,src:f32,,,1x2,1.5",
        "onednn_verbose,v1,primitive,exec,cpu,convolution,brg:avx512,backward_weights,src:f32,,alg:conv,mb1,3.0",
    ]
    log.write_text("\n".join(lines) + "\n")
    totals = read_onednn_log(log, skip_first=0.0)
    assert totals == {
        ("convolution", "forward_training"): 2.0,
        ("convolution", "backward_weights"): 8.0,
        ("reorder", "undef"): 1.5,
    }
    assert read_onednn_log(log, skip_first=0.5) == {("reorder", "undef"): 1.5, ("convolution", "backward_weights"): 3.0}
    shares = cost_shares(totals)
    assert shares[0][0] == ("convolution", "backward_weights") and sum(share for _, _, share in shares) == 100


def test_training_throughput_leaves_the_first_epoch_out_and_counts_three_passes():
    assert images_per_second({"epoch_wall_s": [50.0, 10.0, 12.0, 10.0], "train_images": 1000}) == 100.0
    assert images_per_second({"epoch_wall_s": [8.0], "train_images": 800}) == 100.0
    assert achieved_gflops(500.0, 40e6) == pytest.approx(500 * 40e6 * 2 * 3 / 1e9)


def test_a_report_checks_each_ratio_against_its_target(tmp_path):
    figures = report.Report()
    assert figures.figure("s", "faster", 30.0, "x/s", baseline=20.0, target=1.4) == 1.5
    figures.figure("s", "slow", 5.0, "s", target=3.0, higher_is_better=False)
    figures.figure("s", "plain", 1.0, "s")
    assert [row["met"] for row in figures.targets()] == [True, False]
    assert report.fmt(1234.5) == "1,234" and report.fmt(None) == "n/a" and report.fmt(False) == "NO"
    machine = {
        "date": "today",
        "cores": 2,
        "usable_cores": 2,
        "cpu_model": "cpu",
        "cpu_flags": ["avx2"],
        "machine": "m",
        "python": "3.11",
        "versions": {},
        "load_average_at_start": (0.1, 0, 0),
    }
    report.write(figures, machine, "python -m tools.bench", tmp_path, 0.0)
    assert "| s | faster |  | 30.00 | 1.50 | >= 1.4 | yes |" in (tmp_path / "bench.md").read_text()
    assert "instruction sets | avx2" in (tmp_path / "bench.md").read_text()


def test_the_job_log_reader_keeps_what_a_killed_run_wrote(tmp_path):
    path = tmp_path / "jobs.jsonl"
    announced = {
        "event": "announced",
        "jobid": 3,
        "rule_name": "train_model",
        "wildcards": {"model": "a"},
        "threads": 2,
        "input": ["d"],
        "output": ["m"],
        "log": ["l"],
        "benchmark": "b",
        "reason": "",
    }
    path.write_text(json.dumps(announced) + "\n" + json.dumps({"event": "finished", "jobid": 3}) + '\n{"event": "ann')
    jobs, finished = read_job_log(path)
    assert [job.key for job in jobs] == [("train_model", "model=a")] and finished == {3}
    assert jobs[0].products == ("m", "l", "b")


def test_config_files_merge_as_snakemake_merges_them():
    base = {"training": {"epochs": 3, "per_dataset": {"mnist": {"epochs": 2}}}, "models": ["a", "b"]}
    result = merged(base, {"training": {"per_dataset": {"mnist": {"batch_size": 8}}}, "models": ["c"]})
    assert result == {
        "training": {"epochs": 3, "per_dataset": {"mnist": {"epochs": 2, "batch_size": 8}}},
        "models": ["c"],
    }
    assert base["models"] == ["a", "b"]


def test_the_config_checker_runs_the_workflows_checks(tmp_path):
    (tmp_path / "mine.yaml").write_text("study: mine\nmodels: [custom]\ndatasets: [mnist]\n")
    config = checked_config([tmp_path / "mine.yaml"], base_folder=tmp_path)
    assert config["study"] == "mine"
    (tmp_path / "bad.yaml").write_text("architectures:\n  resnet_v1: {depth: 21}\n")
    with pytest.raises(ValueError, match="architectures.resnet_v1.depth"):
        checked_config([tmp_path / "bad.yaml"])


def test_every_benchmark_step_run_in_a_child_is_importable_there():
    # A spawned child finds the function by its module; one defined in
    # ``python -m tools.bench``'s __main__ is not there (the child dies at once).
    tree = ast.parse((REPOSITORY / "tools" / "bench" / "__main__.py").read_text())
    calls = [
        node for node in ast.walk(tree) if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "in_child"
    ]
    assert calls
    for call in calls:
        assert isinstance(call.args[0], ast.Attribute), f"line {call.lineno}: in_child of a function of __main__"
