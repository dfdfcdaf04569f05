"""Where the study's time and memory go, from Snakemake's per-job benchmark files.

Every rule writes ``benchmarks/<rule>/<dataset>/<model>/seed<seed>/<scheme>.tsv``
(fewer levels for rules with fewer wildcards, one more for the NPU's board): Snakemake's record of the job's wall
seconds (``s``), peak resident memory in MB (``max_rss``), CPU seconds
(``cpu_time``) and mean CPU load in percent (``mean_load``). This module reads
them into one row per job, sums them per stage (rule) and per model, and
draws where the grid's time goes.
"""

import logging
import math
from pathlib import Path

import pandas as pd

from .figures import COST_FIGURES, save
from .files import write_csv, write_text

logger = logging.getLogger(__name__)

# The workflow's stages in the order they run; other rules follow, sorted.
STAGE_ORDER = (
    *("fetch_dataset", "prepare_dataset", "fetch_published_model", "train_model", "import_model", "convert_model"),
    *("quantize_model", "bin_weights", "compress_model", "calibrate_int8", "evaluate_model", "evaluate_calibration"),
    "evaluate_published_int8",
    *("analyze_graph", "measure_micro", "measure_latency", "estimate_npu", "layer_error", "recover_quantized"),
    "firmware_bundle",
)
# ``variant``: the rest of the path after the seed: a scheme, a scheme and an NPU board, a calibration size.
WILDCARDS = ("dataset", "model", "seed", "variant")
SEED_PREFIX = "seed"
# Snakemake's benchmark columns read here, and what the job table calls them.
COLUMNS = {"s": "wall_s", "cpu_time": "cpu_s", "max_rss": "max_rss_mb", "mean_load": "mean_load"}


def _number(text):
    try:
        return float(text)
    except ValueError:  # "NA" or "-": Snakemake could not measure it
        return math.nan


def read_benchmark(path):
    """One benchmark file as ``{column: value}``; several rows (``repeat()``) are averaged."""
    lines = [line.split("\t") for line in Path(path).read_text().splitlines() if line.strip()]
    if len(lines) < 2:
        raise ValueError(f"{path}: not a Snakemake benchmark file (no data row)")
    header, rows = lines[0], lines[1:]
    if "s" not in header:
        raise ValueError(f"{path}: not a Snakemake benchmark file (no 's' column in {header})")
    record = {}
    for index, name in enumerate(header):
        if name in ("h:m:s",):
            continue
        values = [_number(row[index]) for row in rows if index < len(row)]
        finite = [value for value in values if not math.isnan(value)]
        record[name] = sum(finite) / len(finite) if finite else math.nan
    return record


def job_of(path):
    """``.../benchmarks/<rule>/<dataset>/<model>/seed<seed>/<scheme>.tsv`` as ``{"stage": rule, "dataset": ...}``.

    The path is read from its last ``benchmarks`` folder; missing levels are
    empty; what follows the seed is the ``variant`` (``int8``, ``int8/<board>``).
    """
    parts = list(Path(path).with_suffix("").parts)
    if "benchmarks" in parts:
        parts = parts[len(parts) - parts[::-1].index("benchmarks") :]
    if not parts:
        raise ValueError(f"{path}: not a benchmark path")
    job = {"stage": parts[0], **dict.fromkeys(WILDCARDS, "")}
    job.update(zip(("dataset", "model"), parts[1:3]))
    rest = parts[3:]
    if rest and rest[0].startswith(SEED_PREFIX):
        job["seed"], rest = rest[0].removeprefix(SEED_PREFIX), rest[1:]
    job["variant"] = "/".join(rest)
    return job


