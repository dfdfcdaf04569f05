"""The tools beside the library: the benchmark's pure parts, the config checker, the workflow runner."""

import argparse
import ast
import json

import pytest
import yaml

from tools.bench import projection, report
from tools.bench.training import achieved_gflops, cost_shares, images_per_second, read_onednn_log
from tools.check_config import checked_config, merge
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
    merged = merge(base, {"training": {"per_dataset": {"mnist": {"batch_size": 8}}}, "models": ["c"]})
    assert merged == {
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


def test_mutation_scores_count_equivalents_apart_and_flag_unfinished_modules():
    from collections import Counter

    from tools.mutation import score_rows, summary

    statuses = {
        "tinyml_quant.files.x_a__mutmut_1": "killed",
        "tinyml_quant.files.x_a__mutmut_2": "timeout",
        "tinyml_quant.files.x_a__mutmut_3": "survived",
        "tinyml_quant.files.x_a__mutmut_4": "survived",
        "tinyml_quant.micro.x_b__mutmut_1": "killed",
        "tinyml_quant.micro.x_b__mutmut_2": "not checked",
        "tinyml_quant.training.x_c__mutmut_1": "not checked",
    }
    per_module = summary(statuses, {"tinyml_quant.files.x_a__mutmut_4": "changes nothing"}, ["files", "recovery"])
    assert per_module["files"] == Counter(killed=2, survived=1, equivalent=1)
    assert score_rows(per_module) == [
        "| files | 4 | 2 | 1 | 1 | 0 | 66.7% | NO |",
        "| micro | 2 | 1 | 0 | 0 | 1 | 100.0% | not run to completion |",
        "| recovery | 0 | 0 | 0 | 0 | 0 | - | not run yet |",  # listed, never mutated
        "| training | 1 | 0 | 0 | 0 | 1 | - | not run to completion |",
    ]


def test_the_mutation_report_has_a_row_for_every_module_the_configuration_names(tmp_path):
    from tools.mutation import listed_modules, write_report

    assert {"layer_error", "micro", "recovery", "training"} <= set(listed_modules())
    write_report({"tinyml_quant.files.x_a__mutmut_1": "killed"}, 3600, output=tmp_path / "mutation.md")
    rows = [line for line in (tmp_path / "mutation.md").read_text().splitlines() if line.startswith("| ")]
    assert [row.split(" | ")[0].removeprefix("| ") for row in rows[2:]] == sorted(listed_modules())
    assert "| files | 1 | 1 | 0 | 0 | 0 | 100.0% | yes |" in rows
    assert "| recovery | 0 | 0 | 0 | 0 | 0 | - | not run yet |" in rows


def test_mutation_widens_each_functions_tests_to_their_modules(tmp_path):
    import json

    from tools.mutation import widen_to_test_modules

    stats = {
        "duration_by_test": {"tests/test_a.py::one": 1, "tests/test_a.py::two": 1, "tests/test_b.py::three": 1},
        "tests_by_mangled_function_name": {"tinyml_quant.files.x_a": ["tests/test_a.py::one"]},
    }
    (tmp_path / "stats.json").write_text(json.dumps(stats))
    assert widen_to_test_modules(tmp_path / "stats.json") == 1
    widened = json.loads((tmp_path / "stats.json").read_text())["tests_by_mangled_function_name"]
    assert widened == {"tinyml_quant.files.x_a": ["tests/test_a.py::one", "tests/test_a.py::two"]}


def test_mutation_refreshes_the_copies_mutmut_would_mutate_wrongly_or_not_at_all(tmp_path):
    import os

    from tools.mutation import refresh_mutated_sources

    (tmp_path / "pyproject.toml").write_text(
        '[tool.mutmut]\nonly_mutate = ["src/p/new.py", "src/p/edited.py", "src/p/listed.py", "src/p/same.py"]\n'
    )
    sources = tmp_path / "src" / "p"
    sources.mkdir(parents=True)
    for name in ("edited", "listed", "same", "new"):
        (sources / f"{name}.py").write_text(f"{name} = 1\n")
        os.utime(sources / f"{name}.py", (1_000_000_000, 1_000_000_000))
    copies = tmp_path / "mutants" / "src" / "p"
    copies.mkdir(parents=True)
    for name in ("edited", "listed", "same"):
        (copies / f"{name}.py").write_text("trampolined = True\n")
        os.utime(copies / f"{name}.py", (1_000_000_500, 1_000_000_500))  # mutated after the source was written
    for name in ("edited", "same"):
        (copies / f"{name}.py.meta").write_text("{}")
    os.utime(sources / "edited.py", (1_000_000_900, 1_000_000_900))  # edited after mutation
    assert refresh_mutated_sources(tmp_path) == ["src/p/edited.py", "src/p/listed.py"]
    for name in ("edited", "listed"):
        assert (copies / f"{name}.py").read_text() == f"{name} = 1\n"
        # The source's own time: mutmut takes an equal time for "copied, not yet mutated".
        assert (copies / f"{name}.py").stat().st_mtime == (sources / f"{name}.py").stat().st_mtime
    assert (copies / "same.py").read_text() == "trampolined = True\n"
    assert not (copies / "new.py").exists()


def test_mutation_forgets_the_tests_it_has_seen_and_keeps_the_rest(tmp_path):
    import json

    from tools.mutation import forget_seen_tests

    stats = tmp_path / "mutmut-stats.json"
    assert forget_seen_tests(stats) is False and not stats.exists()
    recorded = {"duration_by_test": {"tests/t.py::a": 1.5}, "tests_by_mangled_function_name": {"p.x_f": ["t::a"]}}
    stats.write_text(json.dumps(recorded))
    assert forget_seen_tests(stats) is True
    assert json.loads(stats.read_text()) == {**recorded, "duration_by_test": {}}


@pytest.fixture
def mutation_stand_ins(monkeypatch, tmp_path):
    """Every step of a mutation run that reaches outside the test fails unless the test stands in for it.

    A test of ``main`` or ``run_passes`` that forgot one would otherwise start
    mutmut on this checkout or rewrite the committed record and report.
    """
    from tools import mutation

    def stand_in_missing(name):
        return lambda *arguments, **keywords: pytest.fail(f"tools.mutation.{name} reached without a stand-in")

    for name in (
        "mutmut_run",
        "mutmut",
        "save_record",
        "restore_record",
        "write_report",
        "refresh_mutated_sources",
        "forget_seen_tests",
        "widen_to_test_modules",
        "timeouts_survived",
    ):
        monkeypatch.setattr(mutation, name, stand_in_missing(name))
    monkeypatch.setattr(mutation, "STATS", tmp_path / "no-mutmut-stats.json")


def stand_in_stats(tmp_path, monkeypatch):
    """mutmut's record of each function's tests as a file of the test's own, and a widening that marks it."""
    from tools import mutation

    stats = tmp_path / "mutmut-stats.json"
    stats.write_text("each function's own tests")

    def widen():
        stats.write_text("widened")
        return 0

    monkeypatch.setattr(mutation, "STATS", stats)
    monkeypatch.setattr(mutation, "widen_to_test_modules", widen)
    return stats


def test_mutation_survivors_only_reruns_the_survivors_and_a_run_widens_only_its_new_survivors(
    tmp_path, monkeypatch, mutation_stand_ins
):
    from tools import mutation

    old, new, killed, equivalent = (f"tinyml_quant.files.x_a__mutmut_{number}" for number in (1, 2, 3, 4))
    statuses = {old: "survived", new: "not checked", killed: "killed", equivalent: "survived"}
    runs, saved = [], []

    def run(*mutants, deadline=None):
        runs.append(mutants)
        if not mutants:
            statuses[new] = "survived"  # what a whole first pass finds
        return 0

    stats = stand_in_stats(tmp_path, monkeypatch)
    monkeypatch.setattr(mutation, "restore_record", lambda: [])
    monkeypatch.setattr(mutation, "refresh_mutated_sources", lambda: [])
    monkeypatch.setattr(mutation, "save_record", saved.append)
    monkeypatch.setattr(mutation, "results", lambda: dict(statuses))
    monkeypatch.setattr(mutation, "results_of_current_code", lambda: dict(statuses))
    monkeypatch.setattr(mutation, "write_report", lambda statuses, seconds: {})
    monkeypatch.setattr(mutation, "mutmut_run", run)
    second_passes = []
    monkeypatch.setattr(mutation, "timeouts_survived", lambda mutants: second_passes.append(mutants) or [])
    monkeypatch.setattr(mutation, "judgements", lambda: {equivalent: {"change": "", "reason": "no test can see it"}})
    assert mutation.main(["--survivors-only"]) == 0
    # The recorded tests, then whole test modules; not the survivor judged equivalent.
    assert runs == [(old,), (old,)]
    assert second_passes == [[old]]  # its timeouts there are looked at
    assert stats.read_text() == "each function's own tests"  # widened for the second pass only
    runs.clear()
    assert mutation.main([]) == 0
    # The earlier survivors took the second pass in their own run.
    assert runs == [(), (new,)]
    assert len(saved) == 2


def test_mutation_whole_modules_runs_the_named_survivors_against_whole_test_modules_only(
    tmp_path, monkeypatch, mutation_stand_ins
):
    from tools import mutation

    named, other = "tinyml_quant.files.x_a__mutmut_1", "tinyml_quant.files.x_a__mutmut_2"
    runs, stats_seen, second_passes = [], [], []
    stats = stand_in_stats(tmp_path, monkeypatch)

    def run(*mutants, deadline=None):
        runs.append(mutants)
        stats_seen.append(stats.read_text())
        return 0

    monkeypatch.setattr(mutation, "restore_record", lambda: [])
    monkeypatch.setattr(mutation, "refresh_mutated_sources", lambda: [])
    monkeypatch.setattr(mutation, "save_record", lambda seconds: None)
    monkeypatch.setattr(mutation, "results", lambda: {named: "survived", other: "survived"})
    monkeypatch.setattr(mutation, "results_of_current_code", lambda: {})
    monkeypatch.setattr(mutation, "write_report", lambda statuses, seconds: {})
    monkeypatch.setattr(mutation, "mutmut_run", run)
    monkeypatch.setattr(mutation, "timeouts_survived", lambda mutants: second_passes.append(mutants) or [])
    assert mutation.main(["--whole-modules", named]) == 0
    assert runs == [(named,)]  # one run, no first pass
    assert stats_seen == ["widened"]
    assert second_passes == [[named]]  # its timeouts there are looked at
    assert stats.read_text() == "each function's own tests"


def test_mutation_whole_modules_refuses_when_the_tests_calls_were_just_forgotten(monkeypatch, mutation_stand_ins):
    from tools import mutation

    # A refreshed module empties the record of which test calls what: nothing to widen yet.
    monkeypatch.setattr(mutation, "refresh_mutated_sources", lambda: ["src/tinyml_quant/files.py"])
    monkeypatch.setattr(mutation, "forget_seen_tests", lambda: True)
    monkeypatch.setattr(mutation, "mutmut_run", lambda *mutants, deadline=None: pytest.fail("mutmut ran"))
    arguments = argparse.Namespace(survivors_only=False, modules=[], mutants=["x"], whole_modules=True)
    with pytest.raises(SystemExit, match="run its first pass first"):
        mutation.run_passes(arguments, deadline=None)


def test_mutation_refreshes_the_sources_again_before_the_second_pass(monkeypatch, mutation_stand_ins):
    from tools import mutation

    # A source edited while the first pass ran must not be remade from its mutated copy.
    survivor = "tinyml_quant.files.x_a__mutmut_1"
    statuses = {survivor: "not checked"}
    calls = []

    def run(*mutants, deadline=None):
        calls.append(("run", mutants))
        statuses[survivor] = "survived"
        return 0

    monkeypatch.setattr(mutation, "refresh_mutated_sources", lambda: calls.append("refresh") or [])
    monkeypatch.setattr(mutation, "results", lambda: dict(statuses))
    monkeypatch.setattr(mutation, "run_on_whole_test_modules", lambda mutants: calls.append(("whole", mutants)))
    monkeypatch.setattr(mutation, "mutmut_run", run)
    arguments = argparse.Namespace(survivors_only=False, modules=[], mutants=[survivor], whole_modules=False)
    mutation.run_passes(arguments, deadline=None)
    assert calls == ["refresh", ("run", (survivor,)), "refresh", ("whole", [survivor])]


def test_an_interrupted_second_pass_still_records_its_time_limit_stops_and_restores_the_tests(
    tmp_path, monkeypatch, mutation_stand_ins
):
    from tools import mutation

    survivor = "tinyml_quant.files.x_a__mutmut_1"
    statuses = {survivor: "not checked"}
    stats = stand_in_stats(tmp_path, monkeypatch)
    second_passes = []

    def run(*mutants, deadline=None):
        if mutants:  # the second pass, stopped by Ctrl+C as a user or the deadline would
            raise KeyboardInterrupt
        statuses[survivor] = "survived"
        return 0

    monkeypatch.setattr(mutation, "refresh_mutated_sources", lambda: [])
    monkeypatch.setattr(mutation, "results", lambda: dict(statuses))
    monkeypatch.setattr(mutation, "mutmut_run", run)
    monkeypatch.setattr(mutation, "timeouts_survived", lambda mutants: second_passes.append(mutants) or [])
    arguments = argparse.Namespace(survivors_only=False, modules=[], mutants=[], whole_modules=False)
    with pytest.raises(KeyboardInterrupt):
        mutation.run_passes(arguments, deadline=None)
    assert second_passes == [[survivor]]
    assert stats.read_text() == "each function's own tests"


def test_mutation_modules_runs_only_their_mutants_without_a_result(monkeypatch, capsys, mutation_stand_ins):
    from tools import mutation

    # mutmut reruns every mutant it is given by name: finished ones must not be among them.
    statuses = {
        "tinyml_quant.readers.x_a__mutmut_2": "not checked",
        "tinyml_quant.readers.x_a__mutmut_1": "killed",
        "tinyml_quant.readers.x_b__mutmut_1": "survived",
        "tinyml_quant.config.x_c__mutmut_1": "not checked",
        "tinyml_quant.files.x_d__mutmut_1": "not checked",
    }
    runs = []

    def run(*mutants, deadline=None):
        runs.append(mutants)
        return 0

    monkeypatch.setattr(mutation, "restore_record", lambda: [])
    monkeypatch.setattr(mutation, "refresh_mutated_sources", lambda: [])
    monkeypatch.setattr(mutation, "save_record", lambda seconds: None)
    monkeypatch.setattr(mutation, "results_of_current_code", lambda: dict(statuses))
    monkeypatch.setattr(mutation, "survivors", lambda: ["tinyml_quant.readers.x_b__mutmut_1"])
    monkeypatch.setattr(mutation, "write_report", lambda statuses, seconds: {})
    monkeypatch.setattr(mutation, "mutmut_run", run)
    assert mutation.main(["--modules", "readers", "config"]) == 0
    assert runs == [("tinyml_quant.config.x_c__mutmut_1", "tinyml_quant.readers.x_a__mutmut_2")]
    # Nothing left to run: no mutmut at all, which without names would run every mutant.
    statuses = dict.fromkeys(statuses, "killed")
    runs.clear()
    assert mutation.main(["--modules", "readers"]) == 0
    assert runs == []
    assert "no mutant to run" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--modules", "reader"], "--modules: reader not among only_mutate in pyproject.toml"),
        (["--modules", "readers", "--survivors-only"], "--modules takes no mutant names"),
        (["tinyml_quant.readers.x_a__mutmut_1", "--modules", "readers"], "--modules takes no mutant names"),
        (["--whole-modules"], "--whole-modules takes mutant names or --survivors-only"),
        (["--whole-modules", "--modules", "readers"], "--whole-modules takes mutant names or --survivors-only"),
    ],
)
def test_mutation_refuses_modules_it_does_not_mutate_or_mixed_with_names(
    arguments, message, capsys, mutation_stand_ins
):
    from tools import mutation

    with pytest.raises(SystemExit):
        mutation.main(arguments)
    assert message in capsys.readouterr().err


