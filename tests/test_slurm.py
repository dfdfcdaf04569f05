"""The workflow on a real SLURM cluster: one node on this machine (tests/slurm/local_slurm.sh),
Snakemake's SLURM executor plugin and profiles/slurm, compared with a local run."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import REPOSITORY
from snakemake_runs import SMOKE, VARIANT_RULES, copy_workflow, planned_jobs, write_change

pytestmark = [pytest.mark.e2e, pytest.mark.slurm]

LOCAL_SLURM = REPOSITORY / "tests" / "slurm" / "local_slurm.sh"
CANNOT_INSTALL = 3  # local_slurm.sh's exit status when slurm-wlm/munge cannot be had here
SLURM_DIR = Path(os.environ.get("TINYML_SLURM_DIR", "/tmp/tinyml-slurm"))
PARTITION = os.environ.get("TINYML_SLURM_PARTITION", "debug")
MODELS = ["resnet_v1", "resnet_v2", "mobilenet_v1", "mobilenet_v2", "custom"]
SCHEMES = ["fp32", "dynamic_range", "float16", "int8", "int16x8"]
# "Job <snakemake id> has been submitted with SLURM jobid <id> (log: .../slurm_logs/<rule_x or group_y>/...)"
SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+) \(log: \S*/slurm_logs/(rule_\w+|group_\w+)/")


def local_slurm(command):
    return subprocess.run(["bash", str(LOCAL_SLURM), command], capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def slurm_cluster():
    """A one-node SLURM cluster; stopped at the end unless it was already running before."""
    was_running = local_slurm("status").returncode == 0
    started = local_slurm("start")
    if started.returncode == CANNOT_INSTALL:
        pytest.skip(f"no SLURM here and it cannot be installed: {started.stderr.strip()}")
    assert started.returncode == 0, f"local_slurm.sh start failed:\n{started.stdout}\n{started.stderr}"
    yield PARTITION
    if not was_running:
        stopped = local_slurm("stop")
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr


@pytest.fixture(scope="module")
def slurm_run(slurm_cluster, tmp_path_factory, mirror):
    """The smoke preset on mnist, every model and scheme, submitted through profiles/slurm."""
    workdir = copy_workflow(tmp_path_factory.mktemp("slurm"))
    shutil.copytree(REPOSITORY / "profiles", workdir / "profiles")
    mnist_only = write_change(workdir, "mnist_only", {"datasets": ["mnist"]})
    arguments = [
        *SMOKE,
        mnist_only,
        "--profile",
        "profiles/slurm",
        # This cluster: its partition and no account (it has no accounting), two jobs at a time
        # (the node has 2 CPUs); squeue for the status polls, as there is no slurmdbd for sacct.
        "--default-resources",
        f"slurm_partition={slurm_cluster}",
        "--jobs",
        "2",
        "--slurm-status-command",
        "squeue",
        "--slurm-init-seconds-before-status-checks",
        "5",
    ]
    # The jobs a local run would have, one per rule and wildcards, to compare the submissions with.
    planned = planned_jobs(workdir, *SMOKE, mnist_only, mirror=mirror)
    environment = {**os.environ, "TINYML_DATASET_MIRROR": str(mirror)}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", *arguments],
        cwd=workdir,
        env=environment,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    wall_seconds = time.monotonic() - started
    log = result.stdout + result.stderr
    (workdir / "slurm_run.log").write_text(log)
    assert result.returncode == 0, f"snakemake through SLURM failed:\n{log[-20000:]}"
    print(f"\nSLURM run: {wall_seconds:.0f} s wall time, log {workdir / 'slurm_run.log'}")
    return workdir, log, planned


def submissions(log):
    """(SLURM job id, rule or group) of every job Snakemake submitted, from its log."""
    found = []
    for slurm_id, folder in SUBMITTED.findall(log):
        name = folder.removeprefix("rule_") if folder.startswith("rule_") else "group " + folder.split("_")[1]
        found.append((slurm_id, name))
    return found


def test_every_job_went_through_slurm(slurm_run):
    workdir, log, _ = slurm_run
    submitted = submissions(log)
    assert submitted, "no 'submitted with SLURM jobid' line in Snakemake's log"
    slurm_ids = [slurm_id for slurm_id, _ in submitted]
    assert len(set(slurm_ids)) == len(slurm_ids)
    # SLURM itself knows every one of them as completed: the jobcomp/filetxt record of
    # the controller (there is no accounting database, so no sacct) ...
    completed = dict(re.findall(r"JobId=(\d+) .*?JobState=(\w+)", (SLURM_DIR / "log" / "jobcomp.log").read_text()))
    assert {slurm_id: completed.get(slurm_id) for slurm_id in slurm_ids} == dict.fromkeys(slurm_ids, "COMPLETED")
    # ... and squeue, which keeps finished jobs for MinJobAge (a day here): the state, the
    # comment the plugin sets (rule and wildcards) and the CPUs each job had.
    queue = subprocess.run(
        ["squeue", "--states=all", "--noheader", "--format=%i|%T|%k|%C"], capture_output=True, text=True, check=True
    ).stdout
    jobs = {line.split("|")[0]: line.split("|")[1:] for line in queue.splitlines()}
    for slurm_id in slurm_ids:
        assert jobs[slurm_id][0] == "COMPLETED", jobs[slurm_id]
    # Training got its 2 threads as 2 CPUs, as in the local run (the weights depend on it).
    training = [
        fields
        for slurm_id, fields in jobs.items()
        if slurm_id in slurm_ids and fields[1].startswith("rule_train_model")
    ]
    assert len(training) == 5 and all(cpus == "2" for _, _, cpus in training), training
    # The dataset mirror reached the jobs through sbatch --export=ALL (no network here).
    manifest = json.loads((workdir / "data" / "raw" / "mnist" / "manifest.json").read_text())
    assert manifest["source"].startswith("mirror ")


def test_variant_jobs_are_grouped_one_slurm_job_per_model(slurm_run):
    _, log, planned = slurm_run
    submitted = Counter(name for _, name in submissions(log))
    # Ungrouped, every job but the local `all` would be a SLURM job (136 for this preset:
    # fetch, prepare, 5 trainings, 125 variant jobs, the report rules). Grouped, a model's
    # 25 variant jobs go out as one SLURM job: 5 instead of 125.
    ungrouped = Counter(rule for rule, _ in planned if rule != "all")
    assert sum(ungrouped[rule] for rule in VARIANT_RULES) == 125
    expected = {rule: n for rule, n in ungrouped.items() if rule not in VARIANT_RULES} | {"group variants": 5}
    assert submitted == expected, f"{sum(submitted.values())} SLURM jobs, ungrouped {sum(ungrouped.values())}"


def test_slurm_results_equal_a_local_run(slurm_run, request):
    workdir, _, _ = slurm_run
    # Asked for only now: a session fixture named in the signature would be set up first,
    # and run the local smoke preset even where there is no SLURM and the test skips.
    smoke_run = request.getfixturevalue("smoke_run")
    for model in MODELS:
        for scheme in SCHEMES:
            path = Path("results", "evaluate", "mnist", model, f"{scheme}.predictions.npy")
            on_slurm, local = (workdir / path).read_bytes(), (smoke_run / path).read_bytes()
            assert on_slurm == local, f"{path}: SLURM and local predictions differ"
            assert np.load(workdir / path, allow_pickle=False).size > 0
    for report in ("results.csv", "fit_table.csv", "results.md"):
        assert (workdir / "reports" / report).stat().st_size > 0
