"""Fetching a dataset: checksums, what is downloaded and what is read where it is, the offline mirror."""

import hashlib

import numpy as np
import pytest

from tinyml_quant import fetch
from tinyml_quant.datasets import DatasetError

from sources import SOURCES, image_folder_members, write_idx


def test_image_folder_fetch_verifies_the_given_checksum_and_records_it(tmp_path):
    source = SOURCES["tar"](tmp_path, image_folder_members())
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    manifest = fetch.fetch_image_folder("parts", str(source), tmp_path / "m" / "manifest.json", sha256=digest)
    assert manifest["variant"] == "image folder" and manifest["files"]["a.tar.gz"]["sha256"] == digest
    with pytest.raises(DatasetError, match=r"checksum mismatch.*\(image_folders.parts.sha256\)"):
        fetch.fetch_image_folder("parts", str(source), tmp_path / "n" / "manifest.json", sha256="0" * 64)
    assert not (tmp_path / "n").exists()


def test_a_folders_digest_covers_every_files_path_and_content(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    (tmp_path / "train" / "a" / "0.png").write_bytes(b"zero")
    (tmp_path / "b.png").write_bytes(b"bee")
    expected = hashlib.sha256()
    for name, content in (("b.png", b"bee"), ("train/a/0.png", b"zero")):  # in name order
        expected.update(name.encode() + b"\0" + hashlib.sha256(content).hexdigest().encode())
    assert fetch.folder_digest(tmp_path) == expected.hexdigest()


@pytest.mark.parametrize(
    ("source", "remote"),
    [
        ("https://example.org/a.zip", True),
        ("ftp://example.org/a.zip", True),
        ("http://h/a.tgz", True),
        ("file:///data/a.zip", False),
        ("/data/a.zip", False),
        ("a.zip", False),
    ],
)
def test_what_is_downloaded_and_what_is_read_where_it_is(source, remote):
    assert fetch.is_url(source) is remote


def test_a_bad_mirror_file_leaves_no_manifest(tmp_path, mirror):
    fake = tmp_path / "mirror" / "mnist"
    fake.mkdir(parents=True)
    for source in fetch.BUILTIN_DATASETS["mnist"].mirror.files:
        (fake / source.name).symlink_to(mirror / "mnist" / source.name)
    (fake / "t10k-labels-idx1-ubyte.gz").unlink()
    write_idx(fake / "t10k-labels-idx1-ubyte.gz", np.zeros(10000))
    with pytest.raises(DatasetError, match="t10k-labels-idx1-ubyte.gz: checksum mismatch"):
        fetch.fetch_builtin("mnist", tmp_path / "raw" / "manifest.json", mirror=str(tmp_path / "mirror"))
    assert not (tmp_path / "raw" / "manifest.json").exists()


def test_the_mirror_is_the_variable_then_the_setting_then_the_folder_beside_the_workflow(tmp_path):
    from tinyml_quant.fetch import dataset_mirror

    workflow = tmp_path / "checkout"
    workflow.mkdir()
    assert dataset_mirror("", workflow, {}) == ""  # nothing anywhere: download the official files
    (tmp_path / "shared" / "datasets" / "mnist").mkdir(parents=True)
    assert dataset_mirror("", workflow, {}) == str(tmp_path / "shared" / "datasets")
    assert dataset_mirror("/configured", workflow, {}) == "/configured"
    assert dataset_mirror("/configured", workflow, {"TINYML_DATASET_MIRROR": "/variable"}) == "/variable"
    # Set but empty (or blank) counts as unset.
    assert dataset_mirror("/configured", workflow, {"TINYML_DATASET_MIRROR": "  "}) == "/configured"
    assert dataset_mirror("", workflow, {"TINYML_DATASET_MIRROR": ""}) == str(tmp_path / "shared" / "datasets")


def test_a_published_models_files_are_read_from_the_mirror_and_each_checked(tmp_path, published_mirror):
    model = fetch.PUBLISHED_MODELS["mlperf_tiny_resnet8"]
    manifest = fetch.fetch_published_model("mlperf_tiny_resnet8", tmp_path / "m.json", mirror=str(published_mirror))
    assert set(manifest["files"]) == {source.name for source in model.files}
    for source in model.files:
        record = manifest["files"][source.name]
        assert record["verified"] and record["sha256"] == source.sha256
        assert hashlib.sha256((published_mirror / model.mirror_folder / source.name).read_bytes()).hexdigest() == (
            source.sha256
        )
    assert fetch.published_path(manifest, model.keras_file) == published_mirror / model.mirror_folder / model.keras_file


def test_a_published_models_file_that_is_not_the_pinned_one_is_refused_by_name(tmp_path, published_mirror):
    model = fetch.PUBLISHED_MODELS["mlperf_tiny_resnet8"]
    fake = tmp_path / "mirror" / model.mirror_folder
    fake.mkdir(parents=True)
    for source in model.files:
        (fake / source.name).symlink_to(published_mirror / model.mirror_folder / source.name)
    # Another int8 file of the same size: MLPerf's own fp32 file truncated.
    (fake / model.int8_file).unlink()
    (fake / model.int8_file).write_bytes(
        (published_mirror / model.mirror_folder / model.fp32_file).read_bytes()[:98496]
    )
    with pytest.raises(
        DatasetError, match=rf"{model.int8_file}: checksum mismatch for the file: sha256 [0-9a-f]{{64}}, "
    ):
        fetch.fetch_published_model("mlperf_tiny_resnet8", tmp_path / "m.json", mirror=str(tmp_path / "mirror"))
    assert not (tmp_path / "m.json").exists()
    # A file changed after the fetch is refused where it is read.
    manifest = fetch.fetch_published_model("mlperf_tiny_resnet8", tmp_path / "n.json", mirror=str(published_mirror))
    manifest["files"][model.keras_file]["path"] = str(fake / model.int8_file)
    with pytest.raises(DatasetError, match=rf"{model.int8_file}: checksum mismatch: .* \(changed since fetch\)"):
        fetch.published_path(manifest, model.keras_file)


def test_the_model_mirror_is_the_variable_then_the_setting_then_the_folder_beside_the_workflow(tmp_path):
    workflow = tmp_path / "checkout"
    workflow.mkdir()
    assert fetch.model_mirror("", workflow, {}) == ""  # nothing anywhere: download from the pinned commits
    (tmp_path / "shared" / "models").mkdir(parents=True)
    assert fetch.model_mirror("", workflow, {}) == ""  # a folder without any published model's files
    (tmp_path / "shared" / "models" / fetch.PUBLISHED_MODELS["mlperf_tiny_resnet8"].mirror_folder).mkdir()
    assert fetch.model_mirror("", workflow, {}) == str(tmp_path / "shared" / "models")
    assert fetch.model_mirror("/configured", workflow, {}) == "/configured"
    assert fetch.model_mirror("/configured", workflow, {"TINYML_MODEL_MIRROR": "/variable"}) == "/variable"
    assert fetch.model_mirror("/configured", workflow, {"TINYML_MODEL_MIRROR": " "}) == "/configured"
    # The dataset mirror's variable is not the model mirror's.
    assert fetch.model_mirror("", workflow, {"TINYML_DATASET_MIRROR": "/d"}) == str(tmp_path / "shared" / "models")