def jobs_table(paths):
    """One row per benchmark file: stage, dataset, model, seed, variant, wall_s, cpu_s, max_rss_mb, mean_load."""
    rows = []
    for path in paths:
        record = read_benchmark(path)
        rows.append({**job_of(path), **{name: record.get(column, math.nan) for column, name in COLUMNS.items()}})
    table = pd.DataFrame(rows, columns=["stage", *WILDCARDS, *COLUMNS.values()])
    order = {stage: index for index, stage in enumerate(STAGE_ORDER)}
    table["order"] = [order.get(stage, len(order)) for stage in table.stage]
    return table.sort_values(["order", "stage", *WILDCARDS]).drop(columns="order").reset_index(drop=True)


def stage_summary(jobs):
    """Per stage: jobs, total and largest wall seconds, share of all job time, CPU seconds, peak memory."""
    grouped = jobs.groupby("stage", sort=False)
    summary = grouped.agg(
        jobs=("wall_s", "size"),
        wall_s=("wall_s", "sum"),
        max_job_s=("wall_s", "max"),
        cpu_s=("cpu_s", "sum"),
        max_rss_mb=("max_rss_mb", "max"),
    ).reset_index()
    total = summary.wall_s.sum()
    summary["share_pct"] = 100 * summary.wall_s / total if total else 0.0
    return summary[["stage", "jobs", "wall_s", "share_pct", "max_job_s", "cpu_s", "max_rss_mb"]]


def model_summary(jobs):
    """Per dataset and model: wall seconds of each per-model stage, their total, and the peak memory."""
    per_model = jobs[jobs.model != ""]
    if per_model.empty:
        return per_model
    wall = per_model.pivot_table(index=["dataset", "model"], columns="stage", values="wall_s", aggfunc="sum")
    stages = [stage for stage in STAGE_ORDER if stage in wall.columns]
    wall = wall[stages + sorted(set(wall.columns) - set(stages))]
    wall["total_s"] = wall.sum(axis=1)
    wall["max_rss_mb"] = per_model.groupby(["dataset", "model"]).max_rss_mb.max()
    return wall.reset_index()


def over_budget(jobs, budgets):
    """The jobs whose peak memory or wall time went past their rule's ``mem_mb`` or ``runtime`` (minutes).

    ``budgets``: ``{rule: {"mem_mb": MB, "runtime": minutes}}``, what the
    rules declare (a cluster gives a job no more). Rules without a figure, and
    jobs Snakemake could not measure, are not judged.
    """
    rows = []
    for job in jobs.itertuples(index=False):
        budget = budgets.get(job.stage, {})
        limits = (("max_rss_mb", "mem_mb", 1.0), ("wall_s", "runtime", 60.0))
        for measured, declared, per_unit in limits:
            value, limit = getattr(job, measured), budget.get(declared)
            if limit is not None and not math.isnan(value) and value > limit * per_unit:
                rows.append({**job._asdict(), "resource": declared, "measured": value, "declared": limit * per_unit})
    return pd.DataFrame(rows, columns=[*jobs.columns, "resource", "measured", "declared"])


def budget_section(jobs, budgets):
    """Markdown: each stage's declared resources beside its peaks, and every job that went past them."""
    stages = stage_summary(jobs)
    rows = [
        [
            row.stage,
            f"{row.max_rss_mb:.0f} / {budgets.get(row.stage, {}).get('mem_mb', '-')}",
            f"{row.max_job_s:.0f} / {60 * budgets[row.stage]['runtime']:.0f}"
            if "runtime" in budgets.get(row.stage, {})
            else f"{row.max_job_s:.0f} / -",
        ]
        for row in stages.itertuples(index=False)
    ]
    table = pd.DataFrame(rows, columns=["stage (rule)", "peak MB / mem_mb", "longest job s / runtime (s)"])
    over = over_budget(jobs, budgets)
    verdict = (
        "Every job stayed within its rule's resources."
        if over.empty
        else f"{len(over)} jobs went past their rule's resources:\n\n"
        + over[["stage", "dataset", "model", "seed", "variant", "resource", "measured", "declared"]].to_markdown(
            index=False
        )
    )
    return (
        "## Against the rules' resources\n\n"
        "Each rule's `resources` (rules/*.smk: what a cluster reserves, and the peaks they must cover) beside "
        "the largest measured job of its stage.\n\n" + table.to_markdown(index=False, disable_numparse=True) + "\n\n"
        f"{verdict}\n"
    )


