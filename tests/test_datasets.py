"""Dataset files: the readers' formats and refusals, fetch and prepare, built-in and your own image folders."""

import gzip
import hashlib
import io
import json
import stat
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tinyml_quant import datasets, readers
from tinyml_quant.datasets import DatasetError


def write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def image_bytes(size=(8, 8), colour=(200, 10, 10), mode="RGB", format="PNG"):
    """An image file's bytes; PNG and BMP are lossless, so pixels are exact."""
    buffer = io.BytesIO()
    value = colour if mode == "RGB" else colour[0]
    Image.new(mode, size, value).save(buffer, format=format)
    return buffer.getvalue()


def write_tar(path, members):
    """members: (name, bytes) for files, (name, None) for folders, (name, TarInfo tweak) for specials."""
    with tarfile.open(path, "w:gz") as archive:
        for name, content in members:
            info = tarfile.TarInfo(name)
            if callable(content):
                content(info)
                archive.addfile(info)
            elif content is None:
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
            else:
                info.size = len(content)
                archive.addfile(info, io.BytesIO(content))


def write_zip(path, members):
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members:
            if isinstance(content, zipfile.ZipInfo):
                archive.writestr(content, b"target")
            else:
                archive.writestr(name, content if content is not None else b"")


def write_folder(root, members):
    for name, content in members:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return root


def image_folder_members(classes=("cat", "dog"), per_class=2, splits=("train", "test"), **image):
    return [
        (f"{split}/{name}/{index}.png", image_bytes(colour=(index * 40 % 256, index // 7, 5), **image))
        for split in splits
        for name in classes
        for index in range(per_class)
    ]


SOURCES = {
    "tar": lambda tmp, members: (write_tar(tmp / "a.tar.gz", members), tmp / "a.tar.gz")[1],
    "zip": lambda tmp, members: (write_zip(tmp / "a.zip", members), tmp / "a.zip")[1],
    "folder": lambda tmp, members: write_folder(tmp / "a", members),
}


# --------------------------------------------------------------------------- IDX and CIFAR-10 binary


def test_idx_round_trip(tmp_path):
    array = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    write_idx(tmp_path / "x.gz", array)
    np.testing.assert_array_equal(readers.read_idx(tmp_path / "x.gz"), array)


def write_gzip(path, content):
    with gzip.open(path, "wb") as handle:
        handle.write(content)
    return path


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x00\x00\x08", "not an unsigned-byte IDX file (bad magic number)"),
        (b"\x01\x00\x08\x01\x00\x00\x00\x00", "not an unsigned-byte IDX file (bad magic number)"),
        (b"\x00\x00\x09\x01\x00\x00\x00\x00", "not an unsigned-byte IDX file (bad magic number)"),
        (b"\x00\x00\x08\x00", "IDX header is truncated or has no dimensions"),
        (b"\x00\x00\x08\x00\x07", "IDX header is truncated or has no dimensions"),
        (b"\x00\x00\x08\x02\x00\x00\x00\x01", "IDX header is truncated or has no dimensions"),
        (
            b"\x00\x00\x08\x03" + b"\xff" * 12,  # a header whose product overflows 64 bits, counted exactly
            f"IDX header says shape {(2**32 - 1,) * 3} ({(2**32 - 1) ** 3} values) but the file holds 0",
        ),
    ],
)
def test_idx_headers_that_cannot_be_are_refused_with_the_reason(tmp_path, content, message):
    path = write_gzip(tmp_path / "x.gz", content)
    with pytest.raises(DatasetError) as refused:
        readers.read_idx(path)
    assert str(refused.value) == f"{path}: {message}"


@pytest.mark.parametrize("shape", [(0, 28, 28), (2**24, 0), (0, 2**24)])
def test_idx_dimensions_are_four_byte_big_endian_and_may_be_empty(tmp_path, shape):
    header = bytes([0, 0, 0x08, len(shape)]) + b"".join(size.to_bytes(4, "big") for size in shape)
    assert readers.read_idx(write_gzip(tmp_path / "x.gz", header)).shape == shape


def test_an_idx_file_at_the_size_limit_is_read_and_one_byte_more_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "MAX_TOTAL_BYTES", 20)
    header = bytes([0, 0, 0x08, 1])
    at_limit = write_gzip(tmp_path / "at.gz", header + (12).to_bytes(4, "big") + bytes(12))
    assert readers.read_idx(at_limit).shape == (12,)
    over = write_gzip(tmp_path / "over.gz", header + (13).to_bytes(4, "big") + bytes(13))
    with pytest.raises(DatasetError, match="over.gz: decompresses to more than 20 bytes"):
        readers.read_idx(over)


