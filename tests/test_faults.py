"""Every fault a clear error, nothing lost: each test provokes the real fault.

Bad configuration is covered in test_workflow.py (schema refusals) and bad
archives and dataset files in test_datasets.py; this file holds downloads,
interruption, divergence, broken variants, corrupted artefacts,
determinism and concurrent runs.
"""

import functools
import hashlib
import http.server
import json
import os
import shutil
import signal
import threading
import time

import numpy as np
import pandas as pd
import pytest
from snakemake_runs import (
    REPORT_RULES,
    SMOKE,
    VARIANT_RULES,
    copy_workflow,
    file_times,
    planned_jobs,
    planned_outputs,
    snakemake,
    start_snakemake,
    unfinished_outputs,
    write_change,
)

from tinyml_quant import datasets
from tinyml_quant.datasets import DatasetError, PreparedDataset, save_prepared
from tinyml_quant.files import atomic_path, write_text

# --------------------------------------------------------------------------- downloads


@pytest.fixture
def file_server(tmp_path):
    """A web server on the loopback address serving ``tmp_path / "served"``; yields (folder, base URL)."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def serve_as_official(monkeypatch, base_url, name, expected_content):
    """Make the online MNIST source one file at ``base_url``, expected to hold ``expected_content``."""
    source = datasets.Source(
        variant="official",
        format="idx",
        files=(datasets.SourceFile(name, hashlib.sha256(expected_content).hexdigest()),),
        urls=(base_url,),
    )
    monkeypatch.setitem(datasets.ONLINE_SOURCES, "mnist", source)


def test_download_is_verified_and_recorded(tmp_path, monkeypatch, file_server):
    folder, base_url = file_server
    (folder / "labels.bin").write_bytes(b"the real labels")
    serve_as_official(monkeypatch, base_url, "labels.bin", b"the real labels")
    manifest = datasets.fetch("mnist", tmp_path / "raw")
    assert manifest["source"] == "official download"
    assert manifest["files"]["labels.bin"]["origin"] == base_url + "labels.bin"
    assert (tmp_path / "raw" / "labels.bin").read_bytes() == b"the real labels"
    assert json.loads((tmp_path / "raw" / "manifest.json").read_text()) == manifest


def test_download_with_wrong_checksum_keeps_nothing(tmp_path, monkeypatch, file_server):
    folder, base_url = file_server
    (folder / "labels.bin").write_bytes(b"tampered labels")
    serve_as_official(monkeypatch, base_url, "labels.bin", b"the real labels")
    with pytest.raises(DatasetError, match="labels.bin: checksum mismatch for the file"):
        datasets.fetch("mnist", tmp_path / "raw")
    assert list((tmp_path / "raw").iterdir()) == []


def test_unreachable_host_names_the_file_and_the_mirror_setting(tmp_path, monkeypatch, file_server):
    _, base_url = file_server
    serve_as_official(monkeypatch, base_url, "missing.bin", b"anything")
    with pytest.raises(DatasetError, match="could not download missing.bin.*TINYML_DATASET_MIRROR"):
        datasets.fetch("mnist", tmp_path / "raw")
    assert not (tmp_path / "raw" / "manifest.json").exists()


def test_raw_file_damaged_after_fetch_leaves_no_prepared_dataset(tmp_path, mirror):
    datasets.fetch("mnist", tmp_path / "raw", mirror=str(mirror))
    labels = tmp_path / "raw" / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes()[:1000])
    with pytest.raises(DatasetError, match="t10k-labels-idx1-ubyte.gz: cannot read.*truncated"):
        datasets.prepare(tmp_path / "raw" / "manifest.json", tmp_path / "mnist.npz")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["raw"]


# --------------------------------------------------------------------------- atomic outputs


def test_failed_writer_leaves_the_old_file_and_no_temporary(tmp_path):
    destination = tmp_path / "metrics.json"
    write_text(destination, "old")
    with pytest.raises(RuntimeError, match="killed"), atomic_path(destination) as temporary:
        temporary.write_text("half a fi")
        raise RuntimeError("killed")
    assert destination.read_text() == "old"
    assert [path.name for path in tmp_path.iterdir()] == ["metrics.json"]


# --------------------------------------------------------------------------- training faults


def toy_dataset(count=256, seed=0):
    """Random 16x16 images of four classes: enough for a model to train, diverge or be compared."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count + 64, 16, 16, 1), dtype=np.uint8)
    labels = rng.integers(0, 4, count + 64)
    return PreparedDataset(
        images[:count],
        labels[:count],
        images[count:],
        labels[count:],
        ["a", "b", "c", "d"],
        {"dataset": "toy", "name": "toy (random)"},
    )


