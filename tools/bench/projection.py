"""The grid's wall time on more cores, simulated from a run's per-job times over the workflow's job graph.

The jobs, their threads, inputs and products come from a dry run through the
joblist logger plugin (``tools.workflow``); each job's seconds from the
Snakemake benchmark file a real run wrote for it (``tinyml_quant.costs``).
Assumptions: a job takes as long as it took there whatever the core count
(rules fix their threads: more cores run more jobs at once, never one job
faster); jobs start greedily, longest remaining chain first, each taking
``min(threads, cores)`` cores (``--cores N``) or its own cluster node with at
most N at once (``--jobs N``); no queueing, start-up or memory effects.
"""

import heapq
import statistics


def job_graph(jobs):
    """``{jobid: [jobids it needs]}``: a job needs the jobs that produce its inputs."""
    producer = {product: job.jobid for job in jobs for product in job.products}
    return {job.jobid: sorted({producer[item] for item in job.input if item in producer}) for job in jobs}


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
    """The longest chain of jobs: ``(seconds, [jobid, ...])`` from the first job to the last."""
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
    """Wall seconds of the graph under greedy list scheduling, longest remaining chain first."""
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
    same scheme, else of its rule, else 0 (``all``). Returns ``(seconds, estimated jobids)``.
    """
    by_rule = {}
    for job in jobs:
        if job.benchmark in measured:
            scheme = job.wildcards.get("scheme", "")
            by_rule.setdefault((job.rule, scheme), []).append(measured[job.benchmark])
            by_rule.setdefault((job.rule, None), []).append(measured[job.benchmark])
    seconds, estimated = {}, []
    for job in jobs:
        if job.benchmark in measured:
            value = measured[job.benchmark]
        else:
            pool = by_rule.get((job.rule, job.wildcards.get("scheme", ""))) or by_rule.get((job.rule, None))
            value = statistics.median(pool) if pool else 0.0
            if job.rule != "all":
                estimated.append(job.jobid)
        seconds[job.jobid] = value * (scale(job) if scale else 1.0)
    return seconds, estimated


def project(jobs, seconds, core_counts=(2, 16, 128), cluster_jobs=()):
    """Critical path, job and core seconds, and the simulated run per core count and cluster size."""
    needs = job_graph(jobs)
    threads = {job.jobid: job.threads for job in jobs}
    length, path = critical_path(seconds, needs)
    return {
        "critical_path_s": length,
        "critical_path": path,
        "job_seconds": sum(seconds.values()),
        "core_seconds": sum(seconds[job.jobid] * job.threads for job in jobs),
        "cores": {n: simulate(seconds, threads, needs, cores=n) for n in core_counts},
        "cluster": {n: simulate(seconds, threads, needs, slots=n) for n in cluster_jobs},
    }
