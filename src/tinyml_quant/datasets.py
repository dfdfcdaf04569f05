"""Datasets: fetch (download, offline mirror or your own files), verify, parse and prepare.

Built-in datasets have two sources each:

* online, the official files: MNIST's four IDX ``.gz`` files and CIFAR-10's
  *binary* release;
* offline, a mirror folder laid out like ``../shared/datasets``: MNIST as the
  same IDX files, CIFAR-10 as an image-folder archive ``train|test/<class>/*.jpg``
  (JPEG, so its pixels differ slightly from the official release).

Your own datasets are image folders (``image_folders`` in the config): a
``.tar.gz``/``.tgz`` or ``.zip`` archive (a local path or a URL) or a local
folder, laid out ``train/<class>/<image>`` and, optionally, ``test/...``.

``fetch`` verifies a source and writes a manifest naming where every file is
and its checksum; downloads go to a shared cache folder, local files are read
where they are. ``prepare`` verifies them again, parses them (``readers``) and
writes one ``.npz`` per dataset: uint8 NHWC images, integer labels, class
names and a provenance record.
"""

import gzip
import hashlib
import json
import logging
import shutil
import urllib.parse
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .files import atomic_path, read_json, write_json
from .readers import DatasetError, read_cifar10_binary, read_idx, read_image_folder, source_kind

__all__ = ["DatasetError"]

logger = logging.getLogger(__name__)


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

    @property
    def checksum_of(self):
        """What ``sha256`` is of, as manifests and errors say it."""
        return "decompressed content" if self.checksum_of_content else "file"


@dataclass(frozen=True)
class Source:
    variant: str  # says which pixels results came from, e.g. "jpeg mirror"
    format: str  # "idx", "cifar_binary" or "image_folder"
    files: tuple
    urls: tuple = ()  # base URLs tried in order (online sources only)
    mirror_folder: str = ""  # sub-folder of the mirror folder (mirror sources only)


@dataclass(frozen=True)
class BuiltinDataset:
    class_names: tuple
    online: Source
    mirror: Source


_MNIST_FILES = (
    SourceFile("train-images-idx3-ubyte.gz", "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db", True),
    SourceFile("train-labels-idx1-ubyte.gz", "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5", True),
    SourceFile("t10k-images-idx3-ubyte.gz", "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7", True),
    SourceFile("t10k-labels-idx1-ubyte.gz", "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2", True),
)

# The one list of built-in dataset names.
BUILTIN_DATASETS = {
    "mnist": BuiltinDataset(
        class_names=tuple(str(digit) for digit in range(10)),
        online=Source(
            variant="official",
            format="idx",
            files=_MNIST_FILES,
            urls=(
                "https://storage.googleapis.com/cvdf-datasets/mnist/",
                "https://ossci-datasets.s3.amazonaws.com/mnist/",
            ),
        ),
        mirror=Source(variant="official", format="idx", files=_MNIST_FILES, mirror_folder="mnist"),
    ),
    "cifar10": BuiltinDataset(
        class_names=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
        online=Source(
            variant="official binary",
            format="cifar_binary",
            files=(
                SourceFile(
                    "cifar-10-binary.tar.gz", "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd"
                ),
            ),
            urls=("https://www.cs.toronto.edu/~kriz/",),
        ),
        mirror=Source(
            variant="jpeg mirror",
            format="image_folder",
            files=(
                SourceFile("cifar10-jpeg.tar.gz", "45b041e867f5a40f79bfde38d3dd1fd511103d50068c1afecf6445e25234d4db"),
            ),
            mirror_folder="cifar10-jpeg",
        ),
    ),
}

MIRROR_VARIABLE = "TINYML_DATASET_MIRROR"


def seeded_subset(count, size, seed):
    """``size`` of ``count`` indices, chosen with ``seed`` and sorted; all of them when ``size`` is None or larger.

    The one way this project draws a sample: subsets of a dataset, calibration
    images, the images of the layer-error and TFLite Micro comparisons.
    """
    if size is None or size >= count:
        return np.arange(count)
    if size < 1:
        raise ValueError(f"a subset needs at least one item, got {size}")
    return np.sort(np.random.default_rng(seed).permutation(count)[:size])


# --------------------------------------------------------------------------- fetch


