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