def test_mutation_keeps_the_record_when_the_run_fails(monkeypatch, mutation_stand_ins):
    from tools import mutation

    saved = []
    monkeypatch.setattr(mutation, "restore_record", lambda: [])
    monkeypatch.setattr(mutation, "refresh_mutated_sources", lambda: [])
    monkeypatch.setattr(mutation, "save_record", saved.append)
    monkeypatch.setattr(mutation, "results", lambda: {})

    def broken(*mutants, deadline=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(mutation, "mutmut_run", broken)
    with pytest.raises(KeyboardInterrupt):
        mutation.main([])
    assert len(saved) == 1  # what mutmut had finished is in the record


def test_mutation_refuses_a_time_limit_that_is_not_positive(capsys, mutation_stand_ins):
    from tools import mutation

    with pytest.raises(SystemExit):
        mutation.main(["--minutes", "0"])
    assert "--minutes must be positive, not 0.0" in capsys.readouterr().err


def mutated_project(root, exit_codes):
    """A checkout with one mutated module whose mutmut results are ``exit_codes``."""
    root.mkdir(exist_ok=True)
    (root / "pyproject.toml").write_text('[tool.mutmut]\nonly_mutate = ["src/p/a.py", "src/p/b.py"]\n')
    meta = {
        "exit_code_by_key": exit_codes,
        "hash_by_function_name": {"x_f": "1234"},
        "type_check_error_by_key": {},
        "durations_by_key": {"p.a.x_f__mutmut_1": 2.5},
        "estimated_durations_by_key": {},
    }
    (root / "mutants" / "src" / "p").mkdir(parents=True)
    (root / "mutants" / "src" / "p" / "a.py.meta").write_text(json.dumps(meta))


def test_a_survivor_that_times_out_on_whole_test_modules_is_recorded_as_survived(tmp_path):
    from tools.mutation import results, timeouts_survived

    second_pass, hung, killed = (f"p.a.x_f__mutmut_{number}" for number in (1, 2, 3))
    # -24: mutmut's worker stopped by its CPU-time limit.
    mutated_project(tmp_path, {second_pass: -24, hung: -24, killed: 1})
    assert timeouts_survived([second_pass, killed], tmp_path) == [second_pass]
    # A timeout in the first pass (a hang) stays killed.
    assert results(tmp_path) == {second_pass: "survived", hung: "timeout", killed: "killed"}


def test_mutation_results_go_to_the_record_and_back_into_a_fresh_checkout_as_mutmut_reads_them(tmp_path, monkeypatch):
    from mutmut.mutation.data import SourceFileMutationData

    from tools.mutation import restore_record, results, save_record

    record = tmp_path / "mutation_results.json"
    worked = tmp_path / "worked"
    mutated_project(worked, {"p.a.x_f__mutmut_1": 1, "p.a.x_f__mutmut_2": 0, "p.a.x_f__mutmut_3": None})
    assert results(worked) == {
        "p.a.x_f__mutmut_1": "killed",
        "p.a.x_f__mutmut_2": "survived",
        "p.a.x_f__mutmut_3": "not checked",
    }
    save_record(100.4, worked, record)
    save_record(50, worked, record)  # a second run adds its time
    saved = json.loads(record.read_text())
    assert saved["seconds"] == 150
    assert saved["modules"] == {
        "src/p/a.py": {
            "exit_code_by_key": {"p.a.x_f__mutmut_1": 1, "p.a.x_f__mutmut_2": 0, "p.a.x_f__mutmut_3": None},
            "hash_by_function_name": {"x_f": "1234"},
        }
    }

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "pyproject.toml").write_text((worked / "pyproject.toml").read_text())
    assert restore_record(fresh, record) == ["src/p/a.py"]
    monkeypatch.chdir(fresh)  # mutmut reads mutants/ of the working directory
    restored = SourceFileMutationData(path="src/p/a.py")
    restored.load()
    assert restored.exit_code_by_key == saved["modules"]["src/p/a.py"]["exit_code_by_key"]
    assert restored.hash_by_function_name == {"x_f": "1234"}
    assert results(fresh) == results(worked)