def test_an_idx_bomb_is_refused_without_inflating_it(tmp_path, monkeypatch):
    import tracemalloc

    monkeypatch.setattr(readers, "MAX_TOTAL_BYTES", 1000)
    bomb = write_gzip(tmp_path / "bomb.gz", bytes([0, 0, 0x08, 1]) + bytes(64 * 2**20))  # 64 MiB of zeros
    tracemalloc.start()
    try:
        with pytest.raises(DatasetError, match="bomb.gz: decompresses to more than 1000 bytes"):
            readers.read_idx(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20, f"{peak} bytes allocated to refuse it"


def test_idx_header_disagreeing_with_data_names_the_file(tmp_path):
    path = tmp_path / "bad-idx.gz"
    header = bytes([0, 0, 0x08, 1]) + (10).to_bytes(4, "big")
    with gzip.open(path, "wb") as handle:
        handle.write(header + bytes(7))
    with pytest.raises(DatasetError, match="bad-idx.gz.*10 values.*holds 7"):
        readers.read_idx(path)


def test_truncated_gzip_names_the_file(tmp_path):
    write_idx(tmp_path / "whole.gz", np.zeros((100, 28, 28)))
    content = (tmp_path / "whole.gz").read_bytes()
    (tmp_path / "cut.gz").write_bytes(content[: len(content) // 2])
    with pytest.raises(DatasetError, match="cut.gz.*truncated"):
        readers.read_idx(tmp_path / "cut.gz")


def test_cifar10_binary_release_is_parsed_with_numpy(tmp_path):
    rng = np.random.default_rng(0)
    members, expected = [], {}
    for name, count in [(f"data_batch_{i}.bin", 3) for i in range(1, 6)] + [("test_batch.bin", 2)]:
        labels = rng.integers(0, 10, count, dtype=np.uint8)
        pixels = rng.integers(0, 256, (count, 3, 32, 32), dtype=np.uint8)
        records = np.concatenate([labels[:, None], pixels.reshape(count, -1)], axis=1)
        members.append((f"cifar-10-batches-bin/{name}", records.tobytes()))
        expected[name] = (labels, pixels.transpose(0, 2, 3, 1))
    write_tar(tmp_path / "cifar-10-binary.tar.gz", members)
    splits = readers.read_cifar10_binary(tmp_path / "cifar-10-binary.tar.gz")
    assert splits["train"][0].shape == (15, 32, 32, 3)
    np.testing.assert_array_equal(splits["test"][0], expected["test_batch.bin"][1])
    np.testing.assert_array_equal(splits["test"][1], expected["test_batch.bin"][0])


def test_cifar10_labels_out_of_range_are_refused(tmp_path):
    record = np.zeros((1, readers.CIFAR10_RECORD_BYTES), np.uint8)
    members = [
        (f"b/{name}", record.tobytes()) for name in ("test_batch.bin", *(f"data_batch_{i}.bin" for i in range(1, 6)))
    ]
    bad = record.copy()
    bad[0, 0] = 10
    members[0] = ("b/test_batch.bin", bad.tobytes())
    write_tar(tmp_path / "c.tar.gz", members)
    with pytest.raises(DatasetError, match="test labels outside 0..9"):
        readers.read_cifar10_binary(tmp_path / "c.tar.gz")


def cifar10_members(folder="b", empty=(), extra=()):
    record = np.zeros((1, readers.CIFAR10_RECORD_BYTES), np.uint8)
    record[0, 0] = 3
    names = ("test_batch.bin", *(f"data_batch_{i}.bin" for i in range(1, 6)))
    return [*extra, *((f"{folder}/{name}", b"" if name in empty else record.tobytes()) for name in names)]


def test_cifar10_labels_are_int64_and_an_empty_batch_is_no_records(tmp_path):
    write_tar(tmp_path / "c.tar.gz", cifar10_members(empty=("test_batch.bin",)))
    splits = readers.read_cifar10_binary(tmp_path / "c.tar.gz")
    assert splits["train"][1].dtype == np.int64 and splits["train"][1].tolist() == [3] * 5
    assert splits["test"][0].shape == (0, 32, 32, 3) and splits["test"][1].shape == (0,)


def test_a_cifar10_folder_named_like_a_batch_is_not_the_batch(tmp_path):
    write_tar(tmp_path / "c.tar.gz", cifar10_members(extra=[("b/data_batch_1.bin/", None)]))
    assert len(readers.read_cifar10_binary(tmp_path / "c.tar.gz")["train"][1]) == 5
    members = [member for member in cifar10_members() if not member[0].endswith("data_batch_2.bin")]
    write_tar(tmp_path / "d.tar.gz", [*members, ("b/data_batch_2.bin/", None)])
    with pytest.raises(DatasetError, match="d.tar.gz: archive member data_batch_2.bin is missing"):
        readers.read_cifar10_binary(tmp_path / "d.tar.gz")


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "empty name or NUL byte"),
        ("train/a\x00b.png", "empty name or NUL byte"),
        ("/etc/passwd", "absolute path"),
        ("\\server\\share", "absolute path"),
        ("C:", "absolute path"),
        ("C:/x.png", "absolute path"),
        ("train\\cat\\0.png", "backslash in the name"),
        ("train/../../x.png", "'..' in the path"),
        ("train/cat/0.png", None),
        ("./train/cat/", None),
    ],
)
def test_member_names_that_could_escape_are_named_with_the_reason(name, reason):
    assert readers._unsafe_name_reason(name) == reason