def sha256_of(path, content=False):
    """SHA-256 of a file, or of its gzip-decompressed content."""
    digest = hashlib.sha256()
    opener = gzip.open if content else open
    try:
        with opener(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except (EOFError, OSError, zlib.error) as error:
        raise DatasetError(f"{path}: cannot read ({error}); the file is truncated or corrupt") from error
    return digest.hexdigest()


def folder_digest(folder):
    """SHA-256 over every file of ``folder`` (relative path and content), in name order."""
    digest = hashlib.sha256()
    for path in sorted(item for item in Path(folder).rglob("*") if item.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + sha256_of(path).encode())
    return digest.hexdigest()


def verify(path, expected):
    """Raise DatasetError naming ``path`` unless its checksum is the expected one."""
    actual = sha256_of(path, content=expected.checksum_of_content)
    if actual != expected.sha256:
        raise DatasetError(
            f"{path}: checksum mismatch for the {expected.checksum_of}: sha256 {actual}, expected {expected.sha256}"
        )
    return actual


def is_url(source):
    return urllib.parse.urlparse(str(source)).scheme in ("http", "https", "ftp")


# Seconds a download may wait for the server to answer (each read): a silent server is an error, not a hang.
DOWNLOAD_TIMEOUT_S = 60


def download(urls, destination):
    """Download the first of ``urls`` that answers to ``destination`` (atomically); return that URL."""
    errors = []
    for url in urls:
        try:
            logger.info("downloading %s", url)
            with (
                atomic_path(destination) as temporary,
                urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response,
                open(temporary, "wb") as out,
            ):
                shutil.copyfileobj(response, out)
            return url
        except OSError as error:
            errors.append(f"{url}: {error}")
    raise DatasetError(
        f"could not download {Path(destination).name}: "
        + "; ".join(errors)
        + f" (offline? set data.mirror or {MIRROR_VARIABLE} to a local mirror)"
    )


def _file_record(path, sha256, checksum_of, verified, origin):
    """A manifest's record of one fetched file; ``checksum_of`` says what ``sha256`` is of."""
    return {
        "path": str(Path(path).resolve()),
        "sha256": sha256,
        "checksum_of": checksum_of,
        "verified": verified,
        "origin": origin,
    }


def fetch_builtin(dataset, manifest_path, mirror="", download_folder="data/downloads"):
    """Fetch and verify a built-in dataset's files; write and return its manifest.

    From a mirror, files are verified where they are; online, they are
    downloaded into ``download_folder/<dataset>/`` (a cache shared by studies)
    and verified. Each file is verified before the manifest is written, so a
    bad file never yields one; a bad download is deleted.
    """
    if dataset not in BUILTIN_DATASETS:
        raise DatasetError(f"unknown built-in dataset {dataset!r}; built-in: {sorted(BUILTIN_DATASETS)}")
    source = BUILTIN_DATASETS[dataset].mirror if mirror else BUILTIN_DATASETS[dataset].online
    files = {}
    for expected in source.files:
        if mirror:
            path = Path(mirror) / source.mirror_folder / expected.name
            if not path.is_file():
                raise DatasetError(f"{path}: not found in the dataset mirror {mirror}")
            origin = str(path.resolve())
        else:
            path = Path(download_folder) / dataset / expected.name
            if not (path.is_file() and sha256_of(path, expected.checksum_of_content) == expected.sha256):
                origin = download([base + expected.name for base in source.urls], path)
            else:
                origin = f"cached download {path}"
        try:
            verify(path, expected)
        except DatasetError:
            if not mirror:
                path.unlink()  # the download that does not match
            raise
        files[expected.name] = _file_record(path, expected.sha256, expected.checksum_of, verified=True, origin=origin)
    manifest = {
        "dataset": dataset,
        "source": f"mirror {Path(mirror).resolve()}" if mirror else "official download",
        "variant": source.variant,
        "format": source.format,
        "files": files,
    }
    write_json(manifest_path, manifest)
    return manifest


def fetch_image_folder(dataset, source, manifest_path, sha256=None, download_folder="data/downloads"):
    """Fetch and verify your own image folder (archive path or URL, or a folder); write its manifest.

    With ``sha256`` the archive must match it; without, its checksum is only
    recorded, and a URL without one is marked unverified in the results.
    """
    if is_url(source):
        name = Path(urllib.parse.urlparse(source).path).name or "archive"
        path = Path(download_folder) / dataset / name
        source_kind(path)  # the URL must name an archive type
        if not (path.is_file() and sha256 and sha256_of(path) == sha256):
            download([source], path)
    else:
        path = Path(source)
        if not path.exists():
            raise DatasetError(f"{path}: image folder source of dataset {dataset!r} not found")
    kind = source_kind(path)
    if kind == "folder":
        if sha256:
            raise DatasetError(f"image_folders.{dataset}.sha256: a checksum applies to an archive, {path} is a folder")
        actual, what = folder_digest(path), "folder digest"
    else:
        actual, what = sha256_of(path), "file"
    if sha256 and actual != sha256:
        if is_url(source):
            path.unlink()  # the download (or the cached copy) that does not match
        raise DatasetError(
            f"{path}: checksum mismatch: sha256 {actual}, expected {sha256} (image_folders.{dataset}.sha256)"
        )
    verified = bool(sha256) or not is_url(source)
    record = _file_record(path, actual, what, verified=verified, origin=str(source))
    manifest = {
        "dataset": dataset,
        "source": str(source),
        "variant": "image folder" + ("" if verified else ", unverified download"),
        "format": "image_folder",
        "files": {path.name: record},
        "sha256_given": bool(sha256),
    }
    write_json(manifest_path, manifest)
    return manifest


# --------------------------------------------------------------------------- prepare


def check_split(images, labels, num_classes, where):
    """Raise DatasetError unless ``images`` are uint8 NHWC with one label in ``0..num_classes-1`` each."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise DatasetError(f"{where}: images are {images.dtype} {images.shape}, expected uint8 NHWC, 1 or 3 channels")
    if len(images) != len(labels):
        raise DatasetError(f"{where}: {len(images)} images but {len(labels)} labels")
    if len(labels) == 0:
        raise DatasetError(f"{where}: no images")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise DatasetError(f"{where}: labels outside 0..{num_classes - 1} ({labels.min()}..{labels.max()})")


def _verified_path(record):
    path = Path(record["path"])
    if record["checksum_of"] == "folder digest":
        actual = folder_digest(path)
    else:
        actual = sha256_of(path, content=record["checksum_of"] == "decompressed content")
    if actual != record["sha256"]:
        raise DatasetError(
            f"{path}: checksum mismatch: sha256 {actual}, expected {record['sha256']} (changed since fetch)"
        )
    return path


def prepare(
    manifest_path,
    output_path,
    max_train_images=None,
    max_test_images=None,
    subset_seed=0,
    image_folder=None,
):
    """Parse a fetched dataset into one ``.npz`` of uint8 NHWC arrays; return its provenance.

    Checksums are verified again here, so a file replaced after the fetch is
    caught before it reaches training. ``image_folder`` holds an image folder's
    settings (``class_names``, ``channels``, ``image_size``, ``test_fraction``,
    ``split_seed``); a folder without ``test/`` gets its test split carved from
    ``train/`` with them.
    """
    manifest = read_json(manifest_path)
    dataset = manifest["dataset"]
    paths = {name: _verified_path(record) for name, record in manifest["files"].items()}
    settings = image_folder or {}
    notes = []
    if dataset in BUILTIN_DATASETS:
        class_names = list(BUILTIN_DATASETS[dataset].class_names)
    else:
        class_names = settings.get("class_names")
    if manifest["format"] == "idx":
        splits = {}
        for split, prefix in (("train", "train"), ("test", "t10k")):
            images = read_idx(paths[f"{prefix}-images-idx3-ubyte.gz"])
            labels = read_idx(paths[f"{prefix}-labels-idx1-ubyte.gz"]).astype(np.int64)
            if images.ndim != 3 or labels.ndim != 1:
                raise DatasetError(f"{manifest_path}: {prefix} IDX files are not images and labels")
            splits[split] = (images[..., None], labels)
    elif manifest["format"] == "cifar_binary":
        splits = read_cifar10_binary(next(iter(paths.values())), len(class_names))
    elif manifest["format"] == "image_folder":
        splits, class_names = read_image_folder(
            next(iter(paths.values())), class_names, settings.get("channels"), settings.get("image_size")
        )
    else:
        raise DatasetError(f"{manifest_path}: unknown format {manifest['format']!r}")
    if splits.get("test") is None:
        fraction, seed = settings.get("test_fraction", 0.2), settings.get("split_seed", 0)
        images, labels = splits["train"]
        test_index = seeded_subset(len(labels), max(1, int(round(fraction * len(labels)))), seed)
        train_mask = np.ones(len(labels), bool)
        train_mask[test_index] = False
        splits = {"train": (images[train_mask], labels[train_mask]), "test": (images[test_index], labels[test_index])}
        notes.append(f"test carved from train ({fraction:.0%}, seed {seed})")
    for split, (images, labels) in splits.items():
        check_split(images, labels, len(class_names), f"{manifest_path} ({split})")

    train_index = seeded_subset(len(splits["train"][1]), max_train_images, subset_seed)
    test_index = seeded_subset(len(splits["test"][1]), max_test_images, subset_seed + 1)
    x_train, y_train = (array[train_index] for array in splits["train"])
    x_test, y_test = (array[test_index] for array in splits["test"])
    variant = ", ".join([manifest["variant"], *notes])
    provenance = {
        "dataset": dataset,
        "name": f"{dataset} ({variant})",
        "source": manifest["source"],
        "variant": variant,
        "files": manifest["files"],
        "train_images": int(len(y_train)),
        "test_images": int(len(y_test)),
        "subset_seed": subset_seed if (max_train_images or max_test_images) else None,
        "image_shape": list(x_train.shape[1:]),
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
            x_train=x_train,
            y_train=y_train,
            x_test=x_test,
            y_test=y_test,
            class_names=np.asarray(class_names, dtype=str),
            provenance=np.asarray(json.dumps(provenance)),
        )


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
    """Load a prepared dataset and check it; ``allow_pickle=False`` so the file can hold no code."""
    try:
        with np.load(path, allow_pickle=False) as arrays:
            dataset = PreparedDataset(
                x_train=arrays["x_train"],
                y_train=arrays["y_train"],
                x_test=arrays["x_test"],
                y_test=arrays["y_test"],
                class_names=[str(name) for name in arrays["class_names"]],
                provenance=json.loads(str(arrays["provenance"])),
            )
    except (OSError, ValueError, KeyError) as error:
        raise DatasetError(f"{path}: not a prepared dataset ({error})") from error
    for split in ("train", "test"):
        check_split(
            getattr(dataset, f"x_{split}"),
            getattr(dataset, f"y_{split}"),
            len(dataset.class_names),
            f"{path} ({split})",
        )
    return dataset