def test_mutants_of_a_function_edited_since_mutmut_made_them_count_as_not_run(tmp_path):
    from mutmut.mutation.file_mutation import compute_function_hashes

    from tools.mutation import results, results_of_current_code

    source = tmp_path / "src" / "p" / "a.py"
    source.parent.mkdir(parents=True)
    source.write_text("def f(x):\n    return x + 1\n\n\ndef g(x):\n    return x - 1\n")
    mutated_project(tmp_path, {"p.a.x_f__mutmut_1": 1, "p.a.x_g__mutmut_1": 1, "p.a.x_g__mutmut_2": 0})
    meta_file = tmp_path / "mutants" / "src" / "p" / "a.py.meta"
    meta = json.loads(meta_file.read_text())
    meta["hash_by_function_name"] = compute_function_hashes(source.read_text())
    meta_file.write_text(json.dumps(meta))
    assert results_of_current_code(tmp_path) == results(tmp_path)
    source.write_text(source.read_text().replace("x - 1", "x - 2"))
    assert results_of_current_code(tmp_path) == {
        "p.a.x_f__mutmut_1": "killed",
        "p.a.x_g__mutmut_1": "not checked",
        "p.a.x_g__mutmut_2": "not checked",
    }


def test_mutation_never_overwrites_a_checkouts_own_results_and_keeps_the_recorded_ones_it_lacks(tmp_path):
    from tools.mutation import restore_record, save_record

    record = tmp_path / "mutation_results.json"
    recorded_b = {"exit_code_by_key": {"p.b.x_g__mutmut_1": 1}, "hash_by_function_name": {"x_g": "5678"}}
    recorded_a = {"exit_code_by_key": {"p.a.x_f__mutmut_1": None}, "hash_by_function_name": {"x_f": "1234"}}
    record.write_text(json.dumps({"seconds": 10, "modules": {"src/p/a.py": recorded_a, "src/p/b.py": recorded_b}}))
    mutated_project(tmp_path, {"p.a.x_f__mutmut_1": 1})  # ran here since: newer than the record
    assert restore_record(tmp_path, record) == ["src/p/b.py"]
    assert json.loads((tmp_path / "mutants" / "src" / "p" / "a.py.meta").read_text())["exit_code_by_key"] == {
        "p.a.x_f__mutmut_1": 1
    }
    (tmp_path / "mutants" / "src" / "p" / "b.py.meta").unlink()  # results of b lost here
    modules = save_record(0, tmp_path, record)["modules"]
    assert modules["src/p/a.py"]["exit_code_by_key"] == {"p.a.x_f__mutmut_1": 1}
    assert modules["src/p/b.py"] == recorded_b


