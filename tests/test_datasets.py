"""Preparing a fetched dataset into one .npz, loading it back, and seeded subsets."""

import hashlib
import json

import numpy as np
import pytest

from tinyml_quant import datasets, fetch
from tinyml_quant.datasets import DatasetError

from sources import SOURCES, LeavesAMark, cifar10_members, image_bytes, image_folder_members, write_idx, write_tar


def fetched_folder(tmp_path, members):
    source = SOURCES["folder"](tmp_path, members)
    fetch.fetch_image_folder("parts", str(source), tmp_path / "manifest.json")
    return tmp_path / "manifest.json"


def test_prepare_passes_the_image_folder_settings_to_the_reader(tmp_path):
    manifest = fetched_folder(tmp_path, image_folder_members(size=(6, 4)))
    settings = {"class_names": ["dog", "cat"], "channels": 1, "image_size": [3, 5]}
    datasets.prepare(manifest, tmp_path / "parts.npz", image_folder=settings)
    prepared = datasets.load_prepared(tmp_path / "parts.npz")
    assert prepared.class_names == ["dog", "cat"] and prepared.x_train.shape == (4, 3, 5, 1)
    assert prepared.y_train.tolist() == [1, 1, 0, 0]  # cat's images first, read in folder order


def carved_pairs(count, test_count, seed):
    """(class, index) of the images a carved test split holds: seeded, independent of the code under test."""
    in_read_order = [(name, index) for name in ("cat", "dog") for index in range(count // 2)]
    chosen = np.sort(np.random.default_rng(seed).permutation(count)[:test_count])
    return sorted(in_read_order[position] for position in chosen)


def pairs_of(images, labels, class_names):
    # image_folder_members colours image i with red = i * 40 % 256, unique for i < 7
    red_to_index = {index * 40 % 256: index for index in range(7)}
    return sorted((class_names[label], red_to_index[int(image[0, 0, 0])]) for image, label in zip(images, labels))


def test_a_carved_test_split_defaults_to_20_percent_with_seed_0(tmp_path):
    manifest = fetched_folder(tmp_path, image_folder_members(per_class=7, splits=("train",)))
    provenance = datasets.prepare(manifest, tmp_path / "parts.npz")
    prepared = datasets.load_prepared(tmp_path / "parts.npz")
    assert provenance["name"] == "parts (image folder, test carved from train (20%, seed 0))"
    assert pairs_of(prepared.x_test, prepared.y_test, prepared.class_names) == carved_pairs(14, 3, 0)
    assert len(prepared.y_train) == 11


def test_a_tiny_test_fraction_still_carves_one_image(tmp_path):
    manifest = fetched_folder(tmp_path, image_folder_members(per_class=7, splits=("train",)))
    datasets.prepare(manifest, tmp_path / "parts.npz", image_folder={"test_fraction": 0.01, "split_seed": 5})
    prepared = datasets.load_prepared(tmp_path / "parts.npz")
    assert pairs_of(prepared.x_test, prepared.y_test, prepared.class_names) == carved_pairs(14, 1, 5)


def test_a_subset_defaults_to_seed_0_and_the_test_subset_takes_the_next_seed(tmp_path):
    manifest = fetched_folder(tmp_path, image_folder_members(per_class=7))
    provenance = datasets.prepare(manifest, tmp_path / "parts.npz", max_train_images=5, max_test_images=3)
    prepared = datasets.load_prepared(tmp_path / "parts.npz")
    assert provenance["subset_seed"] == 0
    assert pairs_of(prepared.x_train, prepared.y_train, prepared.class_names) == carved_pairs(14, 5, 0)
    assert pairs_of(prepared.x_test, prepared.y_test, prepared.class_names) == carved_pairs(14, 3, 1)


@pytest.mark.parametrize("limit", ["max_train_images", "max_test_images"])
def test_a_subset_of_one_split_records_its_seed(tmp_path, limit):
    # The provenance must say which images were drawn whenever either split was drawn from.
    manifest = fetched_folder(tmp_path, image_folder_members(per_class=7))
    provenance = datasets.prepare(manifest, tmp_path / "parts.npz", subset_seed=3, **{limit: 4})
    assert provenance["subset_seed"] == 3


def test_a_split_that_is_not_nhwc_images_is_refused():
    with pytest.raises(DatasetError, match="^here: images are uint8 \\(2, 28, 3\\), expected uint8 NHWC"):
        datasets.check_split(np.zeros((2, 28, 3), np.uint8), np.zeros(2, np.int64), 10, "here")


def handmade_manifest(tmp_path, dataset, format, files):
    """A manifest as fetch writes it, for files made here (checksums of the files themselves)."""
    records = {
        path.name: {
            "path": str(path),
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "checksum_of": "file",
            "verified": True,
            "origin": str(path),
        }
        for path in files
    }
    manifest = {"dataset": dataset, "source": "test", "variant": "handmade", "format": format, "files": records}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    return tmp_path / "manifest.json"


def test_prepare_reads_the_cifar10_binary_format(tmp_path):
    write_tar(tmp_path / "c.tar.gz", cifar10_members())
    manifest = handmade_manifest(tmp_path, "cifar10", "cifar_binary", [tmp_path / "c.tar.gz"])
    provenance = datasets.prepare(manifest, tmp_path / "c.npz")
    assert provenance == {
        "dataset": "cifar10",
        "name": "cifar10 (handmade)",
        "source": "test",
        "variant": "handmade",
        "files": json.loads(manifest.read_text())["files"],
        "train_images": 5,
        "test_images": 1,
        "subset_seed": None,
        "image_shape": [32, 32, 3],
    }


def test_idx_files_that_are_not_images_and_labels_are_refused(tmp_path):
    names = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz")
    arrays = (np.zeros((2, 784)), np.zeros(2), np.zeros((1, 28, 28)))
    for name, array in zip(names, arrays):
        write_idx(tmp_path / name, array)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(1))
    files = [tmp_path / name for name in (*names, "t10k-labels-idx1-ubyte.gz")]
    manifest = handmade_manifest(tmp_path, "mnist", "idx", files)
    with pytest.raises(DatasetError, match="manifest.json: train IDX files are not images and labels"):
        datasets.prepare(manifest, tmp_path / "m.npz")
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((2, 28, 28)))
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.full(2, 10))  # MNIST has classes 0..9
    manifest = handmade_manifest(tmp_path, "mnist", "idx", files)
    with pytest.raises(DatasetError, match=r"manifest.json \(train\): labels outside 0..9 \(10..10\)"):
        datasets.prepare(manifest, tmp_path / "m.npz")
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros((2, 1)))
    manifest = handmade_manifest(tmp_path, "mnist", "idx", files)
    with pytest.raises(DatasetError, match="manifest.json: train IDX files are not images and labels"):
        datasets.prepare(manifest, tmp_path / "m.npz")


