"""Datasets: fetch (download or offline mirror), verify, parse and prepare.

Two sources per dataset:

* online, the official files: MNIST's four IDX ``.gz`` files and CIFAR-10's
  *binary* release, parsed with numpy (nothing downloaded is ever unpickled);
* offline, a mirror directory laid out like ``../shared/datasets``: MNIST as
  the same IDX files, CIFAR-10 as an image-folder archive
  ``train|test/<class>/*.jpg`` (JPEG, so its pixels differ slightly).

Both produce one prepared ``.npz`` per dataset: uint8 NHWC images, integer
labels, class names and a provenance record (source, variant, checksums).
"""

import gzip
import hashlib
import io
import json
import logging
import shutil
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from .files import atomic_path, read_json, write_json

logger = logging.getLogger(__name__)

MNIST_CLASSES = tuple(str(digit) for digit in range(10))
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip


@dataclass(frozen=True)
class SourceFile:
    """One file of a dataset source and how to verify it.

    ``sha256`` is of the file itself, or of its gzip-decompressed content when
    ``checksum_of_content`` is set: the MNIST mirror re-gzipped one official
    file, so only the decompressed bytes are comparable with the official ones.
    """

    name: str
    sha256: str
    checksum_of_content: bool = False


@dataclass(frozen=True)
class Source:
    variant: str  # says which pixels results came from, e.g. "jpeg mirror"
    format: str  # "idx", "cifar_binary" or "image_folder"
    files: tuple
    urls: tuple = ()  # base URLs tried in order (online sources only)
    mirror_folder: str = ""  # sub-folder of the mirror directory (mirror sources only)


_MNIST_FILES = (
    SourceFile("train-images-idx3-ubyte.gz", "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db", True),
    SourceFile("train-labels-idx1-ubyte.gz", "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5", True),
    SourceFile("t10k-images-idx3-ubyte.gz", "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7", True),
    SourceFile("t10k-labels-idx1-ubyte.gz", "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2", True),
)  # fmt: skip

ONLINE_SOURCES = {
    "mnist": Source(
        variant="official",
        format="idx",
        files=_MNIST_FILES,
        urls=(
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
        ),
    ),
    "cifar10": Source(
        variant="official binary",
        format="cifar_binary",
        files=(
            SourceFile(
                "cifar-10-binary.tar.gz",
                "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
            ),
        ),
        urls=("https://www.cs.toronto.edu/~kriz/",),
    ),
}

MIRROR_SOURCES = {
    "mnist": Source(variant="official", format="idx", files=_MNIST_FILES, mirror_folder="mnist"),
    "cifar10": Source(
        variant="jpeg mirror",
        format="image_folder",
        files=(
            SourceFile(
                "cifar10-jpeg.tar.gz",
                "45b041e867f5a40f79bfde38d3dd1fd511103d50068c1afecf6445e25234d4db",
            ),
        ),
        mirror_folder="cifar10-jpeg",
    ),
}

CLASS_NAMES = {"mnist": MNIST_CLASSES, "cifar10": CIFAR10_CLASSES}


class DatasetError(ValueError):
    """Bad dataset input: the message names the file (and archive member)."""


# --------------------------------------------------------------------------- fetch