@pytest.mark.parametrize("sigint", ["default", "ignored"])  # ignored: started with nohup ... & by a shell
def test_a_mutation_run_past_its_deadline_is_interrupted_as_ctrl_c_would_and_finishes(tmp_path, sigint):
    import signal
    import sys
    import time

    from tools.mutation import run_until

    # A stand-in for mutmut: Python's own KeyboardInterrupt, as mutmut has, then an exit as mutmut's.
    child = (
        "import sys, time, pathlib\n"
        "try:\n"
        "    time.sleep(60)\n"
        "except KeyboardInterrupt:\n"
        f"    pathlib.Path({str(tmp_path / 'interrupted')!r}).write_text('KeyboardInterrupt')\n"
        "    sys.exit(0)\n"
    )
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN if sigint == "ignored" else signal.default_int_handler)
    try:
        started = time.monotonic()
        assert run_until([sys.executable, "-c", child], deadline=time.monotonic() + 5) == 0
    finally:
        signal.signal(signal.SIGINT, handler)
    assert time.monotonic() - started < 30
    assert (tmp_path / "interrupted").read_text() == "KeyboardInterrupt"
    assert run_until([sys.executable, "-c", "import sys; sys.exit(3)"], deadline=time.monotonic() + 30) == 3


def test_mutmut_keeps_the_restored_results_of_unchanged_functions_and_runs_changed_ones_again(tmp_path):
    """The record's contract with mutmut itself, on a two-function project in a fresh checkout."""
    import os
    import shutil
    import subprocess
    import sys

    from tools.mutation import mutants_made, restore_record, results, save_record

    checkout, record = tmp_path / "checkout", tmp_path / "mutation_results.json"
    (checkout / "src" / "tiny").mkdir(parents=True)
    (checkout / "tests").mkdir()
    (checkout / "pyproject.toml").write_text(
        '[tool.mutmut]\nsource_paths = ["src/tiny"]\nonly_mutate = ["src/tiny/arith.py"]\n'
        'pytest_add_cli_args_test_selection = ["tests/", "-p", "no:cacheprovider"]\n'
    )
    (checkout / "src" / "tiny" / "__init__.py").write_text("")
    (checkout / "src" / "tiny" / "arith.py").write_text(
        "def add(a, b):\n    return a + b\n\n\ndef double(value):\n    return value * 2\n"
    )
    tests = checkout / "tests" / "test_arith.py"
    tests.write_text(
        "from tiny.arith import add, double\n\n\ndef test_add():\n    assert add(0, 0) == 0\n\n\n"
        "def test_double():\n    assert double(3) == 6\n"
    )
    # Not this process's mutant, should it run under mutmut itself.
    variables = {name: value for name, value in os.environ.items() if not name.startswith(("MUTANT", "MUTMUT"))}

    def mutmut_run():
        subprocess.run(
            [sys.executable, "-m", "mutmut", "run"], cwd=checkout, env=variables, check=True, capture_output=True
        )

    mutmut_run()
    first = results(checkout)
    assert {status for name, status in first.items() if ".x_add_" in name} == {"survived"}  # add(0, 0) tells little
    assert {status for name, status in first.items() if ".x_double_" in name} == {"killed"}
    save_record(5, checkout, record)

    shutil.rmtree(checkout / "mutants")  # a fresh clone of the checkout
    tests.write_text(tests.read_text().replace("add(0, 0) == 0", "add(2, 3) == 5"))  # would kill add's mutants now
    arith = checkout / "src" / "tiny" / "arith.py"
    arith.write_text(arith.read_text().replace("value * 2", "2 * value"))
    assert restore_record(checkout, record) == ["src/tiny/arith.py"]
    mutmut_run()
    second = results(checkout)
    # add is unchanged: its results stand, not run again (run, the better test would kill them).
    assert {name: status for name, status in second.items() if ".x_add_" in name} == {
        name: status for name, status in first.items() if ".x_add_" in name
    }
    # double changed: its mutants ran again, and only they.
    ran = json.loads((checkout / "mutants" / "src" / "tiny" / "arith.py.meta").read_text())["durations_by_key"]
    assert ran and all(".x_double_" in name for name in ran)

    # Mutants made and current: mutmut runs without its coverage pass, as in every second pass.
    assert mutants_made(checkout)
    survivor = next(name for name, status in second.items() if ".x_add_" in name)
    subprocess.run(
        [sys.executable, "-m", "tools.mutmut_without_coverage", "run", survivor],
        cwd=checkout,
        env={**variables, "PYTHONPATH": str(REPOSITORY)},
        check=True,
        capture_output=True,
    )
    assert results(checkout)[survivor] == "killed"  # named, so run again: the better test kills it now