def test_prepare_carves_a_missing_test_split_and_says_so(tmp_path):
    source = SOURCES["folder"](tmp_path, image_folder_members(per_class=10, splits=("train",)))
    fetch.fetch_image_folder("parts", str(source), tmp_path / "manifest.json")
    settings = {"test_fraction": 0.25, "split_seed": 3}
    provenance = datasets.prepare(tmp_path / "manifest.json", tmp_path / "parts.npz", image_folder=settings)
    prepared = datasets.load_prepared(tmp_path / "parts.npz")
    assert len(prepared.y_test) == 5 and len(prepared.y_train) == 15
    assert provenance["name"] == "parts (image folder, test carved from train (25%, seed 3))"
    train_pixels = {image.tobytes() + bytes([label]) for image, label in zip(prepared.x_train, prepared.y_train)}
    assert not any(
        image.tobytes() + bytes([label]) in train_pixels for image, label in zip(prepared.x_test, prepared.y_test)
    )


def test_prepare_refuses_train_and_test_images_of_different_sizes_and_writes_nothing(tmp_path):
    members = image_folder_members(splits=("train",)) + image_folder_members(splits=("test",), size=(10, 10))
    manifest = fetched_folder(tmp_path, members)
    with pytest.raises(DatasetError, match=r"'train/cat/0.png' is \(8, 8, 3\), 'test/cat/0.png' is \(10, 10, 3\)"):
        datasets.prepare(manifest, tmp_path / "parts.npz")
    assert not (tmp_path / "parts.npz").exists()


def test_a_file_changed_after_fetch_is_caught_by_prepare(tmp_path):
    source = SOURCES["folder"](tmp_path, image_folder_members())
    fetch.fetch_image_folder("parts", str(source), tmp_path / "manifest.json")
    (source / "train" / "cat" / "0.png").write_bytes(image_bytes(colour=(1, 2, 3)))  # valid, but not the fetched one
    with pytest.raises(DatasetError, match="checksum mismatch.*changed since fetch"):
        datasets.prepare(tmp_path / "manifest.json", tmp_path / "parts.npz")
    assert not (tmp_path / "parts.npz").exists()


