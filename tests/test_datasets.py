import gzip
import io
import json
import tarfile

import numpy as np
import pytest
from PIL import Image

from tinyml_quant import datasets
from tinyml_quant.datasets import DatasetError


def write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def jpeg_bytes(size=(8, 8), colour=(200, 10, 10)):
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")  # lossless, so pixels are exact
    return buffer.getvalue()


def write_archive(path, members):
    """members: (name, bytes) for files, (name, None) for folders, (name, TarInfo tweak) for specials."""
    with tarfile.open(path, "w:gz") as archive:
        for name, content in members:
            info = tarfile.TarInfo(name)
            if callable(content):
                content(info)
                archive.addfile(info)
            else:
                info.size = len(content)
                archive.addfile(info, io.BytesIO(content))


def image_folder_members(classes=("cat", "dog"), per_class=2):
    return [
        (f"{split}/{name}/{index}.png", jpeg_bytes(colour=(index * 40, 5, 5)))
        for split in ("train", "test")
        for name in classes
        for index in range(per_class)
    ]


def test_idx_round_trip(tmp_path):
    array = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    write_idx(tmp_path / "x.gz", array)
    np.testing.assert_array_equal(datasets.read_idx(tmp_path / "x.gz"), array)


def test_idx_header_disagreeing_with_data_names_the_file(tmp_path):
    path = tmp_path / "bad-idx.gz"
    header = bytes([0, 0, 0x08, 1]) + (10).to_bytes(4, "big")
    with gzip.open(path, "wb") as handle:
        handle.write(header + bytes(7))
    with pytest.raises(DatasetError, match="bad-idx.gz.*10 values.*holds 7"):
        datasets.read_idx(path)