def test_the_mutation_report_says_so_when_mutmut_cannot_show_a_survivor(tmp_path, monkeypatch):
    import subprocess

    from tools import mutation

    monkeypatch.setattr(
        mutation,
        "mutmut",
        lambda *arguments, **options: subprocess.CompletedProcess(arguments, 1, "", "FileNotFoundError: mutants/src"),
    )
    with pytest.raises(SystemExit, match="mutmut show tinyml_quant.files.x_a__mutmut_1 failed .* here first"):
        mutation.write_report({"tinyml_quant.files.x_a__mutmut_1": "survived"}, 0, output=tmp_path / "mutation.md")
    assert not (tmp_path / "mutation.md").exists()  # no report with an empty diff


def test_mutmut_runs_without_its_coverage_pass_only_when_every_module_has_current_mutants(tmp_path, monkeypatch):
    import os

    from tools import mutation

    (tmp_path / "pyproject.toml").write_text('[tool.mutmut]\nonly_mutate = ["src/p/a.py", "src/p/b.py"]\n')
    for name in ("a", "b"):
        (tmp_path / "src" / "p").mkdir(parents=True, exist_ok=True)
        (tmp_path / "src" / "p" / f"{name}.py").write_text("x = 1\n")
        os.utime(tmp_path / "src" / "p" / f"{name}.py", (1_000_000_000, 1_000_000_000))
    copies = tmp_path / "mutants" / "src" / "p"
    copies.mkdir(parents=True)
    (copies / "a.py").write_text("mutated = True\n")
    (copies / "a.py.meta").write_text("{}")
    assert not mutation.mutants_made(tmp_path)  # b never made
    (copies / "b.py").write_text("mutated = True\n")
    assert not mutation.mutants_made(tmp_path)  # b copied, not made (no results)
    (copies / "b.py.meta").write_text("{}")
    assert mutation.mutants_made(tmp_path)
    os.utime(copies / "b.py", (1_000_000_000, 1_000_000_000))  # as copied: the source's own time
    assert not mutation.mutants_made(tmp_path)

    commands = []
    monkeypatch.setattr(mutation, "run_until", lambda command, deadline: commands.append(command[1:3]))
    for made in (True, False):
        monkeypatch.setattr(mutation, "mutants_made", lambda made=made: made)
        mutation.mutmut_run("x")
    assert commands == [["-m", "tools.mutmut_without_coverage"], ["-m", "mutmut"]]


