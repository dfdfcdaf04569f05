"""The workflow run from tools and tests: a copy of it in a scratch folder, Snakemake as a subprocess.

What Snakemake plans or did is read from its structured log records through
the ``joblist`` logger plugin beside this file (``snakemake_logger_plugin_joblist``),
never from the text it prints, so a Snakemake upgrade that rewords its output
breaks nothing here.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tinyml_quant.fetch import MIRROR_VARIABLE, MODEL_MIRROR_VARIABLE, model_mirror

REPOSITORY = Path(__file__).resolve().parents[1]
WORKFLOW_PARTS = ("Snakefile", "rules", "scripts", "config", "envs", "report", "profiles")
TOOLS = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Job:
    """A job as Snakemake announced it."""

    jobid: int
    rule: str
    wildcards: dict = field(hash=False)
    threads: int = 1
    input: tuple = ()
    output: tuple = ()
    log: tuple = ()
    benchmark: str = ""

    @property
    def key(self):
        """``(rule, "dataset=..., model=..., scheme=...")``: what a test compares."""
        return self.rule, ", ".join(f"{name}={value}" for name, value in sorted(self.wildcards.items()))

    @property
    def products(self):
        """What the job leaves behind: outputs, logs and its benchmark file."""
        return (*self.output, *self.log, *((self.benchmark,) if self.benchmark else ()))


def read_job_log(path):
    """``(announced jobs, ids of finished jobs)`` from a joblist plugin file (a killed run's included)."""
    announced, finished = [], set()
    for line in Path(path).read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            break  # the last line of a killed run may be cut short
        if record["event"] == "announced":
            announced.append(
                Job(
                    jobid=record["jobid"],
                    rule=record["rule_name"],
                    wildcards=dict(record["wildcards"] or {}),
                    threads=int(record["threads"] or 1),
                    input=tuple(record["input"] or ()),
                    output=tuple(record["output"] or ()),
                    log=tuple(record["log"] or ()),
                    benchmark=record["benchmark"] or "",
                )
            )
        elif record["event"] == "finished":
            finished.add(record["jobid"])
    return announced, finished


class Workflow:
    """A folder holding the workflow, where Snakemake runs with a given dataset mirror.

    A copy lies elsewhere than the checkout, so it finds the published models' mirror through
    ``TINYML_MODEL_MIRROR``: the one this checkout finds (``fetch.model_mirror``), unless
    ``model_mirror_folder`` names another.
    """

    def __init__(self, folder, mirror=None, model_mirror_folder=None):
        self.folder = Path(folder)
        self.environment = dict(os.environ)
        if mirror is not None:
            self.environment[MIRROR_VARIABLE] = str(mirror)
        models = model_mirror_folder or model_mirror("", REPOSITORY, self.environment)
        if models:
            self.environment[MODEL_MIRROR_VARIABLE] = str(models)
        # The joblist plugin is found by its module name on the path.
        self.environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TOOLS), os.environ.get("PYTHONPATH")]))

    @classmethod
    def copy(cls, destination, mirror=None, source=REPOSITORY):
        """A fresh copy of the workflow's own files (not its results) in ``destination``."""
        destination = Path(destination)
        destination.mkdir(parents=True, exist_ok=True)
        for part in WORKFLOW_PARTS:
            origin = Path(source) / part
            if origin.is_dir():
                shutil.copytree(origin, destination / part)
            elif origin.is_file():
                shutil.copy2(origin, destination / part)
        return cls(destination, mirror)

    def command(self, *arguments):
        return [sys.executable, "-m", "snakemake", *map(str, arguments)]

    def run(self, *arguments, check=True):
        """Snakemake with ``arguments``; a failure raises with its output unless ``check`` is False."""
        result = subprocess.run(
            self.command(*arguments), cwd=self.folder, env=self.environment, capture_output=True, text=True
        )
        if check and result.returncode:
            raise AssertionError(f"snakemake {' '.join(map(str, arguments))} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def run_logged(self, *arguments, check=True):
        """``(result, announced jobs, finished job ids)`` of a run with the joblist plugin."""
        with tempfile.TemporaryDirectory(prefix="joblist-") as folder:
            path = Path(folder) / "jobs.jsonl"
            result = self.run("--logger", "joblist", "--logger-joblist-path", path, *arguments, check=check)
            announced, finished = read_job_log(path)
        return result, announced, finished

    def planned_jobs(self, *arguments):
        """The jobs a run with ``arguments`` would execute (a dry run), ``all`` included."""
        _, announced, _ = self.run_logged("--dry-run", *arguments)
        return announced

    def planned(self, *arguments):
        """The planned jobs as sorted ``(rule, wildcards)`` pairs."""
        return sorted(job.key for job in self.planned_jobs(*arguments))

    def planned_outputs(self, *arguments):
        """Every output file a dry run would (re)create, relative to the folder."""
        return {path for job in self.planned_jobs(*arguments) for path in job.output}

    def start(self, *arguments, job_log):
        """Snakemake in the background (its own process group, so a test can kill all of it)."""
        command = self.command("--logger", "joblist", "--logger-joblist-path", job_log, *arguments)
        return subprocess.Popen(
            command,
            cwd=self.folder,
            env=self.environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def write_config(self, name, change):
        """A config file ``name``.yaml holding ``change``; returns its name for ``--configfile``."""
        path = self.folder / f"{name}.yaml"
        path.write_text(yaml.safe_dump(change))
        return path.name

    def study(self, name):
        """The folder of study ``name`` (results, logs, benchmarks and reports)."""
        return self.folder / "results" / name
