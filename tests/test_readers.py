"""The parsers of files from elsewhere: IDX, CIFAR-10's binary release, images and image folders."""

import gzip
import io
import stat
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tinyml_quant import readers
from tinyml_quant.datasets import DatasetError

from sources import (
    SOURCES,
    cifar10_members,
    image_bytes,
    image_folder_members,
    write_gzip,
    write_idx,
    write_tar,
    write_zip,
)


def test_idx_round_trip(tmp_path):
    array = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    write_idx(tmp_path / "x.gz", array)
    np.testing.assert_array_equal(readers.read_idx(tmp_path / "x.gz"), array)


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


@pytest.mark.parametrize("kind", SOURCES)
def test_train_and_test_images_of_different_sizes_are_refused_naming_one_file_of_each(tmp_path, kind):
    # Each split is of one size on its own, so only comparing across splits stops this before training.
    members = image_folder_members(splits=("train",)) + image_folder_members(splits=("test",), size=(10, 10))
    source = SOURCES[kind](tmp_path, members)
    with pytest.raises(DatasetError) as refused:
        readers.read_image_folder(source)
    assert str(refused.value) == (
        f"{source}: images differ in size or channels: 'train/cat/0.png' is (8, 8, 3), 'test/cat/0.png' is "
        "(10, 10, 3); set image_size (and channels) for this dataset to convert them"
    )
    resized, _ = readers.read_image_folder(source, image_size=(8, 8))
    assert resized["train"][0].shape == resized["test"][0].shape == (4, 8, 8, 3)


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


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_a_member_climbing_with_dots_is_refused_where_it_fits_the_layout(tmp_path, kind):
    # train/../9.png has the three parts of <split>/<class>/<image>: the layout check passes it, and
    # only the '..' check keeps it from being read as an image of a class named '..'.
    source = SOURCES[kind](tmp_path, image_folder_members() + [("train/../9.png", image_bytes())])
    with pytest.raises(DatasetError) as refused:
        readers.read_image_folder(source)
    assert str(refused.value) == f"{source}: unsafe archive member 'train/../9.png': '..' in the path"


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
