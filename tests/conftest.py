import os
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]


def dataset_mirror():
    """The offline mirror: $TINYML_DATASET_MIRROR, else ../shared/datasets beside the checkout."""
    configured = os.environ.get("TINYML_DATASET_MIRROR")
    return Path(configured) if configured else REPOSITORY.parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def mirror():
    path = dataset_mirror()
    if not (path / "mnist").is_dir():
        pytest.skip(f"no offline dataset mirror at {path}; set TINYML_DATASET_MIRROR")
    return path.resolve()


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, mirror):
    """The smoke preset run end to end once, in a copy of the workflow."""
    from snakemake_runs import SMOKE, copy_workflow, snakemake

    workdir = copy_workflow(tmp_path_factory.mktemp("smoke"))
    snakemake(workdir, "--cores", "2", *SMOKE, mirror=mirror)
    return workdir
