"""Stage costs from Snakemake benchmark files: small synthetic inputs, no timing."""

import math

import pandas as pd
import pytest

from tinyml_quant.costs import job_of, jobs_table, read_benchmark, run_stage_costs, stage_summary

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def write_benchmark(root, relative, seconds, rss, cpu, extra_rows=()):
    path = root / "benchmarks" / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [(seconds, rss, cpu), *extra_rows]
    path.write_text(HEADER + "".join(f"{s}\t0:00:01\t{r}\t1\t1\t1\t0\t0\t50.0\t{c}\n" for s, r, c in rows))
    return path


@pytest.fixture
def grid(tmp_path):
    """Two stages of one model on one dataset, a data job and a report job."""
    return [
        write_benchmark(tmp_path, "prepare_dataset/mnist.tsv", 2.0, 400.0, 1.5),
        write_benchmark(tmp_path, "train_model/mnist/custom/seed42.tsv", 30.0, 1200.0, 55.0),
        write_benchmark(tmp_path, "convert_model/mnist/custom/seed42/fp32.tsv", 4.0, 700.0, 3.5),
        write_benchmark(tmp_path, "convert_model/mnist/custom/seed42/int8.tsv", 6.0, 800.0, 5.0),
        write_benchmark(tmp_path, "gather_results.tsv", 1.0, "NA", 0.5),
    ]


def test_read_benchmark_averages_repeats_and_skips_unmeasured(tmp_path):
    path = write_benchmark(tmp_path, "x/a.tsv", 2.0, 100.0, 1.0, extra_rows=[(4.0, "-", 3.0)])
    record = read_benchmark(path)
    assert record["s"] == 3.0 and record["cpu_time"] == 2.0 and record["max_rss"] == 100.0
    bad = tmp_path / "bad.tsv"
    bad.write_text("s\th:m:s\n")
    with pytest.raises(ValueError, match="bad.tsv: not a Snakemake benchmark file"):
        read_benchmark(bad)


@pytest.mark.parametrize(
    "path, job",
    [
        ("w/benchmarks/fetch_dataset/mnist.tsv", ("fetch_dataset", "mnist", "", "", "")),
        ("benchmarks/train_model/cifar10/resnet_v1/seed42.tsv", ("train_model", "cifar10", "resnet_v1", "42", "")),
        ("benchmarks/import_model/grey/mine.tsv", ("import_model", "grey", "mine", "", "")),
        (
            "benchmarks/evaluate_model/mnist/custom/seed3/int8.tsv",
            ("evaluate_model", "mnist", "custom", "3", "int8"),
        ),
        (
            "results/smoke/benchmarks/estimate_npu/mnist/custom/seed42/int8/alif.tsv",
            ("estimate_npu", "mnist", "custom", "42", "int8/alif"),
        ),
        ("benchmarks/gather_results.tsv", ("gather_results", "", "", "", "")),
    ],
)
def test_job_of_reads_rule_and_wildcards_from_the_path(path, job):
    assert tuple(job_of(path).values()) == job


def test_stage_summary_sums_time_and_keeps_peak_memory(grid):
    jobs = jobs_table(grid)
    assert list(jobs.stage) == ["prepare_dataset", "train_model", "convert_model", "convert_model", "gather_results"]
    stages = stage_summary(jobs).set_index("stage")
    assert stages.loc["convert_model", "jobs"] == 2
    assert stages.loc["convert_model", "wall_s"] == 10.0 and stages.loc["convert_model", "max_job_s"] == 6.0
    assert stages.loc["convert_model", "max_rss_mb"] == 800.0 and stages.loc["convert_model", "cpu_s"] == 8.5
    assert stages.share_pct.sum() == pytest.approx(100.0)
    assert stages.loc["train_model", "share_pct"] == pytest.approx(100 * 30 / 43)
    assert math.isnan(stages.loc["gather_results", "max_rss_mb"])


def test_run_stage_costs_writes_tables_and_figures(grid, tmp_path):
    reports = tmp_path / "reports"
    figures = [reports / "figures" / "costs.png", reports / "figures" / "costs.svg"]
    run_stage_costs(grid, reports / "stage_costs.csv", reports / "stage_costs.md", {"stage_costs": figures}, 50)
    rows = pd.read_csv(reports / "stage_costs.csv", keep_default_na=False)
    convert = rows[rows.stage == "convert_model"]
    assert len(convert) == 1 and convert.jobs.item() == 2 and convert.wall_s.item() == 10.0
    markdown = (reports / "stage_costs.md").read_text()
    assert "## Per stage" in markdown and "## Per model" in markdown and "| mnist     | custom  |" in markdown
    assert figures[0].read_bytes().startswith(b"\x89PNG") and b"<svg" in figures[1].read_bytes()


def test_jobs_past_their_rules_resources_are_named_and_the_rest_pass(grid, tmp_path):
    from tinyml_quant.costs import over_budget

    # convert_model's int8 job peaked at 800 MB and 6 s; train_model at 1200 MB and 30 s.
    budgets = {"convert_model": {"mem_mb": 750, "runtime": 1}, "train_model": {"mem_mb": 4000, "runtime": 0}}
    over = over_budget(jobs_table(grid), budgets)
    named = sorted(zip(over.stage, over.variant, over.resource, over.measured, over.declared))
    assert named == [("convert_model", "int8", "mem_mb", 800.0, 750.0), ("train_model", "", "runtime", 30.0, 0.0)]
    reports = tmp_path / "reports"
    figures = {"stage_costs": [reports / "costs.png"]}
    run_stage_costs(grid, reports / "costs.csv", reports / "costs.md", figures, 50, budgets)
    markdown = (reports / "costs.md").read_text()
    assert "2 jobs went past their rule's resources" in markdown
    assert "| convert_model   | 800 / 750" in markdown
    roomy = {"convert_model": {"mem_mb": 800, "runtime": 1}, "train_model": {"mem_mb": 1200, "runtime": 1}}
    assert over_budget(jobs_table(grid), roomy).empty  # at the limit is within it
    run_stage_costs(grid, reports / "costs.csv", reports / "costs.md", figures, 50, roomy)
    assert "Every job stayed within its rule's resources." in (reports / "costs.md").read_text()


def test_the_figure_draws_more_stages_than_its_palette_has_colours(tmp_path):
    """A grid of 25 stages (tab20 has 20 colours): every stage gets a bar."""
    from tinyml_quant.costs import model_summary
    from tinyml_quant.figures import stage_costs

    paths = [write_benchmark(tmp_path, f"stage{n}/mnist/custom/seed42.tsv", 1.0 + n, 100.0, 1.0) for n in range(25)]
    jobs = jobs_table(paths)
    figure = stage_costs(stage_summary(jobs), model_summary(jobs))
    assert len(figure.axes[0].patches) == 25