def test_the_budget_allows_exactly_its_limits(monkeypatch):
    monkeypatch.setattr(readers, "MAX_MEMBERS", 3)
    monkeypatch.setattr(readers, "MAX_MEMBER_BYTES", 10)
    monkeypatch.setattr(readers, "MAX_TOTAL_BYTES", 20)
    budget = readers._Budget(Path("src"))
    budget.take("a", 10)  # one member at the per-file limit
    budget.take("b", 10)  # the total at its limit
    budget.count()  # the third member
    assert (budget.members, budget.total_bytes) == (3, 20)
    with pytest.raises(DatasetError, match="src: more than 3 members"):
        budget.count()
    with pytest.raises(DatasetError, match="member 'c' is 11 bytes, more than the 10 allowed per file"):
        readers._Budget(Path("src")).take("c", 11)
    spread = readers._Budget(Path("src"))
    spread.take("d", 10)
    spread.take("e", 10)
    with pytest.raises(DatasetError, match="src: more than 20 bytes in all"):
        spread.take("f", 1)  # the sum of the members, not the last one, is over


@pytest.mark.parametrize(("name", "kind"), [("a.tar.gz", "tar"), ("A.TGZ", "tar"), ("b.tgz", "tar"), ("c.ZIP", "zip")])
def test_the_source_kind_comes_from_the_name(tmp_path, name, kind):
    assert readers.source_kind(tmp_path / name) == kind


def test_a_tar_gz_that_is_not_gzip_is_refused(tmp_path):
    with tarfile.open(tmp_path / "plain.tar.gz", "w") as archive:  # an uncompressed tar under a .tar.gz name
        info = tarfile.TarInfo("train/cat/0.png")
        content = image_bytes()
        info.size = len(content)
        archive.addfile(info, io.BytesIO(content))
    with pytest.raises(DatasetError, match="plain.tar.gz: cannot read the archive"):
        readers.read_image_folder(tmp_path / "plain.tar.gz")


def test_every_source_kind_lists_the_same_members(tmp_path):
    members = image_folder_members(classes=("maX", "dog"))
    folders = [("train/", None), ("train/maX/", None), ("test/", None)]
    listed = {}
    for kind in ("tar", "zip"):
        (tmp_path / kind).mkdir()
        source = SOURCES[kind](tmp_path / kind, folders + members)
        listed[kind] = [(name, content) for name, content in readers.iter_files(source)]
    source = SOURCES["folder"](tmp_path / "folder", members)
    listed["folder"] = list(readers.iter_files(source))
    expected_files = sorted(members)
    for kind, found in listed.items():
        assert sorted(item for item in found if item[1] is not None) == expected_files, kind
        assert {name for name, content in found if content is None} >= {"train", "train/maX", "test"}, kind