def test_truncated_gzip_names_the_file(tmp_path):
    write_idx(tmp_path / "whole.gz", np.zeros((100, 28, 28)))
    content = (tmp_path / "whole.gz").read_bytes()
    (tmp_path / "cut.gz").write_bytes(content[: len(content) // 2])
    with pytest.raises(DatasetError, match="cut.gz.*truncated"):
        datasets.read_idx(tmp_path / "cut.gz")


def test_checksum_mismatch_names_the_file(tmp_path):
    path = tmp_path / "file.bin"
    path.write_bytes(b"not the real thing")
    with pytest.raises(DatasetError, match="file.bin: checksum mismatch"):
        datasets.verify(path, datasets.SourceFile("file.bin", "0" * 64))


def test_image_folder_archive_reads_images_and_labels(tmp_path):
    write_archive(tmp_path / "a.tar.gz", image_folder_members())
    splits, classes = datasets.read_image_folder_archive(tmp_path / "a.tar.gz")
    assert classes == ["cat", "dog"]
    images, labels = splits["train"]
    assert images.shape == (4, 8, 8, 3) and images.dtype == np.uint8
    assert labels.tolist() == [0, 0, 1, 1]
    assert images[1, 0, 0].tolist() == [40, 5, 5]


def test_image_folder_archive_follows_given_class_order(tmp_path):
    write_archive(tmp_path / "a.tar.gz", image_folder_members())
    splits, classes = datasets.read_image_folder_archive(tmp_path / "a.tar.gz", ["dog", "cat"])
    assert classes == ["dog", "cat"] and splits["test"][1].tolist() == [1, 1, 0, 0]


@pytest.mark.parametrize(
    "extra, message",
    [
        (("train/cat/big.png", jpeg_bytes(size=(9, 8))), "big.png.*expected \\(8, 8, 3\\)"),
        (("../evil.png", jpeg_bytes()), "unsafe archive member '../evil.png'"),
        (("/abs/evil.png", jpeg_bytes()), "unsafe archive member '/abs/evil.png'"),
        (("train/cat/link.png", lambda info: setattr(info, "type", tarfile.SYMTYPE) or setattr(info, "linkname", "/etc/passwd")), "link.png"),
        (("train/cat/dev", lambda info: setattr(info, "type", tarfile.CHRTYPE)), "dev"),
        (("train/cat/broken.png", b"not an image"), "broken.png.*not a readable image"),
    ],
)
def test_bad_image_folder_member_names_archive_and_member(tmp_path, extra, message):
    write_archive(tmp_path / "bad.tar.gz", image_folder_members() + [extra])
    with pytest.raises(DatasetError, match=f"bad.tar.gz.*{message}"):
        datasets.read_image_folder_archive(tmp_path / "bad.tar.gz")


def test_unknown_class_folder_is_refused(tmp_path):
    write_archive(tmp_path / "a.tar.gz", image_folder_members(classes=("cat", "emu")))
    with pytest.raises(DatasetError, match="train/emu is not a known class"):
        datasets.read_image_folder_archive(tmp_path / "a.tar.gz", ["cat", "dog"])


def test_empty_split_is_refused(tmp_path):
    members = [m for m in image_folder_members() if m[0].startswith("train/")]
    write_archive(tmp_path / "a.tar.gz", members)
    with pytest.raises(DatasetError, match="split 'test' holds no images"):
        datasets.read_image_folder_archive(tmp_path / "a.tar.gz")


def test_truncated_archive_names_the_file(tmp_path):
    write_archive(tmp_path / "a.tar.gz", image_folder_members(per_class=50))
    content = (tmp_path / "a.tar.gz").read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(content[: len(content) // 2])
    with pytest.raises(DatasetError, match="cut.tar.gz.*truncated"):
        datasets.read_image_folder_archive(tmp_path / "cut.tar.gz")


def test_cifar10_binary_release_is_parsed_with_numpy(tmp_path):
    rng = np.random.default_rng(0)
    members, expected = [], {}
    for name, count in [(f"data_batch_{i}.bin", 3) for i in range(1, 6)] + [("test_batch.bin", 2)]:
        labels = rng.integers(0, 10, count, dtype=np.uint8)
        pixels = rng.integers(0, 256, (count, 3, 32, 32), dtype=np.uint8)
        records = np.concatenate([labels[:, None], pixels.reshape(count, -1)], axis=1)
        members.append((f"cifar-10-batches-bin/{name}", records.tobytes()))
        expected[name] = (labels, pixels.transpose(0, 2, 3, 1))
    write_archive(tmp_path / "cifar-10-binary.tar.gz", members)
    splits = datasets.read_cifar10_binary(tmp_path / "cifar-10-binary.tar.gz")
    assert splits["train"][0].shape == (15, 32, 32, 3)
    np.testing.assert_array_equal(splits["test"][0], expected["test_batch.bin"][1])
    np.testing.assert_array_equal(splits["test"][1], expected["test_batch.bin"][0])


def test_mirror_fetch_and_prepare_mnist(tmp_path, mirror):
    manifest = datasets.fetch("mnist", tmp_path / "raw", mirror=str(mirror))
    assert manifest["variant"] == "official" and manifest["source"].startswith("mirror ")
    provenance = datasets.prepare(tmp_path / "raw" / "manifest.json", tmp_path / "mnist.npz", 500, 200, subset_seed=1)
    prepared = datasets.load_prepared(tmp_path / "mnist.npz")
    assert prepared.x_train.shape == (500, 28, 28, 1) and prepared.x_test.shape == (200, 28, 28, 1)
    assert prepared.class_names == [str(d) for d in range(10)]
    assert provenance["name"] == prepared.name == "mnist (official)"
    assert set(np.unique(prepared.y_train)) == set(range(10))


def test_bad_mirror_file_leaves_no_manifest(tmp_path, mirror):
    fake = tmp_path / "mirror" / "mnist"
    fake.mkdir(parents=True)
    for source in datasets.MIRROR_SOURCES["mnist"].files:
        (fake / source.name).symlink_to(mirror / "mnist" / source.name)
    (fake / "t10k-labels-idx1-ubyte.gz").unlink()
    write_idx(fake / "t10k-labels-idx1-ubyte.gz", np.zeros(10000))
    with pytest.raises(DatasetError, match="t10k-labels-idx1-ubyte.gz: checksum mismatch"):
        datasets.fetch("mnist", tmp_path / "raw", mirror=str(tmp_path / "mirror"))
    assert not (tmp_path / "raw" / "manifest.json").exists()


def test_prepared_file_holds_no_pickles(tmp_path, mirror):
    datasets.fetch("mnist", tmp_path / "raw", mirror=str(mirror))
    datasets.prepare(tmp_path / "raw" / "manifest.json", tmp_path / "mnist.npz", 10, 10)
    with np.load(tmp_path / "mnist.npz", allow_pickle=False) as arrays:
        assert json.loads(str(arrays["provenance"]))["dataset"] == "mnist"