def cost_rows(jobs):
    """The CSV: one row per stage, dataset and model (summed over seeds and schemes), with the job count."""
    grouped = jobs.groupby(["stage", "dataset", "model"], sort=False)
    return grouped.agg(
        jobs=("wall_s", "size"), wall_s=("wall_s", "sum"), cpu_s=("cpu_s", "sum"), max_rss_mb=("max_rss_mb", "max")
    ).reset_index()


def markdown(jobs, budgets=None):
    """Stage table, then model table, then the jobs against their rules' resources, in Markdown."""
    stages = stage_summary(jobs)
    total = stages.wall_s.sum()
    shown = stages.assign(
        wall_s=stages.wall_s.map("{:.1f}".format),
        share_pct=stages.share_pct.map("{:.1f}".format),
        max_job_s=stages.max_job_s.map("{:.1f}".format),
        cpu_s=stages.cpu_s.map("{:.1f}".format),
        max_rss_mb=stages.max_rss_mb.map("{:.0f}".format),
    )
    shown.columns = [
        "stage (rule)",
        "jobs",
        "wall (s, sum over jobs)",
        "share (%)",
        "longest job (s)",
        "CPU (s)",
        "peak memory (MB, max_rss)",
    ]
    sections = [
        "# Where the grid's time goes\n",
        f"{len(jobs)} jobs, {total:.1f} s of job wall time in all (summed over jobs: jobs that ran side by "
        "side count each; the run's own wall time is shorter). From Snakemake's `benchmark:` files: Snakemake "
        "samples CPU and memory once a second for a job's first 30 s, then every 30 s, so jobs shorter than a "
        "second show little or no CPU time and memory.\n",
        "## Per stage\n",
        shown.to_markdown(index=False, disable_numparse=True) + "\n",
    ]
    models = model_summary(jobs)
    if not models.empty:
        formatted = models.copy()
        for column in formatted.columns[2:]:
            formatted[column] = formatted[column].map(lambda value: "" if math.isnan(value) else f"{value:.1f}")
        formatted["max_rss_mb"] = models.max_rss_mb.map("{:.0f}".format)
        formatted = formatted.rename(columns={"total_s": "total (s)", "max_rss_mb": "peak memory (MB)"})
        sections += [
            "## Per model (wall seconds per stage, summed over seeds and schemes)\n",
            formatted.to_markdown(index=False, disable_numparse=True) + "\n",
        ]
    if budgets is not None:
        sections.append(budget_section(jobs, budgets))
    return "\n".join(sections)


def run_stage_costs(benchmark_paths, csv_path, markdown_path, figure_paths, dpi=150, budgets=None):
    """Snakemake entry point: the stage-cost CSV and Markdown tables, and ``COST_FIGURES`` (``{name: [paths]}``).

    ``budgets``: the rules' declared resources (``over_budget``); the log
    warns of every job past them.
    """
    jobs = jobs_table(benchmark_paths)
    write_csv(csv_path, cost_rows(jobs))
    write_text(markdown_path, markdown(jobs, budgets))
    if budgets is not None:
        for job in over_budget(jobs, budgets).itertuples(index=False):
            logger.warning(
                "%s %s/%s/%s/%s: %s %.0f past the rule's %.0f",
                *(job.stage, job.dataset, job.model, job.seed, job.variant, job.resource, job.measured, job.declared),
            )
    for name, draw in COST_FIGURES.items():
        save(draw(stage_summary(jobs), model_summary(jobs)), figure_paths[name], dpi)
    logger.info("%d jobs, %.1f s of job wall time", len(jobs), jobs.wall_s.sum())
    return jobs
