"""Every fault a clear error, nothing lost: each test provokes the real fault.

Bad configuration is covered in test_config.py and test_workflow.py, bad
archives and dataset files in test_datasets.py, divergence and determinism in
test_training.py; this file holds downloads, atomic outputs, corrupted
artefacts, interruption, broken variants and concurrent runs.
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
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tinyml_quant import datasets, fetch, files
from tinyml_quant.config import load_yaml
from tinyml_quant.fetch import BuiltinDataset, DatasetError, Source, SourceFile
from tinyml_quant.files import atomic_path, write_text
from tools.workflow import Workflow, read_job_log

from conftest import SMOKE, SMOKE_STUDY, SMOKE_SUBSET
from synthetic import write_variant

VARIANT_RULES = ("evaluate_model", "analyze_graph", "measure_micro", "measure_latency")
SCHEMES = load_yaml(Path(__file__).resolve().parents[1] / "config" / "config.yaml")["schemes"]
# The smoke study's variants: its 6 built-in models and MLPerf Tiny's pretrained model on CIFAR-10, the
# built-in models its dataset_models names on MNIST, one seed, every scheme.
SMOKE_MNIST_MODELS = load_yaml(Path(__file__).resolve().parents[1] / "config" / "smoke.yaml")["dataset_models"]["mnist"]
SMOKE_VARIANTS = (6 + 1 + len(SMOKE_MNIST_MODELS)) * len(SCHEMES)

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


def serve_as_official(monkeypatch, base_url, name, expected_content, checksum_of_content=False):
    """Make the online MNIST source one file at ``base_url``, expected to hold ``expected_content``."""
    official = Source(
        variant="official",
        format="idx",
        files=(SourceFile(name, hashlib.sha256(expected_content).hexdigest(), checksum_of_content),),
        urls=(base_url,),
    )
    mnist = fetch.BUILTIN_DATASETS["mnist"]
    monkeypatch.setitem(
        fetch.BUILTIN_DATASETS,
        "mnist",
        BuiltinDataset(mnist.class_names, official, mnist.mirror, mnist.train_images, mnist.test_images),
    )


def test_download_is_verified_and_recorded(tmp_path, monkeypatch, file_server):
    folder, base_url = file_server
    (folder / "labels.bin").write_bytes(b"the real labels")
    serve_as_official(monkeypatch, base_url, "labels.bin", b"the real labels")
    manifest = fetch.fetch_builtin("mnist", tmp_path / "m" / "manifest.json", download_folder=tmp_path / "cache")
    assert manifest["source"] == "official download"
    assert manifest["files"]["labels.bin"]["origin"] == base_url + "labels.bin"
    assert manifest["files"]["labels.bin"]["checksum_of"] == "file"
    assert (tmp_path / "cache" / "mnist" / "labels.bin").read_bytes() == b"the real labels"
    assert json.loads((tmp_path / "m" / "manifest.json").read_text()) == manifest
    # A second fetch (another study) verifies the cached file and downloads nothing.
    (folder / "labels.bin").unlink()
    again = fetch.fetch_builtin("mnist", tmp_path / "n" / "manifest.json", download_folder=tmp_path / "cache")
    assert again["files"]["labels.bin"]["origin"].startswith("cached download")


def test_a_cached_download_checked_on_its_content_is_not_fetched_again(tmp_path, monkeypatch, file_server):
    import gzip

    folder, base_url = file_server
    (folder / "labels.gz").write_bytes(gzip.compress(b"the real labels"))
    serve_as_official(monkeypatch, base_url, "labels.gz", b"the real labels", checksum_of_content=True)
    monkeypatch.chdir(tmp_path)  # the default download folder, data/downloads, is relative to where the workflow runs
    first = fetch.fetch_builtin("mnist", tmp_path / "m.json")
    assert first["files"]["labels.gz"]["checksum_of"] == "decompressed content"
    assert (tmp_path / "data" / "downloads" / "mnist" / "labels.gz").is_file()
    (folder / "labels.gz").unlink()
    again = fetch.fetch_builtin("mnist", tmp_path / "n.json")
    assert again["files"]["labels.gz"]["origin"].startswith("cached download")
    (folder / "labels.gz").write_bytes(gzip.compress(b"other labels"))
    (tmp_path / "data" / "downloads" / "mnist" / "labels.gz").write_bytes(gzip.compress(b"stale labels"))
    with pytest.raises(DatasetError, match="labels.gz: checksum mismatch for the decompressed content"):
        fetch.fetch_builtin("mnist", tmp_path / "o.json")
    assert not (tmp_path / "data" / "downloads" / "mnist" / "labels.gz").exists()


def test_download_with_wrong_checksum_keeps_nothing(tmp_path, monkeypatch, file_server):
    folder, base_url = file_server
    (folder / "labels.bin").write_bytes(b"tampered labels")
    serve_as_official(monkeypatch, base_url, "labels.bin", b"the real labels")
    with pytest.raises(DatasetError, match="labels.bin: checksum mismatch for the file"):
        fetch.fetch_builtin("mnist", tmp_path / "m" / "manifest.json", download_folder=tmp_path / "cache")
    assert not (tmp_path / "cache" / "mnist" / "labels.bin").exists() and not (tmp_path / "m").exists()


def test_unreachable_host_names_the_file_and_the_mirror_setting(tmp_path, monkeypatch, file_server):
    _, base_url = file_server
    serve_as_official(monkeypatch, base_url, "missing.bin", b"anything")
    with pytest.raises(DatasetError, match="could not download missing.bin.*TINYML_DATASET_MIRROR"):
        fetch.fetch_builtin("mnist", tmp_path / "m" / "manifest.json", download_folder=tmp_path / "cache")
    assert not (tmp_path / "m").exists()


def serve_as_published(monkeypatch, base_url, name, expected_content):
    """A published model of one file ``name`` at ``base_url``, pinned to ``expected_content``."""
    model = fetch.PublishedModel(
        description="a published model",
        origin="owner/name commit 0000000, models",
        files=(SourceFile(name, hashlib.sha256(expected_content).hexdigest()),),
        urls=(base_url,),
        mirror_folder="published",
        keras_file=name,
    )
    monkeypatch.setitem(fetch.PUBLISHED_MODELS, "published", model)


def test_a_published_model_is_downloaded_from_its_pinned_url_and_a_wrong_file_is_refused_by_name(
    tmp_path, monkeypatch, file_server
):
    folder, base_url = file_server
    (folder / "model.h5").write_bytes(b"the published weights")
    serve_as_published(monkeypatch, base_url, "model.h5", b"the published weights")
    cache = tmp_path / "cache"
    manifest = fetch.fetch_published_model("published", tmp_path / "m.json", download_folder=cache)
    cached = cache / fetch.MODEL_DOWNLOADS / "published" / "model.h5"
    assert manifest["files"]["model.h5"]["origin"] == base_url + "model.h5" and cached.is_file()
    assert fetch.published_path(manifest, "model.h5") == cached.resolve()
    # Another study reads the cached file, checked again, and downloads nothing.
    (folder / "model.h5").unlink()
    again = fetch.fetch_published_model("published", tmp_path / "n.json", download_folder=cache)
    assert again["files"]["model.h5"]["origin"].startswith("cached download")
    # Not the pinned file: refused, named, and the download deleted; no manifest.
    cached.unlink()
    (folder / "model.h5").write_bytes(b"other weights")
    with pytest.raises(DatasetError, match=r"model.h5: checksum mismatch for the file: sha256 [0-9a-f]{64}, expected"):
        fetch.fetch_published_model("published", tmp_path / "o.json", download_folder=cache)
    assert not cached.exists() and not (tmp_path / "o.json").exists()


def test_an_unreachable_published_model_names_the_model_mirror_setting(tmp_path, monkeypatch, file_server):
    _, base_url = file_server
    serve_as_published(monkeypatch, base_url, "missing.h5", b"anything")
    with pytest.raises(DatasetError, match="could not download missing.h5.*data.model_mirror or TINYML_MODEL_MIRROR"):
        fetch.fetch_published_model("published", tmp_path / "m.json", download_folder=tmp_path / "cache")
    assert not (tmp_path / "m.json").exists()


def test_an_image_folder_url_is_downloaded_verified_and_marked_unverified_without_a_checksum(tmp_path, file_server):
    from sources import SOURCES, image_folder_members

    folder, base_url = file_server
    archive = SOURCES["zip"](folder, image_folder_members())
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    cache = tmp_path / "cache"
    cached = cache / "parts" / "a.zip"
    unverified = fetch.fetch_image_folder("parts", base_url + "a.zip", tmp_path / "u.json", download_folder=cache)
    assert unverified["variant"] == "image folder, unverified download"
    assert unverified["sha256_given"] is False and unverified["files"]["a.zip"]["verified"] is False
    verified = fetch.fetch_image_folder("parts", base_url + "a.zip", tmp_path / "v.json", digest, cache)
    assert verified == {
        "dataset": "parts",
        "source": base_url + "a.zip",
        "variant": "image folder",
        "format": "image_folder",
        "files": {
            "a.zip": {
                "path": str(cached.resolve()),
                "sha256": digest,
                "checksum_of": "file",
                "verified": True,
                "origin": base_url + "a.zip",
            }
        },
        "sha256_given": True,
    }
    assert json.loads((tmp_path / "v.json").read_text()) == verified
    with pytest.raises(DatasetError, match="checksum mismatch.*image_folders.parts.sha256"):
        fetch.fetch_image_folder("parts", base_url + "a.zip", tmp_path / "w.json", "0" * 64, cache)
    assert not cached.exists(), "the archive that does not match is not kept"
    # With its checksum given, a cached archive that matches is used again: nothing is downloaded.
    fetch.fetch_image_folder("parts", base_url + "a.zip", tmp_path / "v.json", digest, cache)
    archive.unlink()
    assert fetch.fetch_image_folder("parts", base_url + "a.zip", tmp_path / "x.json", digest, cache) == verified


def test_the_download_folder_defaults_to_data_downloads(tmp_path, monkeypatch, file_server):
    from sources import SOURCES, image_folder_members

    folder, base_url = file_server
    SOURCES["zip"](folder, image_folder_members())
    monkeypatch.chdir(tmp_path)
    fetch.fetch_image_folder("parts", base_url + "a.zip", tmp_path / "u.json")
    assert (tmp_path / "data" / "downloads" / "parts" / "a.zip").is_file()


def test_a_url_without_a_file_name_is_refused_as_no_archive(tmp_path, file_server):
    _, base_url = file_server
    with pytest.raises(DatasetError, match=r"parts/archive: not a \.tar\.gz, \.tgz or \.zip archive"):
        fetch.fetch_image_folder("parts", base_url, tmp_path / "u.json", download_folder=tmp_path)


def test_every_failed_url_is_named(tmp_path, file_server):
    _, base_url = file_server
    with pytest.raises(DatasetError) as refused:
        fetch.download([base_url + "first.bin", base_url + "second.bin"], tmp_path / "out" / "x.bin")
    assert str(refused.value) == (
        f"could not download x.bin: {base_url}first.bin: HTTP Error 404: File not found; "
        f"{base_url}second.bin: HTTP Error 404: File not found "
        "(offline? set data.mirror or TINYML_DATASET_MIRROR to a local mirror)"
    )
    assert not list((tmp_path / "out").iterdir()), "no partial file is left"


def test_a_server_that_never_answers_is_an_error_not_a_hang(tmp_path, monkeypatch):
    import socket

    monkeypatch.setattr(fetch, "DOWNLOAD_TIMEOUT_S", 0.5)
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/x.bin"
        started = time.monotonic()
        with pytest.raises(DatasetError, match="could not download x.bin: .*timed out"):
            fetch.download([url], tmp_path / "x.bin")
    assert time.monotonic() - started < 10


def test_raw_file_damaged_after_fetch_leaves_no_prepared_dataset(tmp_path, mirror):
    fake = tmp_path / "mirror" / "mnist"
    shutil.copytree(mirror / "mnist", fake)
    fetch.fetch_builtin("mnist", tmp_path / "manifest.json", mirror=str(tmp_path / "mirror"))
    labels = fake / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes()[:1000])
    with pytest.raises(DatasetError, match="t10k-labels-idx1-ubyte.gz: cannot read.*truncated"):
        datasets.prepare(tmp_path / "manifest.json", tmp_path / "mnist.npz")
    assert not (tmp_path / "mnist.npz").exists()


# --------------------------------------------------------------------------- atomic outputs


def test_failed_writer_leaves_the_old_file_and_no_temporary(tmp_path):
    destination = tmp_path / "metrics.json"
    write_text(destination, "old")
    with pytest.raises(RuntimeError, match="killed"), atomic_path(destination) as temporary:
        temporary.write_text("half a fi")
        raise RuntimeError("killed")
    assert destination.read_text() == "old"
    assert [path.name for path in tmp_path.iterdir()] == ["metrics.json"]


def test_tables_are_written_without_the_index_to_six_significant_digits(tmp_path):
    files.write_csv(tmp_path / "t.csv", pd.DataFrame({"model": ["a", "b"], "accuracy": [1 / 3, 1e-7]}))
    assert (tmp_path / "t.csv").read_text() == "model,accuracy\na,0.333333\nb,1e-07\n"


def test_json_is_written_sorted_indented_and_ended(tmp_path):
    files.write_json(tmp_path / "r.json", {"b": 1, "a": [2]})
    assert (tmp_path / "r.json").read_text() == '{\n  "a": [\n    2\n  ],\n  "b": 1\n}\n'
    assert files.read_json(tmp_path / "r.json") == {"a": [2], "b": 1}


def test_copies_go_to_their_own_destinations_or_none_at_all(tmp_path):
    (tmp_path / "x").write_text("ex")
    (tmp_path / "y").write_text("why")
    files.copy_files([tmp_path / "x", tmp_path / "y"], [tmp_path / "out" / "1", tmp_path / "out" / "2"])
    assert [(tmp_path / "out" / name).read_text() for name in ("1", "2")] == ["ex", "why"]
    with pytest.raises(ValueError, match="^2 files to copy to 1 destinations$"):
        files.copy_files([tmp_path / "x", tmp_path / "y"], [tmp_path / "out" / "3"])
    assert not (tmp_path / "out" / "3").exists()


def refuse_renames(monkeypatch):
    """Every atomic rename fails from now on, as a full disk or a kill between write and rename would leave it."""

    def refuse(source, destination):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", refuse)


@pytest.fixture
def failing_rename(monkeypatch):
    refuse_renames(monkeypatch)


def test_a_conversion_that_cannot_finish_leaves_no_tflite_file(tmp_path, failing_rename):
    import keras

    from tinyml_quant.architectures import build_model
    from tinyml_quant.conversion import run_conversion

    model = build_model("custom", (16, 16, 1), 4, base_filters=4)
    model.save(tmp_path / "model.keras")
    assert keras.models.load_model(tmp_path / "model.keras") is not None
    with pytest.raises(OSError, match="No space left"):
        run_conversion(tmp_path / "model.keras", tmp_path / "unused.npz", "fp32", {}, 1, tmp_path / "fp32.tflite")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model.keras"]


def test_an_evaluation_that_cannot_finish_leaves_no_record(tmp_path, monkeypatch):
    from tinyml_quant.architectures import build_model
    from tinyml_quant.conversion import convert
    from tinyml_quant.evaluation import run_evaluation

    from test_training import toy_dataset

    toy = toy_dataset(count=8)
    np.savez(
        tmp_path / "toy.npz",
        x_train=toy.x_train,
        y_train=toy.y_train,
        x_test=toy.x_test,
        y_test=toy.y_test,
        class_names=np.asarray(toy.class_names),
        provenance=np.asarray(json.dumps(toy.provenance)),
    )
    write_variant(tmp_path / "fp32.tflite", convert(build_model("custom", (16, 16, 1), 4, base_filters=4), "fp32"))
    variant = {"dataset": "toy", "model": "custom", "scheme": "fp32"}
    refuse_renames(monkeypatch)
    with pytest.raises(OSError, match="No space left"):
        run_evaluation(
            tmp_path / "fp32.tflite", tmp_path / "toy.npz", variant, 1, 8, tmp_path / "e.json", tmp_path / "p.npy", None
        )
    assert sorted(path.name for path in tmp_path.iterdir()) == ["fp32.json", "fp32.tflite", "toy.npz"]


# --------------------------------------------------------------------------- corrupted artefacts


def test_damaged_saved_model_is_an_error_naming_it(tmp_path):
    from tinyml_quant.conversion import run_conversion

    damaged = tmp_path / "model.keras"
    damaged.write_bytes(b"PK\x03\x04 not really a zip archive")
    with pytest.raises(ValueError, match="model.keras: cannot load the trained model") as raised:
        run_conversion(damaged, tmp_path / "unused.npz", "fp32", {}, 1, tmp_path / "fp32.tflite")
    cause = raised.value.__cause__
    assert f"({type(cause).__name__}: {cause})" in str(raised.value)  # Keras's own reason, by its type
    assert not (tmp_path / "fp32.tflite").exists()


@pytest.mark.parametrize("content", [b"", b"TFL3" + bytes(60), np.random.default_rng(0).bytes(4096)])
def test_damaged_tflite_is_an_error_naming_it(tmp_path, content):
    from tinyml_quant.datasets import save_prepared
    from tinyml_quant.evaluation import run_evaluation

    from test_training import toy_dataset

    toy = toy_dataset(count=8)
    save_prepared(
        tmp_path / "toy.npz", toy.x_train, toy.y_train, toy.x_test, toy.y_test, toy.class_names, toy.provenance
    )
    damaged = write_variant(tmp_path / "int8.tflite", content)  # damaged after its conversion
    variant = {"dataset": "toy", "model": "custom", "scheme": "int8"}
    metrics = tmp_path / "metrics.json"
    with pytest.raises(ValueError, match="int8.tflite: not a loadable TFLite model"):
        run_evaluation(damaged, tmp_path / "toy.npz", variant, 1, 8, metrics, tmp_path / "p.npy", None)
    assert not metrics.exists()


# --------------------------------------------------------------------------- the workflow under faults


def wait_for(condition, what, timeout=900):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def file_times(folder):
    """Modification time of every file below ``folder``, keyed by its path."""
    return {str(path): path.stat().st_mtime_ns for path in folder.rglob("*") if path.is_file()}


@pytest.mark.e2e
def test_killed_run_resumes_with_rerun_incomplete(tmp_path, mirror, smoke_run):
    workflow = Workflow.copy(tmp_path / "workflow", mirror)
    # A conversion or training is under way when the run is killed; the resumed run takes about a minute.
    subset = workflow.write_config("subset", SMOKE_SUBSET)
    # One --configfile flag with both files: a second flag would replace the first.
    arguments = (*SMOKE, subset)
    job_log = tmp_path / "jobs.jsonl"
    run = workflow.start("--cores", "2", *arguments, job_log=job_log)

    def running_jobs():
        announced, finished = read_job_log(job_log) if job_log.exists() else ([], set())
        return [job for job in announced if job.jobid not in finished], [j for j in announced if j.jobid in finished]

    def training_or_conversion_under_way():
        running, done = running_jobs()
        return any(job.rule == "train_model" for job in done) and any(
            job.rule in ("train_model", "convert_model") for job in running
        )

    wait_for(training_or_conversion_under_way, "a finished model and a training or conversion job under way")
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    running, _ = running_jobs()
    killed_outputs = {path for job in running for path in job.output}
    killed_products = {path for job in running for path in job.products}
    study = workflow.study(SMOKE_STUDY)
    kept = file_times(study)

    def relative(path):
        return str(Path(path).relative_to(workflow.folder))

    # Atomic outputs: every file a reader can see is whole.
    for path in kept:
        if path.endswith(".json"):
            json.loads(Path(path).read_text())
        elif path.endswith(".npy"):
            np.load(path, allow_pickle=False)

    # A plain rerun stops and names the way out: a killed Snakemake leaves its lock (--unlock);
    # the killed jobs' files are then redone (profiles/default sets --rerun-incomplete).
    refused = workflow.run("--cores", "2", *arguments, check=False)
    message = refused.stdout + refused.stderr
    assert refused.returncode != 0
    assert "Directory cannot be locked" in message or "--rerun-incomplete" in message, message[-2000:]
    workflow.run("--unlock", *arguments)

    rerun_outputs = workflow.planned_outputs(*arguments)
    assert killed_outputs <= rerun_outputs
    finished_before = {
        path for path in kept if relative(path) not in killed_products and not Path(path).name.startswith(".")
    }
    assert finished_before and not {relative(path) for path in finished_before} & rerun_outputs

    workflow.run("--cores", "2", *arguments)
    after = file_times(study)
    assert {path: after[path] for path in finished_before} == {path: kept[path] for path in finished_before}
    assert workflow.planned(*arguments) == []
    assert not [path for path in after if ".partial" in path], "a killed job's temporary was left behind"

    # The resumed study equals the uninterrupted smoke run, prediction for prediction.
    for model in SMOKE_SUBSET["models"]:
        for scheme in SMOKE_SUBSET["schemes"]:
            relative = f"evaluate/mnist/{model}/seed42/{scheme}.predictions.npy"
            np.testing.assert_array_equal(
                np.load(study / relative), np.load(smoke_run.study(SMOKE_STUDY) / relative), err_msg=relative
            )


@pytest.mark.e2e
def test_one_broken_variant_spares_the_others_and_a_second_run_is_locked_out(smoke_copy, tmp_path):
    workflow = smoke_copy
    study = workflow.study(SMOKE_STUDY)
    instance = study / "evaluate" / "mnist" / "custom" / "seed42"
    broken = study / "convert" / "mnist" / "custom" / "seed42" / "int8.tflite"
    broken.write_bytes(broken.read_bytes()[:300])
    # Every evaluation of the broken variant's model runs again beside it (forced by file): jobs that
    # must complete although one fails, and a run long enough to meet the second one at its lock.
    evaluations = sorted(instance.glob("*.json"))
    forced = ("--forcerun", *(path.relative_to(workflow.folder).as_posix() for path in evaluations))
    report_time = (study / "reports" / "results.csv").stat().st_mtime_ns
    started = time.time_ns()

    run = workflow.start("--cores", "2", "--keep-going", *SMOKE, *forced, job_log=tmp_path / "jobs.jsonl")
    wait_for(lambda: any((workflow.folder / ".snakemake" / "locks").glob("*")) or run.poll() is not None, "the lock")
    # Snakemake reads the study's files while building its DAG, before it checks the lock: under load the
    # running study can rewrite one of them under it, a refusal for another reason. Tried again then.
    refusals = []
    while run.poll() is None and len(refusals) < 5:
        second = workflow.run("--cores", "1", *SMOKE, *forced, check=False)
        assert second.returncode != 0
        refusals.append(second.stdout + second.stderr)
        if "Directory cannot be locked" in refusals[-1]:
            break
    assert run.wait() != 0
    assert any("Directory cannot be locked" in refusal for refusal in refusals), refusals[-1:]

    failed_log = (study / "logs" / "evaluate_model" / "mnist" / "custom" / "seed42" / "int8.log").read_text()
    assert "int8.tflite: not a loadable TFLite model" in failed_log
    after = set(instance.glob("*.json"))
    rewritten = {path for path in after if path.stat().st_mtime_ns >= started}
    # All but the broken int8 variant, the LUT variant binned from it and the LUT QAT variant, whose
    # fine-tuning waits for the LUT variant's evaluation; their earlier evaluations are kept, not
    # deleted (only the failed jobs' own outputs are).
    assert len(evaluations) == len(SCHEMES) and len(rewritten) == len(evaluations) - 3
    assert sorted(path.relative_to(study).as_posix() for path in after - rewritten) == [
        "evaluate/mnist/custom/seed42/int8_lut.json",
        "evaluate/mnist/custom/seed42/int8_lut_qat.json",
    ]
    assert (study / "reports" / "results.csv").stat().st_mtime_ns == report_time

    broken.unlink()  # the fault removed: the variant converts again
    jobs = workflow.planned(*SMOKE)
    variant = "dataset=mnist, model=custom, scheme=int8, seed=42"  # a job key: wildcards by name
    expected_rules = {"convert_model", *VARIANT_RULES, "layer_error"}
    assert {rule for rule, wildcards in jobs if wildcards == variant} == expected_rules
    instance_key = {"dataset=mnist", "model=custom", "seed=42"}
    assert all(instance_key <= set(wildcards.split(", ")) for _, wildcards in jobs if "model=" in wildcards)
    workflow.run("--cores", "2", *SMOKE)
    assert len(pd.read_csv(study / "reports" / "results.csv")) == SMOKE_VARIANTS


# --------------------------------------------------------------------------- a model no scheme converts (e2e)


def unconvertible_model(path, input_shape, classes):
    """A fixed-batch Keras model no scheme converts: erfinv has no TFLite builtin operator."""
    import keras

    inputs = keras.Input(input_shape, batch_size=1)
    spread = keras.ops.erfinv(keras.layers.Rescaling(1 / 256)(inputs))
    outputs = keras.layers.Dense(classes, activation="softmax")(keras.layers.Flatten()(spread))
    keras.Model(inputs, outputs).save(path)
    return path


@pytest.mark.e2e
def test_a_model_no_scheme_converts_spares_every_report_and_the_other_models_firmware(tmp_path):
    """Its variants are marked with the converter's reason; every table, figure and the other model's firmware
    are made. A study whose schemes make no integer variant (fp32 alone) finishes too."""
    import io
    import tarfile

    from tinyml_quant.figures import (
        COST_FIGURES,
        DEVICE_FIGURES,
        DIAGNOSTIC_FIGURES,
        RESULT_FIGURES,
        TRADEOFF_FIGURE_PREFIX,
        TRAINING_FIGURES,
    )

    from synthetic import image_files

    workflow = Workflow.copy(tmp_path / "workflow")
    source = tmp_path / "grey.tar.gz"
    with tarfile.open(source, "w:gz") as archive:
        for name, content in image_files(("train", "test"), 30, 16, False, "PNG"):
            info = tarfile.TarInfo(f"grey/{name}")
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    unconvertible_model(tmp_path / "lost.keras", (16, 16, 1), 3)
    config = {
        "study": "one_lost",
        "datasets": ["grey"],
        "models": ["custom", "lost"],
        "schemes": ["fp32", "int8", "int8_lut"],
        "image_folders": {"grey": {"source": str(source)}},
        "trained_models": {"lost": {"file": str(tmp_path / "lost.keras"), "dataset": "grey"}},
        "architectures": {"custom": {"base_filters": 8}},
        "training": {"epochs": 2, "batch_size": 16, "optimizer": "adam", "learning_rate": 0.01, "per_dataset": {}},
        "conversion": {"int8": {"calibration_images": 16, "calibration_seed": 0}, "calibration_sweep": [4]},
        "micro": {"agreement_images": 10},
        "diagnostics": {"layer_error_images": 4},
        "latency": {"invokes": 5, "warmup": 1},
    }
    workflow.run("--cores", "2", "--configfile", workflow.write_config("one_lost", config))
    reports = workflow.study("one_lost") / "reports"
    results = pd.read_csv(reports / "results.csv")
    lost, kept = results[results.model == "lost"], results[results.model == "custom"]
    # custom's int8_lut may find no tensor worth compressing at this width: that is its own verdict.
    assert len(lost) == len(kept) == 3 and (kept[kept.scheme != "int8_lut"].status == "converted").all()
    assert (lost.status == "not converted").all() and lost.reason.str.contains("Erfinv").all()
    assert "not converted" in (reports / "results.md").read_text()
    assert set(pd.read_csv(reports / "fit_table.csv").model) == {"custom", "lost"}
    figures = [*RESULT_FIGURES, *DEVICE_FIGURES, f"{TRADEOFF_FIGURE_PREFIX}grey", *TRAINING_FIGURES]
    figures += [*DIAGNOSTIC_FIGURES, *COST_FIGURES]
    assert all((reports / "figures" / f"{name}.png").stat().st_size > 1000 for name in figures)
    firmware = workflow.study("one_lost") / "firmware" / "grey"
    assert (firmware / "custom" / "seed42" / "int8" / "op_resolver.h").is_file()
    assert not (firmware / "lost").exists()
    assert workflow.planned("--configfile", "one_lost.yaml") == []  # nothing left to do

    fp32_only = {**config, "study": "fp32_only", "models": ["custom"], "schemes": ["fp32"], "trained_models": {}}
    fp32_only["conversion"] = {"calibration_sweep": []}  # the sweep makes int8 variants
    workflow.run("--cores", "2", "--configfile", workflow.write_config("fp32_only", fp32_only))
    reports = workflow.study("fp32_only") / "reports"
    assert pd.read_csv(reports / "results.csv").scheme.tolist() == ["fp32"]
    assert (reports / "figures" / "layer_error.png").stat().st_size > 1000