def test_an_encrypted_zip_member_is_refused(tmp_path):
    write_zip(tmp_path / "locked.zip", image_folder_members())
    content = bytearray((tmp_path / "locked.zip").read_bytes())
    central = content.index(b"PK\x01\x02")  # the first member's central directory entry
    content[central + 8] |= 0x01  # general purpose flags, bit 0: encrypted
    (tmp_path / "locked.zip").write_bytes(bytes(content))
    with pytest.raises(DatasetError, match="locked.zip: archive member 'train/cat/0.png' is encrypted"):
        readers.read_image_folder(tmp_path / "locked.zip")


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_a_file_beside_the_wrapper_folder_is_refused_not_skipped(tmp_path, kind):
    members = [(f"x/{name}", content) for name, content in image_folder_members()] + [("LICENSE", b"text")]
    source = SOURCES[kind](tmp_path, members)
    with pytest.raises(DatasetError, match="'LICENSE' is not laid out"):
        readers.read_image_folder(source)


def test_a_tar_of_dot_reads_like_its_folder(tmp_path):
    folder = SOURCES["folder"](tmp_path, image_folder_members())
    with tarfile.open(tmp_path / "dot.tar.gz", "w:gz") as archive:
        archive.add(folder, arcname=".")  # tar czf dot.tar.gz -C a .
    (from_tar, names), (from_folder, _) = (
        readers.read_image_folder(tmp_path / "dot.tar.gz"),
        readers.read_image_folder(folder),
    )
    assert names == ["cat", "dog"]
    np.testing.assert_array_equal(from_tar["train"][0], from_folder["train"][0])


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_system_files_first_are_skipped_and_the_rest_read(tmp_path, kind):
    members = [("__MACOSX/train/._0.png", b"resource fork"), ("train/.DS_Store", b"finder"), *image_folder_members()]
    splits, names = readers.read_image_folder(SOURCES[kind](tmp_path, members))
    assert names == ["cat", "dog"] and len(splits["train"][1]) == 4 and len(splits["test"][1]) == 4


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_a_folder_inside_a_class_folder_is_refused(tmp_path, kind):
    source = SOURCES[kind](tmp_path, image_folder_members() + [("train/cat/deeper/", None)])
    with pytest.raises(DatasetError, match="'train/cat/deeper/?' is not laid out"):
        readers.read_image_folder(source)


# --------------------------------------------------------------------------- image folders


@pytest.mark.parametrize("kind", SOURCES)
def test_image_folder_reads_images_and_labels_from_every_kind_of_source(tmp_path, kind):
    source = SOURCES[kind](tmp_path, image_folder_members())
    splits, classes = readers.read_image_folder(source)
    assert classes == ["cat", "dog"]
    images, labels = splits["train"]
    assert images.shape == (4, 8, 8, 3) and images.dtype == np.uint8
    assert labels.tolist() == [0, 0, 1, 1]
    assert images[1, 0, 0].tolist() == [40, 0, 5]


def test_a_single_wrapping_folder_is_looked_through(tmp_path):
    members = [(f"parts/{name}", content) for name, content in image_folder_members()]
    splits, classes = readers.read_image_folder(SOURCES["tar"](tmp_path, members))
    assert classes == ["cat", "dog"] and len(splits["test"][1]) == 4


def test_the_given_class_order_fixes_the_labels(tmp_path):
    splits, classes = readers.read_image_folder(SOURCES["zip"](tmp_path, image_folder_members()), ["dog", "cat"])
    assert classes == ["dog", "cat"] and splits["test"][1].tolist() == [1, 1, 0, 0]


def test_grey_images_stay_one_channel_and_convert_when_asked(tmp_path):
    source = SOURCES["folder"](tmp_path, image_folder_members(mode="L", format="BMP"))
    grey, _ = readers.read_image_folder(source)
    assert grey["train"][0].shape == (4, 8, 8, 1)
    colour, _ = readers.read_image_folder(source, channels=3)
    assert colour["train"][0].shape == (4, 8, 8, 3)
    np.testing.assert_array_equal(colour["train"][0][..., 0], grey["train"][0][..., 0])
    back, _ = readers.read_image_folder(SOURCES["tar"](tmp_path, image_folder_members()), channels=1)
    assert back["train"][0].shape == (4, 8, 8, 1)


