"""Fetch a dataset's files and verify them: download (official files), an offline mirror, or your own files.

Built-in datasets have two sources each:

* online, the official files: MNIST's four IDX ``.gz`` files and CIFAR-10's
  *binary* release;
* offline, a mirror folder laid out like ``../shared/datasets``: MNIST as the
  same IDX files, CIFAR-10 as an image-folder archive ``train|test/<class>/*.jpg``
  (JPEG, so its pixels differ slightly from the official release).

Your own datasets are image folders (``image_folders`` in the config): a
``.tar.gz``/``.tgz`` or ``.zip`` archive (a local path or a URL) or a local
folder, laid out ``train/<class>/<image>`` and, optionally, ``test/...``.

``fetch_builtin`` and ``fetch_image_folder`` verify a source and write a
manifest naming where every file is and its checksum; downloads go to a cache
folder shared by studies, local files are read where they are. Parsing them is
``datasets.prepare``'s job.
"""

import gzip
import hashlib
import logging
import os
import shutil
import urllib.parse
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

from .files import atomic_path, write_json
from .readers import DatasetError, source_kind

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
    # What the pixels are, where the variant's short name does not say it (a figure's title shows it).
    description: str = ""


@dataclass(frozen=True)
class BuiltinDataset:
    class_names: tuple
    online: Source
    mirror: Source
    train_images: int  # in the training split of either source, so settings can be checked before any job


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
        train_images=60_000,
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
            description="the JPEG quality-75 copy of CIFAR-10",
        ),
        train_images=50_000,
    ),
}


def source_description(dataset, dataset_name):
    """What a built-in dataset's pixels are, from the name results give it (``"cifar10 (jpeg mirror)"``); "" if unsaid.

    The name is ``"<dataset> (<variant>[, notes])"`` (``datasets.prepare``), so the source is the one whose
    variant opens the parenthesis.
    """
    builtin = BUILTIN_DATASETS.get(dataset)
    opening = f"{dataset} ("
    if builtin is None or not dataset_name.startswith(opening):
        return ""
    variant = dataset_name.removeprefix(opening).split(",")[0].removesuffix(")")
    for source in (builtin.online, builtin.mirror):
        if source.variant == variant:
            return source.description
    return ""


MIRROR_VARIABLE = "TINYML_DATASET_MIRROR"
# The offline mirror's place beside a checkout of the workflow, as on the machines this project is built on.
MIRROR_BESIDE_WORKFLOW = Path("..", "shared", "datasets")


def dataset_mirror(configured, workflow_folder, environ=None):
    """The offline mirror to read the built-in datasets from, or "" to download the official files.

    In order: ``TINYML_DATASET_MIRROR`` when set and not empty; ``configured``
    (``data.mirror``) when not empty; ``../shared/datasets`` beside
    ``workflow_folder`` when it holds MNIST's folder.
    """
    environ = os.environ if environ is None else environ
    chosen = environ.get(MIRROR_VARIABLE, "").strip() or configured
    if chosen:
        return chosen
    beside = Path(workflow_folder) / MIRROR_BESIDE_WORKFLOW
    return str(beside.resolve()) if (beside / "mnist").is_dir() else ""


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


def verified_path(record):
    """The path of a manifest's file record, after checking its checksum again (a file changed since the fetch)."""
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