def test_an_equivalence_holds_only_for_the_change_it_was_judged_on(tmp_path, monkeypatch):
    from collections import Counter

    from tools import mutation

    renumbered, same, unjudged = (f"tinyml_quant.files.x_a__mutmut_{number}" for number in (1, 2, 3))
    recorded = {
        renumbered: {"change": "-    a = 1\n+    a = None\n", "reason": "a is never read"},
        same: {"change": "-    b = 1\n+    b = 2\n", "reason": "b is never read"},
    }
    changes = {renumbered: "-    c = 1\n+    c = None", same: "-    b = 1\n+    b = 2", unjudged: "-    d\n+    e"}
    assert mutation.judged_equivalent(recorded, changes) == (
        {same: "b is never read"},
        {renumbered: "-    a = 1\n+    a = None"},
    )

    equivalents = tmp_path / "mutation_equivalent.yaml"
    equivalents.write_text(yaml.safe_dump(recorded))
    monkeypatch.setattr(mutation, "EQUIVALENT", equivalents)
    monkeypatch.setattr(mutation, "shown", lambda mutant: f"--- a\n+++ b\n{changes[mutant]}\n")
    statuses = dict.fromkeys(changes, "survived")
    per_module = mutation.write_report(statuses, 0, output=tmp_path / "mutation.md")
    assert per_module["files"] == Counter(equivalent=1, survived=2)
    report = (tmp_path / "mutation.md").read_text()
    assert "judged equivalent as another change, judge again" in report
    assert "a is never read" not in report


def test_every_recorded_equivalent_mutant_has_the_change_it_was_judged_on_and_a_reason():
    from tools.mutation import EQUIVALENT

    recorded = yaml.safe_load(EQUIVALENT.read_text())
    for mutant, judgement in recorded.items():
        assert set(judgement) == {"change", "reason"}, mutant
        changed = judgement["change"].strip("\n").splitlines()
        assert changed and all(line[:1] in "-+" for line in changed), mutant
        assert judgement["reason"].strip(), mutant