def test_image_size_resizes_and_mixed_sizes_without_it_name_two_files(tmp_path):
    members = image_folder_members() + [("train/cat/big.png", image_bytes(size=(12, 10)))]
    source = SOURCES["tar"](tmp_path, members)
    with pytest.raises(DatasetError, match=r"'train/cat/0.png' is \(8, 8, 3\), 'train/cat/big.png' is \(10, 12, 3\)"):
        readers.read_image_folder(source)
    resized, _ = readers.read_image_folder(source, image_size=(6, 7))
    assert resized["train"][0].shape == (5, 6, 7, 3)


def test_mixed_grey_and_colour_without_channels_name_two_files(tmp_path):
    members = image_folder_members() + [("train/dog/grey.png", image_bytes(mode="L"))]
    with pytest.raises(DatasetError, match="grey.png' is \\(8, 8, 1\\)"):
        readers.read_image_folder(SOURCES["zip"](tmp_path, members))


def test_a_missing_test_split_is_none(tmp_path):
    splits, _ = readers.read_image_folder(SOURCES["folder"](tmp_path, image_folder_members(splits=("train",))))
    assert splits["test"] is None and len(splits["train"][1]) == 4


@pytest.mark.parametrize(
    "extra, message",
    [
        (("train/cat/broken.png", b"not an image"), "broken.png.*not a readable PNG, JPEG, BMP image"),
        (("train/cat/notes.txt", b"hello"), "notes.txt.*not a readable"),
        (("train/cat/anim.gif", None), "anim.gif.*a GIF image; only PNG, JPEG, BMP"),
        (("validation/cat/0.png", image_bytes()), "'validation[^']*' is not laid out as <split>/<class>/<image>"),
        (("train/cat/deep/0.png", image_bytes()), "'train/cat/deep[^']*' is not laid out"),
        (("train/loose.png", image_bytes()), "'train/loose.png' is not laid out"),
    ],
)
@pytest.mark.parametrize("kind", SOURCES)
def test_bad_image_folder_member_names_source_and_member(tmp_path, kind, extra, message):
    name, content = extra
    if content is None:
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8)).save(buffer, format="GIF")
        content = buffer.getvalue()
    source = SOURCES[kind](tmp_path, image_folder_members() + [(name, content)])
    with pytest.raises(DatasetError, match=f"{source.name}.*{message}"):
        readers.read_image_folder(source)


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_an_empty_class_folder_is_refused(tmp_path, kind):
    source = SOURCES[kind](tmp_path, image_folder_members() + [("train/emu/", None)])
    with pytest.raises(DatasetError, match="class folder train/emu is empty"):
        readers.read_image_folder(source)


def test_an_empty_class_folder_on_disk_is_refused(tmp_path):
    source = SOURCES["folder"](tmp_path, image_folder_members())
    (source / "train" / "emu").mkdir()
    with pytest.raises(DatasetError, match="class folder train/emu is empty"):
        readers.read_image_folder(source)


def test_unknown_and_missing_classes_are_refused(tmp_path):
    source = SOURCES["tar"](tmp_path, image_folder_members(classes=("cat", "emu")))
    with pytest.raises(DatasetError, match="train/emu is not a known class"):
        readers.read_image_folder(source, ["cat", "dog"])
    with pytest.raises(DatasetError, match="class 'cow' has no images in train/"):
        readers.read_image_folder(source, ["cat", "emu", "cow"])


def test_a_test_class_unknown_to_train_is_refused(tmp_path):
    members = image_folder_members() + [("test/emu/0.png", image_bytes())]
    with pytest.raises(DatasetError, match="test/emu is not a known class"):
        readers.read_image_folder(SOURCES["zip"](tmp_path, members))


def test_operating_system_litter_is_skipped(tmp_path):
    members = image_folder_members() + [("train/.DS_Store", b"junk"), ("__MACOSX/train/cat/._0.png", b"junk")]
    splits, classes = readers.read_image_folder(SOURCES["zip"](tmp_path, members))
    assert classes == ["cat", "dog"] and len(splits["train"][1]) == 4


# --------------------------------------------------------------------------- hostile archives