def test_mirror_fetch_and_prepare_mnist(tmp_path, mirror):
    manifest = fetch.fetch_builtin("mnist", tmp_path / "raw" / "manifest.json", mirror=str(mirror))
    assert manifest["variant"] == "official" and manifest["source"].startswith("mirror ")
    assert not list((tmp_path / "raw").glob("*.gz")), "mirror files are verified where they are, not copied"
    provenance = datasets.prepare(tmp_path / "raw" / "manifest.json", tmp_path / "mnist.npz", 500, 200, subset_seed=1)
    prepared = datasets.load_prepared(tmp_path / "mnist.npz")
    assert prepared.x_train.shape == (500, 28, 28, 1) and prepared.x_test.shape == (200, 28, 28, 1)
    assert prepared.class_names == [str(d) for d in range(10)]
    assert provenance["name"] == prepared.name == "mnist (official)"
    assert set(np.unique(prepared.y_train)) == set(range(10)) and prepared.y_train.dtype == np.int64
    first = fetch.BUILTIN_DATASETS["mnist"].mirror.files[0]
    path = (mirror / "mnist" / first.name).resolve()
    assert manifest["files"][first.name] == {
        "path": str(path),
        "sha256": first.sha256,
        "checksum_of": "decompressed content",  # MNIST's gzip headers differ between copies, their content does not
        "verified": True,
        "origin": str(path),
    }


def test_a_valid_but_different_file_swapped_in_after_fetch_is_refused(tmp_path, mirror):
    fake = tmp_path / "mirror" / "mnist"
    fake.mkdir(parents=True)
    for source in fetch.BUILTIN_DATASETS["mnist"].mirror.files:
        (fake / source.name).write_bytes((mirror / "mnist" / source.name).read_bytes())
    fetch.fetch_builtin("mnist", tmp_path / "manifest.json", mirror=str(tmp_path / "mirror"))
    labels = fake / "t10k-labels-idx1-ubyte.gz"
    write_idx(labels, np.zeros(10000))  # a well-formed IDX file: only the checksum can tell
    with pytest.raises(DatasetError, match="t10k-labels-idx1-ubyte.gz: checksum mismatch"):
        datasets.prepare(tmp_path / "manifest.json", tmp_path / "mnist.npz")
    assert not (tmp_path / "mnist.npz").exists()


def _prepared_arrays(**change):
    arrays = {
        "x_train": np.zeros((4, 8, 8, 1), np.uint8),
        "y_train": np.array([0, 1, 0, 1]),
        "x_test": np.zeros((2, 8, 8, 1), np.uint8),
        "y_test": np.array([0, 1]),
        "class_names": np.asarray(["a", "b"]),
        "provenance": np.asarray(json.dumps({"dataset": "toy", "name": "toy"})),
    }
    return {**arrays, **change}


def test_a_prepared_file_round_trips(tmp_path):
    np.savez(tmp_path / "ok.npz", **_prepared_arrays())
    assert datasets.load_prepared(tmp_path / "ok.npz").name == "toy"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"y_test": np.array([0, 2])}, "labels outside 0..1"),
        ({"y_test": np.array([0, -1])}, "labels outside 0..1"),
        ({"y_train": np.array([0, 1, 0])}, "4 images but 3 labels"),
        ({"x_train": np.zeros((4, 8, 8, 1), np.float32)}, "expected uint8 NHWC"),
        ({"x_test": np.zeros((0, 8, 8, 1), np.uint8), "y_test": np.array([], int)}, "no images"),
        ({"provenance": np.asarray([{"dataset": "toy"}], dtype=object)}, "not a prepared dataset"),
    ],
)
def test_a_bad_prepared_file_is_refused(tmp_path, change, message):
    np.savez(tmp_path / "bad.npz", **_prepared_arrays(**change))
    with pytest.raises(DatasetError, match=f"bad.npz.*{message}"):
        datasets.load_prepared(tmp_path / "bad.npz")


def test_a_prepared_file_with_a_pickle_is_refused_unopened(tmp_path):
    marker = tmp_path / "unpickled"
    names = np.empty(2, dtype=object)
    names[:] = [LeavesAMark(marker), "b"]
    np.savez(tmp_path / "evil.npz", **_prepared_arrays(class_names=names))
    with pytest.raises(DatasetError, match="evil.npz: not a prepared dataset"):
        datasets.load_prepared(tmp_path / "evil.npz")
    assert not marker.exists(), "the pickle was unpickled"


def test_class_names_stored_as_objects_are_refused(tmp_path):
    # Well-formed but for needing pickle: only allow_pickle=False tells this file from a good one.
    np.savez(tmp_path / "objects.npz", **_prepared_arrays(class_names=np.asarray(["a", "b"], dtype=object)))
    with pytest.raises(DatasetError, match="objects.npz: not a prepared dataset"):
        datasets.load_prepared(tmp_path / "objects.npz")


def test_seeded_subsets_are_sorted_reproducible_and_whole_when_large():
    first = datasets.seeded_subset(100, 10, 4)
    assert np.array_equal(first, np.sort(first)) and len(set(first)) == 10
    assert np.array_equal(first, datasets.seeded_subset(100, 10, 4))
    assert not np.array_equal(first, datasets.seeded_subset(100, 10, 5))
    assert np.array_equal(datasets.seeded_subset(5, None, 4), np.arange(5))
    assert np.array_equal(datasets.seeded_subset(5, 9, 4), np.arange(5))