TOY_SETTINGS = {
    "seed": 3,
    "epochs": 2,
    "batch_size": 32,
    "optimizer": "adam",
    "learning_rate": 0.01,
    "lr_schedule": "cosine",
    "validation_split": 0.1,
}


def test_divergence_stops_at_once_names_the_settings_and_saves_nothing(tmp_path):
    from tinyml_quant.training import TrainingDiverged, run_training

    toy = toy_dataset()
    save_prepared(
        tmp_path / "toy.npz", toy.x_train, toy.y_train, toy.x_test, toy.y_test, toy.class_names, toy.provenance
    )
    settings = {**TOY_SETTINGS, "optimizer": "sgd", "learning_rate": 1e12, "epochs": 50}
    outputs = {name: tmp_path / "train" / name for name in ("model.keras", "history.csv", "test_metrics.json")}
    with pytest.raises(TrainingDiverged) as raised:
        run_training(
            tmp_path / "toy.npz",
            "custom",
            {"base_filters": 4},
            settings,
            {},
            1,
            outputs["model.keras"],
            outputs["history.csv"],
            outputs["test_metrics.json"],
        )
    message = str(raised.value)
    for culprit in (
        "custom",
        "toy (random)",
        "in epoch 1",
        "training.learning_rate=1000000000000.0",
        "training.optimizer=sgd",
        "training.per_model.custom",
    ):
        assert culprit in message
    assert not (tmp_path / "train").exists()


def test_same_seed_trains_the_same_model():
    from tinyml_quant.training import train

    toy = toy_dataset()
    predictions = []
    for _ in range(2):
        model, history, _ = train(toy, "custom", {"base_filters": 4}, TOY_SETTINGS, {"random_crop_padding": 2}, 1)
        predictions.append(model.predict(toy.x_test.astype("float32"), verbose=0))
    np.testing.assert_array_equal(predictions[0], predictions[1])


# --------------------------------------------------------------------------- corrupted artefacts


def test_damaged_saved_model_is_an_error_naming_it(tmp_path):
    from tinyml_quant.conversion import run_conversion

    damaged = tmp_path / "model.keras"
    damaged.write_bytes(b"PK\x03\x04 not really a zip archive")
    with pytest.raises(ValueError, match="model.keras: cannot load the trained model"):
        run_conversion(damaged, tmp_path / "unused.npz", "fp32", {}, 1, tmp_path / "fp32.tflite")
    assert not (tmp_path / "fp32.tflite").exists()


@pytest.mark.parametrize("content", [b"", b"TFL3" + bytes(60), np.random.default_rng(0).bytes(4096)])
def test_damaged_tflite_is_an_error_naming_it(tmp_path, content):
    from tinyml_quant.evaluation import run_evaluation

    toy = toy_dataset(count=8)
    save_prepared(
        tmp_path / "toy.npz", toy.x_train, toy.y_train, toy.x_test, toy.y_test, toy.class_names, toy.provenance
    )
    damaged = tmp_path / "int8.tflite"
    damaged.write_bytes(content)
    with pytest.raises(ValueError, match="int8.tflite: not a loadable TFLite model"):
        run_evaluation(damaged, tmp_path / "toy.npz", "int8", 1, 8, tmp_path / "int8.json", tmp_path / "int8.npy")
    assert not (tmp_path / "int8.json").exists()


# --------------------------------------------------------------------------- the workflow under faults


