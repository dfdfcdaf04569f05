"""Where the study's time and memory go, from Snakemake's per-job benchmark files.

Every rule writes ``benchmarks/<rule>/<dataset>/<model>/<scheme>.tsv`` (fewer
levels for rules with fewer wildcards): Snakemake's record of the job's wall
seconds (``s``), peak resident memory in MB (``max_rss``), CPU seconds
(``cpu_time``) and mean CPU load in percent (``mean_load``). This module reads
them into one row per job, sums them per stage (rule) and per model, draws
where the grid's time goes, and projects the grid's wall time on more cores
from the same per-job figures (``project``): a list-scheduling simulation over
the job graph of a dry run (``parse_dry_run``).

Pure Python and pandas; matplotlib only for the figure.
"""

import heapq
import logging
import math
import re
import statistics
from pathlib import Path

from .files import atomic_path, write_text

logger = logging.getLogger(__name__)

# The workflow's stages in the order they run; other rules follow, sorted.
STAGE_ORDER = (
    "fetch_dataset", "prepare_dataset", "train_model", "convert_model", "evaluate_model",
    "analyze_graph", "measure_micro", "measure_latency",
    "gather_results", "plot_results", "fit_table", "plot_device_fit", "stage_costs",
)  # fmt: skip
WILDCARDS = ("dataset", "model", "scheme")
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
    """``benchmarks/<rule>/<dataset>/<model>/<scheme>.tsv`` as ``{"stage": rule, "dataset": ..., ...}``.

    The path is read from its last ``benchmarks`` folder; missing levels are empty.
    """
    parts = list(Path(path).with_suffix("").parts)
    if "benchmarks" in parts:
        parts = parts[len(parts) - parts[::-1].index("benchmarks") :]
    if not parts:
        raise ValueError(f"{path}: not a benchmark path")
    job = {"stage": parts[0], **{key: "" for key in WILDCARDS}}
    job.update(zip(WILDCARDS, parts[1:]))
    return job


def jobs_table(paths):
    """One row per benchmark file: stage, dataset, model, scheme, wall_s, cpu_s, max_rss_mb, mean_load."""
    import pandas as pd

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
        jobs=("wall_s", "size"), wall_s=("wall_s", "sum"), max_job_s=("wall_s", "max"),
        cpu_s=("cpu_s", "sum"), max_rss_mb=("max_rss_mb", "max"),
    ).reset_index()  # fmt: skip
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


def cost_rows(jobs):
    """The CSV: one row per stage, dataset and model (summed over schemes), with the job count."""
    grouped = jobs.groupby(["stage", "dataset", "model"], sort=False)
    return grouped.agg(
        jobs=("wall_s", "size"), wall_s=("wall_s", "sum"), cpu_s=("cpu_s", "sum"), max_rss_mb=("max_rss_mb", "max")
    ).reset_index()


def markdown(jobs):
    """Stage table, then model table, in Markdown."""
    stages = stage_summary(jobs)
    total = stages.wall_s.sum()
    shown = stages.assign(
        wall_s=stages.wall_s.map("{:.1f}".format), share_pct=stages.share_pct.map("{:.1f}".format),
        max_job_s=stages.max_job_s.map("{:.1f}".format), cpu_s=stages.cpu_s.map("{:.1f}".format),
        max_rss_mb=stages.max_rss_mb.map("{:.0f}".format),
    )  # fmt: skip
    shown.columns = ["stage (rule)", "jobs", "wall (s, sum over jobs)", "share (%)", "longest job (s)",
                     "CPU (s)", "peak memory (MB, max_rss)"]  # fmt: skip
    sections = [
        "# Where the grid's time goes\n",
        f"{len(jobs)} jobs, {total:.1f} s of job wall time in all (summed over jobs: jobs that ran side by "
        "side count each; the run's own wall time is shorter). From Snakemake's `benchmark:` files: Snakemake "
        "samples CPU and memory once a second for a job's first 30 s, then every 30 s, so jobs shorter than a "
        "second show little or no CPU time and memory.\n",
        "## Per stage\n",
        shown.to_markdown(index=False) + "\n",
    ]
    models = model_summary(jobs)
    if not models.empty:
        formatted = models.copy()
        for column in formatted.columns[2:]:
            formatted[column] = formatted[column].map(lambda value: "" if math.isnan(value) else f"{value:.1f}")
        formatted["max_rss_mb"] = models.max_rss_mb.map("{:.0f}".format)
        formatted = formatted.rename(columns={"total_s": "total (s)", "max_rss_mb": "peak memory (MB)"})
        sections += ["## Per model (wall seconds per stage, summed over schemes)\n", formatted.to_markdown(index=False) + "\n"]
    return "\n".join(sections)


