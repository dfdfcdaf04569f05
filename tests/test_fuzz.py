"""Fuzzing the parsers of untrusted files with Hypothesis: any outcome but a result or the project's own
clear error (``DatasetError`` / ``ValueError`` naming the file) is a bug.

Each target starts from valid files and mutates them (bytes flipped, cut,
repeated, inserted; member names and sizes changed), which reaches the deep
parts of a parser that random bytes never do. The fast tier runs a few dozen
examples per target, derandomized (the same ones every run); the long runs
of the closing note use ``HYPOTHESIS_PROFILE=long`` (``make fuzz``).
"""

import gzip
import io
import os
import tarfile
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tinyml_quant import graph, readers
from tinyml_quant.datasets import DatasetError

settings.register_profile(
    "fast", max_examples=40, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.register_profile(
    "long", max_examples=5000, derandomize=False, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))


@st.composite
def mutated(draw, original):
    """``original`` bytes with a few random edits: flips, cuts, repeats and insertions."""
    content = bytearray(original)
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["flip", "cut", "repeat", "insert", "set"]))
        at = draw(st.integers(0, max(0, len(content) - 1)))
        if kind == "flip" and content:
            content[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "cut":
            del content[at : at + draw(st.integers(1, 64))]
        elif kind == "repeat":
            content[at:at] = content[at : at + draw(st.integers(1, 64))]
        elif kind == "insert":
            content[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif content:
            content[at] = draw(st.sampled_from([0x00, 0x7F, 0x80, 0xFF]))
    return bytes(content)


def image(format, mode="RGB", size=(6, 5)):
    buffer = io.BytesIO()
    Image.new(mode, size, 90).save(buffer, format=format)
    return buffer.getvalue()


SEED_IMAGES = [image("PNG"), image("PNG", "L"), image("JPEG"), image("BMP"), image("PNG", "P")]


@given(st.sampled_from(SEED_IMAGES).flatmap(mutated), st.sampled_from([None, 1, 3]))
def test_decode_image_gives_pixels_or_a_clear_error(content, channels):
    try:
        pixels = readers.decode_image(content, "fuzz.png", channels=channels, image_size=(4, 4))
    except DatasetError as error:
        assert "fuzz.png" in str(error)
    else:
        assert pixels.dtype == np.uint8 and pixels.shape[:2] == (4, 4) and pixels.shape[2] in (1, 3)


def _idx(array):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


@given(st.sampled_from([_idx(np.arange(24).reshape(2, 3, 4)), _idx(np.arange(7))]).flatmap(mutated))
def test_read_idx_gives_an_array_or_a_clear_error(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("idx") / "x.gz"
    path.write_bytes(gzip.compress(content))
    try:
        array = readers.read_idx(path)
    except DatasetError as error:
        assert "x.gz" in str(error)
    else:
        assert array.dtype == np.uint8 and array.size == len(content) - 4 - 4 * content[3]


@given(mutated(gzip.compress(_idx(np.arange(60).reshape(3, 4, 5)))))
def test_read_idx_survives_a_damaged_gzip_stream(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("idx") / "x.gz"
    path.write_bytes(content)
    try:
        readers.read_idx(path)
    except DatasetError as error:
        assert "x.gz" in str(error)


MEMBER_NAMES = st.sampled_from(
    [
        "train/a/0.png",
        "train/b/1.png",
        "test/a/2.png",
        "test/b/3.jpg",
        "../escape.png",
        "/absolute.png",
        "train/../../x.png",
        "train/../9.png",  # fits <split>/<class>/<image>: only the '..' check refuses it
        "C:/windows.png",
        "train\\a\\back.png",
        "train/a/",
        "train/",
        "x",
        "train/a/deep/er.png",
        "",
        "train/a/\x00.png",
        "parts/train/a/0.png",
    ]
)
MEMBERS = st.lists(st.tuples(MEMBER_NAMES, st.sampled_from(SEED_IMAGES + [b"", b"not an image"])), max_size=8)


def _tar(members, link_kind=None):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in members:
            info = tarfile.TarInfo(name or "unnamed")
            if link_kind is not None and name.endswith("1.png"):
                info.type, info.linkname = link_kind, "/etc/passwd"
                archive.addfile(info)
                continue
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _zip(members):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members:
            archive.writestr(name or "unnamed", content)
    return buffer.getvalue()


def _read_folder_source(path):
    try:
        splits, classes = readers.read_image_folder(path)
    except DatasetError as error:
        assert path.name in str(error)
    else:
        images, labels = splits["train"]
        assert images.dtype == np.uint8 and len(images) == len(labels) and labels.max() < len(classes)
        assert ".." not in classes, classes


@given(MEMBERS, st.sampled_from([None, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.FIFOTYPE]))
def test_tar_image_folders_give_images_or_a_clear_error(tmp_path_factory, members, link_kind):
    path = tmp_path_factory.mktemp("tar") / "fuzz.tar.gz"
    path.write_bytes(_tar(members, link_kind))
    _read_folder_source(path)


@given(MEMBERS)
def test_zip_image_folders_give_images_or_a_clear_error(tmp_path_factory, members):
    path = tmp_path_factory.mktemp("zip") / "fuzz.zip"
    path.write_bytes(_zip(members))
    _read_folder_source(path)


VALID_MEMBERS = [
    (f"{split}/{kind}/{i}.png", SEED_IMAGES[0]) for split in ("train", "test") for kind in "ab" for i in (0, 1)
]


@given(st.sampled_from([_tar(VALID_MEMBERS), _zip(VALID_MEMBERS)]).flatmap(mutated))
def test_damaged_archives_give_images_or_a_clear_error(tmp_path_factory, content):
    suffix = ".zip" if content[:2] == b"PK" else ".tar.gz"
    path = tmp_path_factory.mktemp("damaged") / f"fuzz{suffix}"
    path.write_bytes(content)
    _read_folder_source(path)


def _cifar_archive(records=3):
    record = np.zeros((records, readers.CIFAR10_RECORD_BYTES), np.uint8)
    names = [f"b/data_batch_{i}.bin" for i in range(1, 6)] + ["b/test_batch.bin"]
    return _tar([(name, record.tobytes()) for name in names])


@given(mutated(_cifar_archive()))
def test_cifar10_binary_reader_gives_arrays_or_a_clear_error(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("cifar") / "c.tar.gz"
    path.write_bytes(content)
    try:
        splits = readers.read_cifar10_binary(path)
    except DatasetError as error:
        assert "c.tar.gz" in str(error)
    else:
        assert splits["train"][0].shape[1:] == (32, 32, 3)


@pytest.fixture(scope="module")
def tflite_seeds():
    from tinyml_quant.architectures import build_model
    from tinyml_quant.conversion import convert

    model = build_model("custom", (8, 8, 1), 3, base_filters=2)
    images = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 1)).astype(np.float32)
    return [convert(model, scheme, images) for scheme in ("fp32", "int8", "float16")]


def test_the_graph_reader_gives_a_record_or_a_clear_error(tflite_seeds):
    @given(st.sampled_from(tflite_seeds).flatmap(mutated))
    def check(content):
        try:
            analysis = graph.analyze_graph(content)
        except ValueError as error:
            assert "model bytes" in str(error)
        else:
            assert analysis["macs"] >= 0 and analysis["parameters"] >= 0

    check()


def test_the_micro_reader_gives_a_measurement_or_a_clear_error(tflite_seeds):
    """TFLite Micro itself runs in a child process: a crash there must come back as data or a clear error."""
    from tinyml_quant.micro import STATUSES, measure_micro

    @settings(max_examples=min(settings().max_examples, 6))
    @given(st.sampled_from(tflite_seeds[:2]).flatmap(mutated))
    def check(content):
        try:
            result = measure_micro(content)
        except ValueError as error:
            assert "model bytes" in str(error)
        except RuntimeError as error:  # TFLM could not allocate it even in the largest arena
            assert "model bytes" in str(error)
        else:
            assert result["status"] in STATUSES

    check()
