"""The workflow on a real SLURM cluster: one node on this machine (tests/slurm/local_slurm.sh),
Snakemake's SLURM executor plugin and profiles/slurm, compared with a local run.

What SLURM ran is read from SLURM itself (``squeue --json``; the cluster keeps
finished jobs for a day), and what Snakemake planned from its structured log
records (``tools.workflow``), never from either program's printed text.
"""

import json
import os
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from tools.workflow import Workflow

from conftest import REPOSITORY, SMOKE, SMOKE_STUDY, SMOKE_SUBSET, require

pytestmark = [pytest.mark.e2e, pytest.mark.slurm]

LOCAL_SLURM = REPOSITORY / "tests" / "slurm" / "local_slurm.sh"
CANNOT_INSTALL = 3  # local_slurm.sh's exit status when slurm-wlm/munge cannot be had here
PARTITION = os.environ.get("TINYML_SLURM_PARTITION", "debug")
MODELS = SMOKE_SUBSET["models"]
SCHEMES_RUN = SMOKE_SUBSET["schemes"]
# The rules profiles/slurm groups into one SLURM job per dataset and model, and the groups' names.
GROUP_OF_RULE = yaml.safe_load((REPOSITORY / "profiles" / "slurm" / "config.yaml").read_text())["groups"]
GROUPED_RULES = tuple(GROUP_OF_RULE)


def workflow_boards():
    return yaml.safe_load((REPOSITORY / "config" / "config.yaml").read_text())["boards"]


def local_slurm(command):
    return subprocess.run(["bash", str(LOCAL_SLURM), command], capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def slurm_cluster():
    """A one-node SLURM cluster; stopped at the end unless it was already running before."""
    was_running = local_slurm("status").returncode == 0
    started = local_slurm("start")
    require(started.returncode != CANNOT_INSTALL, "no SLURM here", started.stderr.strip() or "install slurm-wlm")
    assert started.returncode == 0, f"local_slurm.sh start failed:\n{started.stdout}\n{started.stderr}"
    yield PARTITION
    if not was_running:
        stopped = local_slurm("stop")
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr


def submitted_name(comment):
    """The rule, or for a group job the group, of the plugin's job comment.

    The plugin writes "rule_<name>" and, for single jobs, "_wildcards_..."; a
    group job's name is Snakemake's "<group>_<its first rules>_...".
    """
    name = comment.removeprefix("rule_").split("_wildcards_")[0]
    return next((group for group in set(GROUP_OF_RULE.values()) if name.startswith(f"{group}_")), name)


def slurm_jobs(since):
    """Every job SLURM knows that was submitted at or after ``since`` (epoch seconds), from ``squeue --json``."""
    queue = subprocess.run(["squeue", "--states=all", "--json"], capture_output=True, text=True, check=True).stdout
    jobs = []
    for job in json.loads(queue)["jobs"]:
        submitted = job["submit_time"]["number"] if isinstance(job["submit_time"], dict) else job["submit_time"]
        if submitted >= int(since):
            state = job["job_state"]
            jobs.append(
                {
                    "id": job["job_id"],
                    "state": state[0] if isinstance(state, list) else state,
                    "rule": submitted_name(job["comment"]),
                    "cpus": job["cpus"]["number"] if isinstance(job["cpus"], dict) else job["cpus"],
                }
            )
    return jobs


@pytest.fixture(scope="module")
def slurm_run(slurm_cluster, tmp_path_factory, mirror):
    """The smoke preset on mnist, two models and two schemes, submitted through profiles/slurm."""
    workflow = Workflow.copy(tmp_path_factory.mktemp("slurm"), mirror)
    subset = workflow.write_config("subset", SMOKE_SUBSET)
    arguments = [
        *SMOKE,
        subset,
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
    planned = workflow.planned_jobs(*SMOKE, subset)
    started = time.time() - 1
    result, announced, _ = workflow.run_logged(*arguments, check=False)
    (workflow.folder / "slurm_run.log").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, f"snakemake through SLURM failed:\n{(result.stdout + result.stderr)[-20000:]}"
    return workflow, planned, announced, slurm_jobs(started)


def test_every_job_went_through_slurm_and_completed(slurm_run):
    workflow, _, _, jobs = slurm_run
    assert jobs, "SLURM knows no job of this run"
    assert Counter(job["state"] for job in jobs) == {"COMPLETED": len(jobs)}, jobs
    # Training got its 1 thread as 1 CPU, as in the local run (the weights depend on it).
    training = [job for job in jobs if job["rule"] == "train_model"]
    assert len(training) == len(MODELS) and all(job["cpus"] == 1 for job in training)
    # The dataset mirror reached the jobs through sbatch --export=ALL (no network here).
    manifest = json.loads((workflow.study(SMOKE_STUDY) / "data" / "mnist" / "manifest.json").read_text())
    assert manifest["source"].startswith("mirror ")


def test_variant_jobs_are_grouped_one_slurm_job_per_model(slurm_run):
    _, planned, _, jobs = slurm_run
    submitted = Counter(job["rule"] for job in jobs)
    ungrouped = Counter(job.rule for job in planned)
    # Ungrouped, every variant job would be a SLURM job (per model here: 2 conversions, 4 measurements
    # of each, int8's layer error, its NPU estimate per NPU board, and the calibration sweep's 2 sizes,
    # each made and evaluated); grouped, a model's go out as one.
    npu_boards = sum(1 for board in workflow_boards() if board.get("npu"))
    per_model = 2 + 4 * len(SCHEMES_RUN) + 1 + npu_boards + 2 * 2
    assert sum(ungrouped[rule] for rule in GROUPED_RULES) == len(MODELS) * per_model
    assert submitted["variants"] == len(MODELS), jobs
    assert not set(submitted) & set(GROUPED_RULES), jobs
    # Local rules (the deployment plan, firmware text, `all`) never go to SLURM.
    assert not {"deployment_plan", "firmware_bundle", "all"} & set(submitted)


def test_slurm_results_equal_a_local_run(slurm_run, tmp_path, mirror):
    workflow, _, _, _ = slurm_run
    # The same study run here, not the whole smoke run: this module then runs beside that one
    # (make test's other pytest worker), and the local run is set up only where SLURM is.
    local_run = Workflow.copy(tmp_path, mirror)
    local_run.run("--cores", "2", *SMOKE, local_run.write_config("subset", SMOKE_SUBSET))
    for model in MODELS:
        for scheme in SCHEMES_RUN:
            path = Path("evaluate", "mnist", model, "seed42", f"{scheme}.predictions.npy")
            on_slurm = (workflow.study(SMOKE_STUDY) / path).read_bytes()
            local = (local_run.study(SMOKE_STUDY) / path).read_bytes()
            assert on_slurm == local, f"{path}: SLURM and local predictions differ"
    reports = workflow.study(SMOKE_STUDY) / "reports"
    assert len((reports / "results.csv").read_text().splitlines()) == 1 + len(MODELS) * len(SCHEMES_RUN)