@pytest.mark.parametrize(
    "member, message",
    [
        (("../evil.png", image_bytes()), "'../evil.png': '..' in the path"),
        (("/abs/evil.png", image_bytes()), "'/abs/evil.png': absolute path"),
        (
            (
                "train/cat/link.png",
                lambda info: setattr(info, "type", tarfile.SYMTYPE) or setattr(info, "linkname", "/etc/passwd"),
            ),
            "link.png': not a regular file",
        ),  # noqa: E501
        (
            (
                "train/cat/hard.png",
                lambda info: setattr(info, "type", tarfile.LNKTYPE) or setattr(info, "linkname", "train/cat/0.png"),
            ),
            "hard.png': not a regular file",
        ),  # noqa: E501
        (("train/cat/dev", lambda info: setattr(info, "type", tarfile.CHRTYPE)), "dev': not a regular file"),
    ],
)
def test_unsafe_tar_members_are_refused(tmp_path, member, message):
    write_tar(tmp_path / "bad.tar.gz", image_folder_members() + [member])
    with pytest.raises(DatasetError, match=f"bad.tar.gz: unsafe archive member .*{message}"):
        readers.read_image_folder(tmp_path / "bad.tar.gz")


def _symlink_info(name):
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize(
    "member, message",
    [
        (("../../evil.png", image_bytes()), "'../../evil.png': '..' in the path"),
        (("/etc/evil.png", image_bytes()), "'/etc/evil.png': absolute path"),
        (("C:/evil.png", image_bytes()), "'C:/evil.png': absolute path"),
        (("train\\cat\\evil.png", image_bytes()), "backslash in the name"),
        (("train/cat/link.png", _symlink_info("train/cat/link.png")), "link.png': not a regular file"),
    ],
)
def test_unsafe_zip_members_are_refused(tmp_path, member, message):
    write_zip(tmp_path / "bad.zip", image_folder_members() + [member])
    with pytest.raises(DatasetError, match=f"bad.zip: unsafe archive member .*{message}"):
        readers.read_image_folder(tmp_path / "bad.zip")


def test_a_link_in_a_folder_source_is_refused(tmp_path):
    source = SOURCES["folder"](tmp_path, image_folder_members())
    (source / "train" / "cat" / "link.png").symlink_to(source / "train" / "cat" / "0.png")
    with pytest.raises(DatasetError, match="link.png is not a regular file"):
        readers.read_image_folder(source)