def wait_for(condition, what, timeout=900):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.mark.e2e
def test_killed_run_resumes_with_rerun_incomplete(tmp_path, mirror, smoke_run):
    workdir = copy_workflow(tmp_path / "workflow")
    subset = write_change(workdir, "subset", {"datasets": ["mnist"], "models": ["custom", "resnet_v1"]})
    # One --configfile flag with both files: a second flag would replace the first.
    arguments = (*SMOKE, subset)
    run = start_snakemake(workdir, "--cores", "2", *arguments, mirror=mirror, log_path=tmp_path / "killed.log")

    def training_or_conversion_under_way():
        running = unfinished_outputs((tmp_path / "killed.log").read_text())
        # A model whose job Snakemake has seen finish, so that something is kept.
        finished = [
            path
            for path in workdir.glob("results/train/mnist/*/test_metrics.json")
            if str(path.relative_to(workdir)) not in running
        ]
        return bool(finished) and any(path.startswith(("results/train/", "results/convert/")) for path in running)

    wait_for(training_or_conversion_under_way, "a finished model and a training or conversion job under way")
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    killed_outputs = unfinished_outputs((tmp_path / "killed.log").read_text())
    kept = file_times(workdir)

    # Atomic outputs: every file a reader can see is whole.
    for path in kept:
        if path.endswith(".json"):
            json.loads((workdir / path).read_text())
        elif path.endswith(".npy"):
            np.load(workdir / path, allow_pickle=False)

    # A plain rerun stops and names the way out: Snakemake's lock outlives a
    # killed run (--unlock), and the killed jobs' files are incomplete (--rerun-incomplete);
    # which of the two it reports first depends on the moment of the kill.
    refused = snakemake(workdir, "--cores", "2", *arguments, mirror=mirror, check=False)
    message = refused.stdout + refused.stderr
    assert refused.returncode != 0
    assert "Directory cannot be locked" in message or "--rerun-incomplete" in message, message[-2000:]
    snakemake(workdir, "--unlock", *arguments, mirror=mirror)

    rerun_outputs = planned_outputs(workdir, "--rerun-incomplete", *arguments, mirror=mirror)
    assert killed_outputs <= rerun_outputs
    finished_before = {
        path for path in kept if path not in killed_outputs and not path.rsplit("/", 1)[-1].startswith(".")
    }
    assert finished_before and not finished_before & rerun_outputs

    snakemake(workdir, "--cores", "2", "--rerun-incomplete", *arguments, mirror=mirror)
    after = file_times(workdir)
    assert {path: after[path] for path in finished_before} == {path: kept[path] for path in finished_before}
    assert planned_jobs(workdir, *arguments, mirror=mirror) == []
    assert not [path for path in after if ".partial" in path], "a killed job's temporary was left behind"

    # The resumed study equals the uninterrupted smoke run, prediction for prediction.
    for model in ("custom", "resnet_v1"):
        for scheme in ("fp32", "dynamic_range", "float16", "int8", "int16x8"):
            path = f"results/evaluate/mnist/{model}/{scheme}.predictions.npy"
            np.testing.assert_array_equal(np.load(workdir / path), np.load(smoke_run / path), err_msg=path)


@pytest.mark.e2e
def test_one_broken_variant_spares_the_others_and_a_second_run_is_locked_out(tmp_path, mirror, smoke_run):
    workdir = tmp_path / "workflow"
    shutil.copytree(smoke_run, workdir)
    broken = workdir / "results" / "convert" / "mnist" / "custom" / "int8.tflite"
    broken.write_bytes(broken.read_bytes()[:300])
    # A new evaluation batch size makes every evaluation run again, beside the broken one.
    arguments = (*SMOKE, write_change(workdir, "batch", {"evaluation": {"batch_size": 64}}))
    report_time = (workdir / "reports" / "results.csv").stat().st_mtime_ns
    started = time.time_ns()

    run = start_snakemake(
        workdir, "--cores", "2", "--keep-going", *arguments, mirror=mirror, log_path=tmp_path / "run.log"
    )
    wait_for(lambda: any((workdir / ".snakemake" / "locks").glob("*")) or run.poll() is not None, "the lock")
    second = snakemake(workdir, "--cores", "1", *arguments, mirror=mirror, check=False)
    assert run.wait() != 0
    assert second.returncode != 0
    assert "Directory cannot be locked" in second.stdout + second.stderr

    failed_log = (workdir / "logs" / "evaluate_model" / "mnist" / "custom" / "int8.log").read_text()
    assert "int8.tflite: not a loadable TFLite model" in failed_log
    evaluations = [path for path in (workdir / "results" / "evaluate").rglob("*.json")]
    assert len(evaluations) == 49
    assert all(path.stat().st_mtime_ns >= started for path in evaluations)
    assert (workdir / "reports" / "results.csv").stat().st_mtime_ns == report_time

    broken.unlink()  # the fault removed: the variant converts again
    jobs = planned_jobs(workdir, *arguments, mirror=mirror)
    variant = "dataset=mnist, model=custom, scheme=int8"
    assert jobs == sorted(
        [("all", ""), *((rule, variant) for rule in VARIANT_RULES), *((rule, "") for rule in REPORT_RULES)]
    )
    snakemake(workdir, "--cores", "2", *arguments, mirror=mirror)
    assert len(pd.read_csv(workdir / "reports" / "results.csv")) == 50