def plot(jobs, figure_stem, formats=("png", "svg"), dpi=150):
    """Two panels: job seconds per stage, and per model stacked by stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = stage_summary(jobs)
    models = model_summary(jobs)
    figure, axes = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [1, 1.4]})
    colours = dict(zip(stages.stage, plt.get_cmap("tab20").colors))
    axes[0].barh(stages.stage[::-1], stages.wall_s[::-1], color=[colours[s] for s in stages.stage[::-1]])
    for y, (value, share) in enumerate(zip(stages.wall_s[::-1], stages.share_pct[::-1])):
        axes[0].annotate(f" {value:.0f} s ({share:.0f}%)", (value, y), va="center", fontsize="small")
    axes[0].set_xlabel("job wall time, summed over jobs (s)")
    axes[0].set_title("per stage")
    axes[0].margins(x=0.3)
    if not models.empty:
        labels = [f"{dataset} / {model}" for dataset, model in zip(models.dataset, models.model)]
        left = [0.0] * len(models)
        for stage in [column for column in models.columns[2:] if column not in ("total_s", "max_rss_mb")]:
            values = models[stage].fillna(0).tolist()
            axes[1].barh(labels, values, left=left, color=colours.get(stage, "grey"), label=stage)
            left = [a + b for a, b in zip(left, values)]
        axes[1].invert_yaxis()
        axes[1].set_xlabel("job wall time, summed over the model's jobs (s)")
        axes[1].set_title("per dataset and model, by stage")
        axes[1].legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0), title="stage")
    figure.suptitle("Where the grid's time goes (Snakemake benchmark files)")
    figure.tight_layout()
    for extension in formats:
        path = Path(f"{figure_stem}.{extension}")
        with atomic_path(path) as temporary:
            figure.savefig(temporary, dpi=dpi, bbox_inches="tight", format=extension)
    plt.close(figure)


def run_stage_costs(benchmark_paths, csv_path, markdown_path, figure_folder, dpi=150, formats=("png", "svg")):
    """Snakemake entry point: the stage-cost CSV and Markdown tables and the figure."""
    jobs = jobs_table(benchmark_paths)
    with atomic_path(csv_path) as temporary:
        cost_rows(jobs).to_csv(temporary, index=False, float_format="%.6g")
    write_text(markdown_path, markdown(jobs))
    Path(figure_folder).mkdir(parents=True, exist_ok=True)
    plot(jobs, Path(figure_folder) / "stage_costs", formats, dpi)
    logger.info("%d jobs, %.1f s of job wall time", len(jobs), jobs.wall_s.sum())
    return jobs


# --------------------------------------------------------------------------- the job graph and projections


def parse_dry_run(text):
    """The jobs of ``snakemake --dry-run`` output: rule, wildcards, threads, inputs and products.

    Products are the outputs, logs and benchmark file: what a job leaves
    behind. Jobs are keyed by their first product (``all`` by its rule name).
    """
    jobs = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", text):
        header = re.match(r"(?:local)?rule (\w+):", block)
        if not header:
            continue
        fields = dict(re.findall(r"^\s+(\w+): (.*)$", block, re.MULTILINE))

        def files(name):
            return [item.strip() for item in fields.get(name, "").split(",") if item.strip()]

        products = files("output") + files("log") + files("benchmark")
        job = {
            "rule": header.group(1),
            "wildcards": fields.get("wildcards", ""),
            "threads": int(fields.get("threads", 1)),
            "inputs": files("input"),
            "outputs": files("output"),
            "products": products,
            "benchmark": fields.get("benchmark", "").strip(),
        }
        jobs[products[0] if products else job["rule"]] = job
    return jobs


def job_graph(jobs):
    """``{job: [jobs it needs]}``: a job needs the jobs that produce its inputs."""
    producer = {product: key for key, job in jobs.items() for product in job["products"]}
    return {key: sorted({producer[item] for item in job["inputs"] if item in producer}) for key, job in jobs.items()}


def _bottom_levels(seconds, needs):
    """Longest path (seconds) from each job to the end of the graph, the job included."""
    dependents = {key: [] for key in needs}
    for key, required in needs.items():
        for other in required:
            dependents[other].append(key)
    levels = {}

    def level(key):
        if key not in levels:
            levels[key] = seconds[key] + max((level(other) for other in dependents[key]), default=0.0)
        return levels[key]

    for key in needs:
        level(key)
    return levels, dependents


def critical_path(seconds, needs):
    """The longest chain of jobs: ``(seconds, [job, ...])`` from the first job to the last."""
    levels, dependents = _bottom_levels(seconds, needs)
    if not levels:
        return 0.0, []
    key = max((key for key in needs if not needs[key]), key=lambda k: levels[k])
    path = [key]
    while dependents[key]:
        key = max(dependents[key], key=lambda k: levels[k])
        path.append(key)
    return levels[path[0]], path


def simulate(seconds, threads, needs, cores=None, slots=None):
    """Wall seconds of the graph under greedy list scheduling, longest remaining chain first.

    ``cores``: one machine with that many cores, a job taking ``min(threads,
    cores)`` of them (Snakemake's ``--cores``); ``slots``: at most that many
    jobs at once, each on its own cores (a cluster, ``--jobs``). Job durations
    are taken as they are: more cores do not make one job faster.
    """
    levels, dependents = _bottom_levels(seconds, needs)
    waiting = {key: len(required) for key, required in needs.items()}
    ready = [(-levels[key], key) for key, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    running, now, free = [], 0.0, cores
    while ready or running:
        skipped = []
        while ready:
            priority, key = heapq.heappop(ready)
            need = min(threads[key], cores) if cores else 0
            if (cores is None or need <= free) and (slots is None or len(running) < slots):
                heapq.heappush(running, (now + seconds[key], key, need))
                if cores:
                    free -= need
            else:
                skipped.append((priority, key))
        for item in skipped:
            heapq.heappush(ready, item)
        now, key, need = heapq.heappop(running)
        if cores:
            free += need
        for other in dependents[key]:
            waiting[other] -= 1
            if waiting[other] == 0:
                heapq.heappush(ready, (-levels[other], other))
    return now


def durations(jobs, measured, scale=None):
    """Seconds of every job: its measured figure (``{benchmark path: seconds}``) times ``scale(job)``.

    A job with no figure gets the median of its rule's measured jobs with the
    same scheme, else of its rule, else 0 (``all``). Returns ``(seconds,
    estimated)``: the job figures and the keys that were estimated.
    """
    by_rule = {}
    for key, job in jobs.items():
        if job["benchmark"] in measured:
            scheme = re.search(r"scheme=(\w+)", job["wildcards"])
            by_rule.setdefault((job["rule"], scheme.group(1) if scheme else ""), []).append(measured[job["benchmark"]])
            by_rule.setdefault((job["rule"], None), []).append(measured[job["benchmark"]])
    seconds, estimated = {}, []
    for key, job in jobs.items():
        if job["benchmark"] in measured:
            value = measured[job["benchmark"]]
        else:
            scheme = re.search(r"scheme=(\w+)", job["wildcards"])
            pool = by_rule.get((job["rule"], scheme.group(1) if scheme else "")) or by_rule.get((job["rule"], None))
            value = statistics.median(pool) if pool else 0.0
            if job["rule"] != "all":
                estimated.append(key)
        seconds[key] = value * (scale(job) if scale else 1.0)
    return seconds, estimated


def project(jobs, seconds, core_counts=(2, 16, 128), cluster_jobs=()):
    """Projected wall seconds: critical path, total job seconds, and the simulated run per core count.

    Returns ``{"critical_path_s", "critical_path", "job_seconds", "core_seconds",
    "cores": {n: s}, "cluster": {n: s}}``.
    """
    needs = job_graph(jobs)
    threads = {key: job["threads"] for key, job in jobs.items()}
    length, path = critical_path(seconds, needs)
    return {
        "critical_path_s": length,
        "critical_path": path,
        "job_seconds": sum(seconds.values()),
        "core_seconds": sum(seconds[key] * threads[key] for key in jobs),
        "cores": {n: simulate(seconds, threads, needs, cores=n) for n in core_counts},
        "cluster": {n: simulate(seconds, threads, needs, slots=n) for n in cluster_jobs},
    }