def sha256_of(path, content=False):
    """SHA-256 of a file, or of its gzip-decompressed content."""
    digest = hashlib.sha256()
    opener = gzip.open if content else open
    try:
        with opener(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except (EOFError, OSError, gzip.BadGzipFile) as error:
        raise DatasetError(f"{path}: cannot read ({error}); the file is truncated or corrupt") from error
    return digest.hexdigest()


def verify(path, expected):
    """Raise DatasetError naming ``path`` unless its checksum is the expected one."""
    actual = sha256_of(path, content=expected.checksum_of_content)
    if actual != expected.sha256:
        what = "decompressed content" if expected.checksum_of_content else "file"
        raise DatasetError(
            f"{path}: checksum mismatch for the {what}: sha256 {actual}, expected {expected.sha256}"
        )
    return actual


def _download(urls, name, destination):
    errors = []
    for base in urls:
        url = base + name
        try:
            logger.info("downloading %s", url)
            with atomic_path(destination) as temporary:
                with urllib.request.urlopen(url, timeout=60) as response, open(temporary, "wb") as out:
                    shutil.copyfileobj(response, out)
            return url
        except OSError as error:
            errors.append(f"{url}: {error}")
    raise DatasetError(
        f"could not download {name}: " + "; ".join(errors)
        + " (offline? set data.mirror or TINYML_DATASET_MIRROR to a local mirror)"
    )


def fetch(dataset, destination_folder, mirror=""):
    """Fetch and verify a dataset's source files into ``destination_folder``.

    Returns the manifest (also written as ``manifest.json`` there), which
    records the source, the variant and every file's checksum. Each file is
    verified before the manifest is written, so a bad file never yields one.
    """
    if dataset not in CLASS_NAMES:
        raise DatasetError(f"unknown dataset {dataset!r}; known: {sorted(CLASS_NAMES)}")
    destination_folder = Path(destination_folder)
    source = (MIRROR_SOURCES if mirror else ONLINE_SOURCES)[dataset]
    files = {}
    for expected in source.files:
        destination = destination_folder / expected.name
        if mirror:
            origin = Path(mirror) / source.mirror_folder / expected.name
            if not origin.is_file():
                raise DatasetError(f"{origin}: not found in the dataset mirror {mirror}")
            verify(origin, expected)  # before copying: a bad mirror leaves nothing behind
            with atomic_path(destination) as temporary:
                shutil.copyfile(origin, temporary)
            origin_text = str(origin.resolve())
        else:
            origin_text = _download(source.urls, expected.name, destination)
            try:
                verify(destination, expected)
            except DatasetError:
                destination.unlink()
                raise
        files[expected.name] = {
            "sha256": expected.sha256,
            "checksum_of": "decompressed content" if expected.checksum_of_content else "file",
            "origin": origin_text,
        }
    manifest = {
        "dataset": dataset,
        "source": f"mirror {Path(mirror).resolve()}" if mirror else "official download",
        "variant": source.variant,
        "format": source.format,
        "files": files,
    }
    write_json(destination_folder / "manifest.json", manifest)
    return manifest


# --------------------------------------------------------------------------- parse

_IDX_DTYPES = {0x08: np.uint8}


def read_idx(path):
    """Parse a gzip-compressed IDX file (MNIST's format) into a numpy array."""
    try:
        with gzip.open(path, "rb") as handle:
            content = handle.read()
    except (EOFError, OSError, gzip.BadGzipFile) as error:
        raise DatasetError(f"{path}: cannot decompress ({error}); the file is truncated or corrupt") from error
    if len(content) < 4 or content[0:2] != b"\x00\x00" or content[2] not in _IDX_DTYPES:
        raise DatasetError(f"{path}: not an unsigned-byte IDX file (bad magic number)")
    rank = content[3]
    header_size = 4 + 4 * rank
    if len(content) < header_size:
        raise DatasetError(f"{path}: IDX header is truncated")
    shape = tuple(int.from_bytes(content[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank))
    expected = int(np.prod(shape))
    actual = len(content) - header_size
    if actual != expected:
        raise DatasetError(
            f"{path}: IDX header says shape {shape} ({expected} values) but the file holds {actual}"
        )
    return np.frombuffer(content, dtype=np.uint8, offset=header_size).reshape(shape)


def _check_member(archive, member):
    """Refuse archive members that tarfile's data filter would refuse, and absolute names it would strip."""
    if member.name.startswith("/"):
        raise DatasetError(f"{archive}: unsafe archive member {member.name!r}: absolute path")
    try:
        tarfile.data_filter(member, "/nonexistent-destination")
    except tarfile.FilterError as error:
        raise DatasetError(f"{archive}: unsafe archive member {member.name!r}: {error}") from error
    if not (member.isfile() or member.isdir()):
        raise DatasetError(f"{archive}: archive member {member.name!r} is not a regular file or folder")


def _open_tar(path):
    try:
        return tarfile.open(path, "r:gz")
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DatasetError(f"{path}: cannot open archive ({error}); the file is truncated or corrupt") from error


def _tar_members(path, archive):
    """Every member, each checked; reading the whole index also detects truncation."""
    try:
        members = archive.getmembers()
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DatasetError(f"{path}: cannot read archive ({error}); the file is truncated or corrupt") from error
    for member in members:
        _check_member(path, member)
    return members


def _read_member(path, archive, member):
    try:
        return archive.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DatasetError(f"{path}: cannot read member {member.name!r} ({error})") from error


def read_cifar10_binary(path):
    """Parse CIFAR-10's binary release (records of 1 label byte + 3072 CHW pixel bytes)."""
    record = 1 + 32 * 32 * 3
    splits = {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"]}
    with _open_tar(path) as archive:
        members = {PurePosixPath(m.name).name: m for m in _tar_members(path, archive) if m.isfile()}
        result = {}
        for split, names in splits.items():
            images, labels = [], []
            for name in names:
                if name not in members:
                    raise DatasetError(f"{path}: archive member {name} is missing")
                content = _read_member(path, archive, members[name])
                if len(content) % record:
                    raise DatasetError(f"{path}: member {name} is not a whole number of CIFAR-10 records")
                rows = np.frombuffer(content, dtype=np.uint8).reshape(-1, record)
                labels.append(rows[:, 0])
                images.append(rows[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            result[split] = (np.concatenate(images), np.concatenate(labels).astype(np.int64))
    if result["train"][1].max() >= len(CIFAR10_CLASSES) or result["test"][1].max() >= len(CIFAR10_CLASSES):
        raise DatasetError(f"{path}: labels outside 0..9")
    return result


def read_image_folder_archive(path, class_names=None, splits=("train", "test")):
    """Read a ``.tar.gz`` laid out as ``<split>/<class>/<image>`` without extracting it.

    Class ids follow ``class_names`` when given, otherwise the sorted folder
    names. Every image must have the size and channel count of the first one.
    Returns ``({split: (images uint8 NHWC, labels int64)}, class_names)``.
    """
    from PIL import Image, UnidentifiedImageError

    found = {split: {} for split in splits}
    with _open_tar(path) as archive:
        for member in _tar_members(path, archive):
            if not member.isfile():
                continue
            parts = PurePosixPath(member.name).parts
            if parts and parts[0] == ".":
                parts = parts[1:]
            if len(parts) != 3 or parts[0] not in splits:
                raise DatasetError(
                    f"{path}: member {member.name!r} is not laid out as <split>/<class>/<image> "
                    f"with split one of {list(splits)}"
                )
            split, class_name, _ = parts
            found[split].setdefault(class_name, []).append((member.name, _read_member(path, archive, member)))
    if class_names is None:
        class_names = sorted(set().union(*(set(classes) for classes in found.values())))
    class_ids = {name: index for index, name in enumerate(class_names)}
    expected_shape = None
    result = {}
    for split in splits:
        if not found[split]:
            raise DatasetError(f"{path}: split {split!r} holds no images")
        images, labels = [], []
        for class_name in sorted(found[split]):
            if class_name not in class_ids:
                raise DatasetError(
                    f"{path}: folder {split}/{class_name} is not a known class; known: {list(class_names)}"
                )
            for member_name, content in sorted(found[split][class_name]):
                try:
                    with Image.open(io.BytesIO(content)) as image:
                        pixels = np.asarray(image)
                except (UnidentifiedImageError, OSError) as error:
                    raise DatasetError(f"{path}: member {member_name!r} is not a readable image ({error})") from error
                if pixels.ndim == 2:
                    pixels = pixels[:, :, None]
                if expected_shape is None:
                    expected_shape = pixels.shape
                if pixels.shape != expected_shape or pixels.dtype != np.uint8:
                    raise DatasetError(
                        f"{path}: member {member_name!r} is {pixels.shape} {pixels.dtype}, "
                        f"expected {expected_shape} uint8 like the first image"
                    )
                images.append(pixels)
                labels.append(class_ids[class_name])
        result[split] = (np.stack(images), np.asarray(labels, dtype=np.int64))
    return result, list(class_names)


# --------------------------------------------------------------------------- prepare


def _subset(images, labels, limit, rng):
    if limit is None or limit >= len(labels):
        return images, labels
    keep = np.sort(rng.permutation(len(labels))[:limit])
    return images[keep], labels[keep]


def prepare(manifest_path, output_path, max_train_images=None, max_test_images=None, subset_seed=0):
    """Parse a fetched dataset into one ``.npz`` of uint8 NHWC arrays.

    Checksums are verified again here, so a raw file replaced after the fetch
    is caught before it reaches training.
    """
    manifest_path = Path(manifest_path)
    manifest = read_json(manifest_path)
    folder = manifest_path.parent
    dataset = manifest["dataset"]
    for name, record in manifest["files"].items():
        actual = sha256_of(folder / name, content=record["checksum_of"] == "decompressed content")
        if actual != record["sha256"]:
            raise DatasetError(f"{folder / name}: checksum mismatch: sha256 {actual}, expected {record['sha256']}")
    class_names = list(CLASS_NAMES[dataset])
    if manifest["format"] == "idx":
        splits = {}
        for split, prefix in (("train", "train"), ("test", "t10k")):
            images = read_idx(folder / f"{prefix}-images-idx3-ubyte.gz")
            labels = read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
            if len(images) != len(labels):
                raise DatasetError(f"{folder}: {prefix} images ({len(images)}) and labels ({len(labels)}) differ in count")
            splits[split] = (images[..., None], labels)
    elif manifest["format"] == "cifar_binary":
        splits = read_cifar10_binary(folder / next(iter(manifest["files"])))
    elif manifest["format"] == "image_folder":
        splits, class_names = read_image_folder_archive(folder / next(iter(manifest["files"])), class_names)
    else:
        raise DatasetError(f"{manifest_path}: unknown format {manifest['format']!r}")

    rng = np.random.default_rng(subset_seed)
    x_train, y_train = _subset(*splits["train"], max_train_images, rng)
    x_test, y_test = _subset(*splits["test"], max_test_images, rng)
    provenance = {
        "dataset": dataset,
        "name": f"{dataset} ({manifest['variant']})",
        "source": manifest["source"],
        "variant": manifest["variant"],
        "files": manifest["files"],
        "train_images": int(len(y_train)),
        "test_images": int(len(y_test)),
        "subset_seed": subset_seed if (max_train_images or max_test_images) else None,
    }
    save_prepared(output_path, x_train, y_train, x_test, y_test, class_names, provenance)
    logger.info("prepared %s: %d train, %d test images", provenance["name"], len(y_train), len(y_test))
    return provenance


def save_prepared(path, x_train, y_train, x_test, y_test, class_names, provenance):
    """Write a prepared dataset: uint8 NHWC images, integer labels, class names and a provenance record.

    ``provenance`` needs at least ``dataset`` (the dataset's key) and ``name``
    (what results call it, e.g. ``"cifar10 (jpeg mirror)"``).
    """
    with atomic_path(path) as temporary:
        np.savez(
            temporary,
            x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
            class_names=np.asarray(class_names), provenance=np.asarray(json.dumps(provenance)),
        )  # fmt: skip


@dataclass(frozen=True)
class PreparedDataset:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list
    provenance: dict

    @property
    def name(self):
        return self.provenance["name"]


def load_prepared(path):
    """Load a prepared dataset; ``allow_pickle=False`` so the file can hold no code."""
    try:
        with np.load(path, allow_pickle=False) as arrays:
            return PreparedDataset(
                x_train=arrays["x_train"], y_train=arrays["y_train"],
                x_test=arrays["x_test"], y_test=arrays["y_test"],
                class_names=[str(name) for name in arrays["class_names"]],
                provenance=json.loads(str(arrays["provenance"])),
            )  # fmt: skip
    except (OSError, ValueError, KeyError) as error:
        raise DatasetError(f"{path}: not a prepared dataset ({error})") from error
