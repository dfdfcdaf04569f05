"""The workflow as a Snakemake module of another workflow: ``module``, ``use rule * from``, a config of a few keys."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import REPOSITORY

OUTER_SNAKEFILE = f"""\
import os
from pathlib import Path

configfile: "config.yaml"


module tinyml:
    snakefile: "{REPOSITORY / "Snakefile"}"
    config: config


use rule * from tinyml


rule outer:
    default_target: True
    input:
        rules.all.input,
        "where.txt",


rule where:
    output:
        "where.txt",
    run:
        Path(output[0]).write_text(os.environ["TINYML_QUANT_WORKFLOW"])
"""
# Only what this outer study changes: the module supplies every other setting from its own defaults.
TINY_CONFIG = {
    "study": "outer",
    "datasets": ["mnist"],
    "models": ["custom"],
    "schemes": ["fp32", "int8"],
    "data": {"max_train_images": 256, "max_test_images": 64},
    "architectures": {"custom": {"base_filters": 4}},
    "training": {"per_dataset": {"mnist": {"epochs": 1, "batch_size": 32, "per_model": {"custom": {"epochs": 1}}}}},
    "conversion": {"int8": {"calibration_images": 16, "calibration_seed": 0}},
    "micro": {"agreement_images": 8},
    "diagnostics": {"layer_error_images": 4},
    "latency": {"invokes": 5, "warmup": 1},
}


@pytest.mark.e2e
def test_another_workflow_uses_this_one_as_a_module_to_the_end(tmp_path, mirror):
    (tmp_path / "Snakefile").write_text(OUTER_SNAKEFILE)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(TINY_CONFIG))
    environment = {**os.environ, "TINYML_DATASET_MIRROR": str(mirror)}
    command = [sys.executable, "-m", "snakemake", "--cores", "2"]
    run = subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    results = pd.read_csv(tmp_path / "results" / "outer" / "reports" / "results.csv")
    assert sorted(results.scheme) == ["fp32", "int8"] and (results.test_images == 64).all()
    firmware = tmp_path / "results" / "outer" / "firmware" / "mnist" / "custom" / "seed42" / "int8"
    assert (firmware / "op_resolver.h").is_file()
    # The module's defaults filled in what the outer config left out.
    assert (results.host_latency_threads == 1).all()
    # The conda post-deploy script installs the package from the folder the workflow named, which holds it,
    # wherever Snakemake runs: here with a stand-in pip that records what it is asked to install.
    named = Path((tmp_path / "where.txt").read_text())
    assert (named / "pyproject.toml").read_text().count('name = "tinyml-quant"') == 1
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "pip").write_text('#!/bin/sh\necho "$@" > "$RECORD"\n')
    (fake / "pip").chmod(0o755)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = REPOSITORY / "envs" / "tinyml.post-deploy.sh"
    record = tmp_path / "pip-arguments.txt"
    deploy_environment = {"PATH": f"{fake}:/usr/bin:/bin", "RECORD": str(record), "TINYML_QUANT_WORKFLOW": str(named)}
    subprocess.run(["bash", str(script)], cwd=elsewhere, env=deploy_environment, check=True)
    assert record.read_text().split() == ["install", "--no-deps", "--editable", str(named)]
