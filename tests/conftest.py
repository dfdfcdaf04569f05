"""Shared fixtures: the dataset mirror, the smoke study run once per session, and the CI rule on skips."""

import os
from pathlib import Path

import pytest

from tinyml_quant.fetch import (
    MIRROR_BESIDE_WORKFLOW,
    MODEL_MIRROR_BESIDE_WORKFLOW,
    PUBLISHED_MODELS,
    dataset_mirror,
    model_mirror,
)
from tools.workflow import Workflow

from synthetic import brightest_quadrant, fitted

REPOSITORY = Path(__file__).resolve().parents[1]
SMOKE = ("--configfile", "config/smoke.yaml")
SMOKE_STUDY = "smoke"
# A smaller study of the smoke preset (with --configfile): two models and two schemes (the reference,
# a calibrated one), every kind of job at two fifths of the smoke grid's conversions, the slowest jobs.
SMOKE_SUBSET = {"datasets": ["mnist"], "models": ["custom", "resnet_v1"], "schemes": ["fp32", "int8"]}
# Where CI runs (CI=true), a test whose data or system package is missing fails instead of
# skipping: a green CI must have tested the data path, the compilers and the cluster.
IN_CI = os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def pytest_configure(config):
    """Under mutmut's stats pass, keep recording in this process but not in the children tests start.

    mutmut first runs the tests with ``MUTANT_UNDER_TEST=stats`` to record which
    test calls which function. A child process (TFLite Micro's worker, a fresh
    TensorFlow) imports the mutated package too and, with that variable, would try
    to record as well, reading mutmut's settings from its working folder, a
    temporary one: it fails, and so would the stats pass. Without the variable a
    child runs the plain code; this process keeps recording through mutmut's own
    in-process copy of the setting. Mutant runs (any other value) are left alone:
    there the child must run the mutant too.
    """
    if os.environ.get("MUTANT_UNDER_TEST") == "stats":
        from mutmut.mutation.trampoline import set_mutant_under_test

        set_mutant_under_test("stats")
        del os.environ["MUTANT_UNDER_TEST"]


@pytest.fixture(scope="session")
def trained():
    """``(model, test images, test labels, training images)``: a small CNN fitted to a learnable synthetic
    task (the class is the brightest quadrant)."""
    from tinyml_quant.architectures import build_model
    from tinyml_quant.runtime import configure_tensorflow

    configure_tensorflow(threads=2, seed=0)
    images, labels = brightest_quadrant(600)
    model = fitted(build_model("custom", (16, 16, 1), 4, base_filters=24), images[:500], labels[:500])
    return model, images[500:], labels[500:], images[:500]


@pytest.fixture(scope="session")
def flatbuffers(trained):
    """The fixture model converted with every scheme, calibrated on 50 seeded training images."""
    from tinyml_quant.conversion import calibration_images, convert
    from tinyml_quant.schemes import CONVERTER_SCHEMES

    model, _, _, train_images = trained
    representative = calibration_images(train_images, 50, seed=0)
    return {scheme: convert(model, scheme, representative) for scheme in CONVERTER_SCHEMES}


@pytest.fixture(scope="session")
def small_resnet(tmp_path_factory):
    """A small ResNet fitted to a learnable synthetic task, and its fp32, int8 and int16x8 files."""
    from tinyml_quant.architectures import build_model
    from tinyml_quant.conversion import calibration_images, convert
    from tinyml_quant.runtime import configure_tensorflow
    from tinyml_quant.variants import converting

    configure_tensorflow(threads=2, seed=0)
    images, labels = brightest_quadrant(400)
    model = build_model("resnet_v1", (16, 16, 1), 4, depth=8, base_filters=8)
    fitted(model, images[:320], labels[:320], batch_size=32)
    folder = tmp_path_factory.mktemp("resnet_variants")
    representative = calibration_images(images[:320], 64, seed=0)
    paths = {}
    for scheme in ("fp32", "int8", "int16x8"):
        paths[scheme] = folder / f"{scheme}.tflite"
        with converting(paths[scheme], "TFLite converter", {"scheme": scheme}) as made:  # the file and its record
            made["flatbuffer"] = convert(model, scheme, representative)
    return model, images[320:], labels[320:], representative, paths