def test_an_image_claiming_a_huge_size_is_refused_before_decoding(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(DatasetError, match="claims 20x20 pixels.*decompression bomb"):
        readers.decode_image(image_bytes(size=(20, 20)), "x.png")


def test_an_image_at_the_pixel_limit_is_read(monkeypatch):
    monkeypatch.setattr(readers, "MAX_IMAGE_PIXELS", 64)
    assert readers.decode_image(image_bytes(size=(8, 8)), "x.png").shape == (8, 8, 3)
    with pytest.raises(DatasetError, match="claims 8x9 pixels"):
        readers.decode_image(image_bytes(size=(8, 9)), "y.png")


def png_of(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("mode", ["1", "L", "LA"])
def test_bilevel_and_grey_with_alpha_images_are_one_channel(mode):
    pixels = readers.decode_image(png_of(Image.new(mode, (4, 3), 1 if mode == "1" else 90)), "g.png")
    assert pixels.shape == (3, 4, 1) and pixels.dtype == np.uint8


def test_sixteen_bit_images_are_refused():
    sixteen_bit = Image.new("I;16", (4, 3))
    assert Image.open(io.BytesIO(png_of(sixteen_bit))).mode.startswith("I")
    with pytest.raises(DatasetError, match="deep.png: I.* \\(16-bit or float\\) images are not supported"):
        readers.decode_image(png_of(sixteen_bit), "deep.png")


def test_resizing_is_pil_bilinear():
    gradient = Image.linear_gradient("L").resize((7, 5)).convert("RGB")
    content = png_of(gradient)
    expected = np.asarray(Image.open(io.BytesIO(content)).convert("RGB").resize((4, 3), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(readers.decode_image(content, "r.png", image_size=(3, 4)), expected)


def test_a_png_header_claiming_a_huge_size_is_refused(tmp_path):
    content = bytearray(image_bytes(size=(8, 8)))
    content[16:24] = (100_000).to_bytes(4, "big") + (100_000).to_bytes(4, "big")  # IHDR width and height
    with pytest.raises(DatasetError, match="x.png"):
        readers.decode_image(bytes(content), "x.png")


@pytest.mark.parametrize("kind", ["tar", "zip", "folder"])
def test_a_source_with_too_many_members_is_refused(tmp_path, monkeypatch, kind):
    monkeypatch.setattr(readers, "MAX_MEMBERS", 5)
    source = SOURCES[kind](tmp_path, image_folder_members())
    with pytest.raises(DatasetError, match=f"{source.name}: more than 5 members.*bomb"):
        readers.read_image_folder(source)


@pytest.mark.parametrize("kind", ["tar", "zip", "folder"])
def test_a_member_too_large_is_refused_before_it_is_read(tmp_path, monkeypatch, kind):
    monkeypatch.setattr(readers, "MAX_MEMBER_BYTES", 50)
    source = SOURCES[kind](tmp_path, image_folder_members())
    with pytest.raises(DatasetError, match="member '(train|test)/cat/0.png' is \\d+ bytes, more than the 50 allowed"):
        readers.read_image_folder(source)


def test_truncated_archives_name_the_file(tmp_path):
    for kind in ("tar", "zip"):
        source = SOURCES[kind](tmp_path, image_folder_members(per_class=50))
        cut = tmp_path / f"cut{''.join(source.suffixes)}"
        cut.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
        with pytest.raises(DatasetError, match=f"{cut.name}.*truncated or corrupt"):
            readers.read_image_folder(cut)


def test_a_zip_member_name_flagged_utf8_that_is_not_names_the_file(tmp_path):
    # Found by the long fuzz run: zipfile's UnicodeDecodeError escaped instead of an error naming the archive.
    source = SOURCES["zip"](tmp_path, image_folder_members(per_class=2))
    content = bytearray(source.read_bytes())
    assert content[:4] == b"PK\x03\x04"
    content[7] |= 0x08  # general purpose flags, high byte: bit 11, "the name is UTF-8"
    content[30] = 0x89  # the first member's name, in its local header: not UTF-8
    damaged = tmp_path / "names.zip"
    damaged.write_bytes(bytes(content))
    with pytest.raises(DatasetError, match="names.zip.*truncated or corrupt"):
        readers.read_image_folder(damaged)


# --------------------------------------------------------------------------- fetch and prepare


def test_image_folder_fetch_verifies_the_given_checksum_and_records_it(tmp_path):
    source = SOURCES["tar"](tmp_path, image_folder_members())
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    manifest = datasets.fetch_image_folder("parts", str(source), tmp_path / "m" / "manifest.json", sha256=digest)
    assert manifest["variant"] == "image folder" and manifest["files"]["a.tar.gz"]["sha256"] == digest
    with pytest.raises(DatasetError, match=r"checksum mismatch.*\(image_folders.parts.sha256\)"):
        datasets.fetch_image_folder("parts", str(source), tmp_path / "n" / "manifest.json", sha256="0" * 64)
    assert not (tmp_path / "n").exists()


def test_a_folders_digest_covers_every_files_path_and_content(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    (tmp_path / "train" / "a" / "0.png").write_bytes(b"zero")
    (tmp_path / "b.png").write_bytes(b"bee")
    expected = hashlib.sha256()
    for name, content in (("b.png", b"bee"), ("train/a/0.png", b"zero")):  # in name order
        expected.update(name.encode() + b"\0" + hashlib.sha256(content).hexdigest().encode())
    assert datasets.folder_digest(tmp_path) == expected.hexdigest()


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
    assert datasets.is_url(source) is remote


def fetched_folder(tmp_path, members):
    source = SOURCES["folder"](tmp_path, members)
    datasets.fetch_image_folder("parts", str(source), tmp_path / "manifest.json")
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
    datasets.fetch_image_folder("parts", str(source), tmp_path / "manifest.json")
    settings = {"test_fraction": 0.25, "split_seed": 3}
    provenance = datasets.prepare(tmp_path / "manifest.json", tmp_path / "parts.npz", image_folder=settings)
    prepared = datasets.load_prepared(tmp_path / "parts.npz")
    assert len(prepared.y_test) == 5 and len(prepared.y_train) == 15
    assert provenance["name"] == "parts (image folder, test carved from train (25%, seed 3))"
    train_pixels = {image.tobytes() + bytes([label]) for image, label in zip(prepared.x_train, prepared.y_train)}
    assert not any(
        image.tobytes() + bytes([label]) in train_pixels for image, label in zip(prepared.x_test, prepared.y_test)
    )


def test_a_file_changed_after_fetch_is_caught_by_prepare(tmp_path):
    source = SOURCES["folder"](tmp_path, image_folder_members())
    datasets.fetch_image_folder("parts", str(source), tmp_path / "manifest.json")
    (source / "train" / "cat" / "0.png").write_bytes(image_bytes(colour=(1, 2, 3)))  # valid, but not the fetched one
    with pytest.raises(DatasetError, match="checksum mismatch.*changed since fetch"):
        datasets.prepare(tmp_path / "manifest.json", tmp_path / "parts.npz")
    assert not (tmp_path / "parts.npz").exists()


def test_mirror_fetch_and_prepare_mnist(tmp_path, mirror):
    manifest = datasets.fetch_builtin("mnist", tmp_path / "raw" / "manifest.json", mirror=str(mirror))
    assert manifest["variant"] == "official" and manifest["source"].startswith("mirror ")
    assert not list((tmp_path / "raw").glob("*.gz")), "mirror files are verified where they are, not copied"
    provenance = datasets.prepare(tmp_path / "raw" / "manifest.json", tmp_path / "mnist.npz", 500, 200, subset_seed=1)
    prepared = datasets.load_prepared(tmp_path / "mnist.npz")
    assert prepared.x_train.shape == (500, 28, 28, 1) and prepared.x_test.shape == (200, 28, 28, 1)
    assert prepared.class_names == [str(d) for d in range(10)]
    assert provenance["name"] == prepared.name == "mnist (official)"
    assert set(np.unique(prepared.y_train)) == set(range(10)) and prepared.y_train.dtype == np.int64
    first = datasets.BUILTIN_DATASETS["mnist"].mirror.files[0]
    path = (mirror / "mnist" / first.name).resolve()
    assert manifest["files"][first.name] == {
        "path": str(path),
        "sha256": first.sha256,
        "checksum_of": "decompressed content",  # MNIST's gzip headers differ between copies, their content does not
        "verified": True,
        "origin": str(path),
    }


def test_a_bad_mirror_file_leaves_no_manifest(tmp_path, mirror):
    fake = tmp_path / "mirror" / "mnist"
    fake.mkdir(parents=True)
    for source in datasets.BUILTIN_DATASETS["mnist"].mirror.files:
        (fake / source.name).symlink_to(mirror / "mnist" / source.name)
    (fake / "t10k-labels-idx1-ubyte.gz").unlink()
    write_idx(fake / "t10k-labels-idx1-ubyte.gz", np.zeros(10000))
    with pytest.raises(DatasetError, match="t10k-labels-idx1-ubyte.gz: checksum mismatch"):
        datasets.fetch_builtin("mnist", tmp_path / "raw" / "manifest.json", mirror=str(tmp_path / "mirror"))
    assert not (tmp_path / "raw" / "manifest.json").exists()


def test_a_valid_but_different_file_swapped_in_after_fetch_is_refused(tmp_path, mirror):
    fake = tmp_path / "mirror" / "mnist"
    fake.mkdir(parents=True)
    for source in datasets.BUILTIN_DATASETS["mnist"].mirror.files:
        (fake / source.name).write_bytes((mirror / "mnist" / source.name).read_bytes())
    datasets.fetch_builtin("mnist", tmp_path / "manifest.json", mirror=str(tmp_path / "mirror"))
    labels = fake / "t10k-labels-idx1-ubyte.gz"
    write_idx(labels, np.zeros(10000))  # a well-formed IDX file: only the checksum can tell
    with pytest.raises(DatasetError, match="t10k-labels-idx1-ubyte.gz: checksum mismatch"):
        datasets.prepare(tmp_path / "manifest.json", tmp_path / "mnist.npz")
    assert not (tmp_path / "mnist.npz").exists()


# --------------------------------------------------------------------------- the prepared file


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


class LeavesAMark:
    """An object whose unpickling touches a file: what a malicious .npz could carry."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


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
