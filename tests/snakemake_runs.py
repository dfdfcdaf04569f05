"""Running the workflow from tests: a copy of it in a scratch folder, Snakemake as a subprocess."""

import os
import re
import shutil
import subprocess
import sys

import yaml

from conftest import REPOSITORY

WORKFLOW_PARTS = ["Snakefile", "rules", "scripts", "config", "envs", "report"]


def snakemake(workdir, *arguments, mirror=None, check=True):
    environment = dict(os.environ)
    if mirror:
        environment["TINYML_DATASET_MIRROR"] = str(mirror)
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", *arguments],
        cwd=workdir,
        env=environment,
        capture_output=True,
        text=True,
    )
    if check and result.returncode:
        raise AssertionError(f"snakemake {' '.join(arguments)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def planned_jobs(workdir, *arguments, mirror=None):
    """The jobs a dry run would execute, as (rule, wildcards) pairs."""
    result = snakemake(workdir, "--dry-run", *arguments, mirror=mirror)
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", result.stdout):
        header = re.match(r"(?:local)?rule (\w+):", block)
        if not header:
            continue
        wildcards = re.search(r"^\s+wildcards: (.*)$", block, re.MULTILINE)
        jobs.append((header.group(1), wildcards.group(1) if wildcards else ""))
    return sorted(jobs)


def copy_workflow(destination):
    destination.mkdir(parents=True, exist_ok=True)
    for part in WORKFLOW_PARTS:
        source = REPOSITORY / part
        if source.is_dir():
            shutil.copytree(source, destination / part)
        else:
            shutil.copy2(source, destination / part)
    return destination


def write_change(workdir, name, change):
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(change))
    return str(path.name)


SMOKE = ("--configfile", "config/smoke.yaml")

# Rules with one job per variant, and the report's rules (one job each).
VARIANT_RULES = ("convert_model", "evaluate_model", "analyze_graph", "measure_micro", "measure_latency")
REPORT_RULES = ("gather_results", "plot_results", "fit_table", "plot_device_fit", "stage_costs")


def planned_outputs(workdir, *arguments, mirror=None):
    """Every output file a dry run would (re)create, as paths relative to ``workdir``."""
    result = snakemake(workdir, "--dry-run", *arguments, mirror=mirror)
    outputs = set()
    for line in re.findall(r"^\s+output: (.*)$", result.stdout, re.MULTILINE):
        outputs.update(path.strip() for path in line.split(","))
    return outputs


def start_snakemake(workdir, *arguments, mirror=None, log_path):
    """A Snakemake run in the background, in its own process group so a test can kill all of it."""
    environment = dict(os.environ)
    if mirror:
        environment["TINYML_DATASET_MIRROR"] = str(mirror)
    with open(log_path, "w") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "snakemake", *arguments],
            cwd=workdir,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def file_times(workdir, folder="results"):
    """Modification time of every file below ``workdir / folder``, keyed by path relative to ``workdir``."""
    return {
        str(path.relative_to(workdir)): path.stat().st_mtime_ns
        for path in (workdir / folder).rglob("*")
        if path.is_file()
    }


def unfinished_outputs(log_text):
    """Outputs of the jobs a Snakemake log shows started but not finished."""
    started, finished = {}, set(re.findall(r"Finished jobid: (\d+)", log_text))
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", log_text):
        output = re.search(r"^\s+output: (.*)$", block, re.MULTILINE)
        jobid = re.search(r"^\s+jobid: (\d+)$", block, re.MULTILINE)
        if output and jobid:
            started[jobid.group(1)] = [path.strip() for path in output.group(1).split(",")]
    return {path for jobid, paths in started.items() if jobid not in finished for path in paths}