def require(available, missing, how_to_enable):
    """Skip with ``how_to_enable`` when ``available`` is false; fail instead in CI."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"CI must run this test, but {missing} ({how_to_enable})")
    pytest.skip(f"{missing}: {how_to_enable}")


@pytest.fixture(scope="session")
def mirror():
    """The offline dataset mirror, found as the workflow finds it (fetch.dataset_mirror)."""
    path = Path(dataset_mirror("", REPOSITORY) or REPOSITORY.parent / MIRROR_BESIDE_WORKFLOW)
    require(
        (path / "mnist").is_dir() and (path / "cifar10-jpeg").is_dir(),
        f"no offline dataset mirror at {path}",
        "set TINYML_DATASET_MIRROR to a folder laid out like ../shared/datasets",
    )
    return path.resolve()


@pytest.fixture(scope="session")
def cifar10_sample(mirror):
    """Three test images of each CIFAR-10 class, read from the dataset mirror (the JPEG copy), as a prepared dataset."""
    import numpy as np

    from tinyml_quant.datasets import PreparedDataset
    from tinyml_quant.fetch import BUILTIN_DATASETS
    from tinyml_quant.readers import decode_image, iter_files

    cifar10 = BUILTIN_DATASETS["cifar10"]
    picked = {name: [] for name in cifar10.class_names}
    for member, content in iter_files(mirror / cifar10.mirror.mirror_folder / cifar10.mirror.files[0].name):
        split, label, _ = ([None] * 3 + member.split("/"))[-3:]
        if content is not None and split == "test" and len(picked[label]) < 3:
            picked[label].append(decode_image(content, member))
        if all(len(images) == 3 for images in picked.values()):
            break
    images = np.stack([image for name in cifar10.class_names for image in picked[name]])
    labels = np.repeat(np.arange(len(cifar10.class_names)), 3)
    provenance = {"dataset": "cifar10", "name": "cifar10 (jpeg mirror)"}
    return PreparedDataset(images, labels, images, labels, list(cifar10.class_names), provenance)


@pytest.fixture(scope="session")
def published_mirror():
    """The offline mirror of the published models, found as the workflow finds it (fetch.model_mirror)."""
    path = Path(model_mirror("", REPOSITORY) or REPOSITORY.parent / MODEL_MIRROR_BESIDE_WORKFLOW)
    require(
        all((path / model.mirror_folder).is_dir() for model in PUBLISHED_MODELS.values()),
        f"no offline model mirror at {path}",
        "set TINYML_MODEL_MIRROR to a folder laid out like ../shared/models",
    )
    return path.resolve()


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, mirror, published_mirror):
    """The smoke preset run end to end once, in a copy of the workflow; tests must not change it.

    Its grid holds MLPerf Tiny's pretrained model, read from the model mirror (the copy finds it as
    ``published_mirror`` does: ``tools.workflow.Workflow``).
    """
    workflow = Workflow.copy(tmp_path_factory.mktemp("smoke"), mirror)
    workflow.run("--cores", "2", *SMOKE)
    return workflow


@pytest.fixture
def smoke_copy(smoke_run, tmp_path):
    """A private copy of the finished smoke run, for tests that change files."""
    import shutil

    shutil.copytree(smoke_run.folder, tmp_path / "workflow", symlinks=True)
    return Workflow(tmp_path / "workflow", smoke_run.environment.get("TINYML_DATASET_MIRROR"))


# The modules whose tests use the smoke run (18 min here): `make test`'s two pytest-xdist workers
# give them all to one worker, so the study runs once (a session fixture is per worker).
SMOKE_MODULES = ("tests/test_faults.py", "tests/test_workflow.py")
SMOKE_FIXTURES = {"smoke_run", "smoke_copy"}


def module_of(nodeid):
    return nodeid.split("::", 1)[0]


def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile`` with the smoke modules as one file: each other module on one worker, as usual."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class SmokeModulesTogether(LoadFileScheduling):
        # The scope of a test (pytest-xdist 3.8's extension point, as LoadFileScheduling's own).
        def _split_scope(self, nodeid):
            module = module_of(nodeid)
            return "the smoke study's modules" if module in SMOKE_MODULES else module

    return SmokeModulesTogether(config, log)


def pytest_collection_modifyitems(config, items):
    """The smoke modules' tests first (xdist hands out modules in this order; theirs is the longest chain),
    and a test of another module that asks for the smoke run refused: it would run the study again on
    the other worker. ``TINYML_REVERSE_TESTS=1`` runs the tests in reverse order: the proof that none
    depends on another's."""
    stray = [
        item.nodeid
        for item in items
        if SMOKE_FIXTURES & set(item.fixturenames) and module_of(item.nodeid) not in SMOKE_MODULES
    ]
    if stray:
        raise pytest.UsageError(f"{stray[0]} uses the smoke run: add its module to SMOKE_MODULES in conftest.py")
    items.sort(key=lambda item: module_of(item.nodeid) not in SMOKE_MODULES)
    if os.environ.get("TINYML_REVERSE_TESTS") == "1":
        items.reverse()
