"""Fetch a dataset's files and verify them: download (official files), an offline mirror, or your own files;
and the published trained models the study imports, likewise.

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

A published model (``PUBLISHED_MODELS``, config ``trained_models.<name>.published``)
is a set of files pinned to one commit of its publisher's repository, each
checked by SHA-256: downloaded from that commit, or read where they are in an
offline model mirror laid out like ``../shared/models``
(``fetch_published_model``).
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
    test_images: int  # in the test split of either source (the official test set's size)


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
        test_images=10_000,
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
        test_images=10_000,
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
    beside = Path(workflow_folder) / MIRROR_BESIDE_WORKFLOW
    return _chosen_mirror(MIRROR_VARIABLE, configured, beside, ("mnist",), environ)


def _chosen_mirror(variable, configured, beside, folders, environ=None):
    """``variable`` when set and not empty, else ``configured`` when not empty, else ``beside`` when it holds one
    of ``folders``, else ""."""
    environ = os.environ if environ is None else environ
    chosen = environ.get(variable, "").strip() or configured
    if chosen:
        return chosen
    return str(beside.resolve()) if any((beside / folder).is_dir() for folder in folders) else ""


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


def download(urls, destination, offline_hint=f"set data.mirror or {MIRROR_VARIABLE} to a local mirror"):
    """Download the first of ``urls`` that answers to ``destination`` (atomically); return that URL.

    ``offline_hint`` says, in the error when none answers, which mirror setting would do without.
    """
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
        f"could not download {Path(destination).name}: " + "; ".join(errors) + f" (offline? {offline_hint})"
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


def _fetched(expected, mirror_folder, download_folder, urls, what, offline_hint=None):
    """The manifest record of one verified file: read in ``mirror_folder`` (when not None), or downloaded
    from the first of ``urls`` that answers into ``download_folder`` (a cached download of the right checksum
    is kept). A file that does not match raises DatasetError naming it, and a bad download is deleted.
    """
    if mirror_folder is not None:
        path = Path(mirror_folder) / expected.name
        if not path.is_file():
            raise DatasetError(f"{path}: not found in the {what} mirror {Path(mirror_folder).parent}")
        origin = str(path.resolve())
    else:
        path = Path(download_folder) / expected.name
        if not (path.is_file() and sha256_of(path, expected.checksum_of_content) == expected.sha256):
            hint = {} if offline_hint is None else {"offline_hint": offline_hint}
            origin = download([base + expected.name for base in urls], path, **hint)
        else:
            origin = f"cached download {path}"
    try:
        verify(path, expected)
    except DatasetError:
        if mirror_folder is None:
            path.unlink()  # the download that does not match
        raise
    return _file_record(path, expected.sha256, expected.checksum_of, verified=True, origin=origin)


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
    files = {
        expected.name: _fetched(
            expected,
            Path(mirror, source.mirror_folder) if mirror else None,
            Path(download_folder) / dataset,
            source.urls,
            what="dataset",
        )
        for expected in source.files
    }
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


# --------------------------------------------------------------------------- published models


@dataclass(frozen=True)
class PublishedModel:
    """A trained model published with its files at one commit of its publisher's repository.

    ``keras_file`` is what the study imports (``trained_models.<name>.published``); ``int8_file``, where
    the publisher has one, its own int8 ``.tflite``, which the study evaluates as it is; ``fp32_file`` its
    own float32 ``.tflite`` (the independent truth the import is tested against). ``files`` pins every
    one of them by SHA-256.
    """

    description: str  # what tables call it
    origin: str  # the repository, commit and folder, as records and tables say it
    files: tuple
    urls: tuple  # base URLs at the pinned commit, tried in order
    mirror_folder: str  # the files' folder in the model mirror
    keras_file: str
    int8_file: str = ""
    fp32_file: str = ""


# MLPerf Tiny's image-classification reference model (Apache License 2.0): the ResNet-8 its train.py
# trained on the official CIFAR-10, with its float32 and int8 .tflite files (their last change: commit 1bbcf37).
_MLPERF_TINY_COMMIT = "1afd2c9820f795965a6134facd0b4dfae41ef23f"
_MLPERF_TINY_FOLDER = "benchmark/training/image_classification/trained_models"
PUBLISHED_MODELS = {
    "mlperf_tiny_resnet8": PublishedModel(
        description="MLPerf Tiny's pretrained ResNet-8",
        origin=f"mlcommons/tiny commit {_MLPERF_TINY_COMMIT[:7]}, {_MLPERF_TINY_FOLDER}",
        files=(
            SourceFile("pretrainedResnet.h5", "5f938a8eea605438cc7360aa13c987bc6d7bd0c8d931b2917361ae7ae4eeda2f"),
            SourceFile("pretrainedResnet.tflite", "b5c0046d6e0328b4956afd6baa29555a29b1f1c65bdd45aaed75b7cd484d9f79"),
            SourceFile(
                "pretrainedResnet_quant.tflite", "3c002613d1b2475eb51dd78dfb85a546c8ae658dee71cf6ade43b022fe205415"
            ),
        ),
        urls=(f"https://raw.githubusercontent.com/mlcommons/tiny/{_MLPERF_TINY_COMMIT}/{_MLPERF_TINY_FOLDER}/",),
        mirror_folder="mlperf-tiny-resnet8",
        keras_file="pretrainedResnet.h5",
        int8_file="pretrainedResnet_quant.tflite",
        fp32_file="pretrainedResnet.tflite",
    ),
}

MODEL_MIRROR_VARIABLE = "TINYML_MODEL_MIRROR"
# The offline model mirror's place beside a checkout of the workflow, as on the machines this project is built on.
MODEL_MIRROR_BESIDE_WORKFLOW = Path("..", "shared", "models")
MODEL_DOWNLOADS = "models"  # the published models' sub-folder of the download cache


def model_mirror(configured, workflow_folder, environ=None):
    """The offline mirror to read the published models from, or "" to download them from their pinned commits.

    In order, as ``dataset_mirror``: ``TINYML_MODEL_MIRROR`` when set and not
    empty; ``configured`` (``data.model_mirror``) when not empty;
    ``../shared/models`` beside ``workflow_folder`` when it holds a published
    model's folder.
    """
    folders = [model.mirror_folder for model in PUBLISHED_MODELS.values()]
    beside = Path(workflow_folder) / MODEL_MIRROR_BESIDE_WORKFLOW
    return _chosen_mirror(MODEL_MIRROR_VARIABLE, configured, beside, folders, environ)


def fetch_published_model(name, manifest_path, mirror="", download_folder="data/downloads"):
    """Fetch and verify a published model's files; write and return its manifest.

    As ``fetch_builtin``: from a mirror, files are verified where they are;
    online, they are downloaded from the pinned commit into
    ``download_folder/models/<name>/`` and verified. A file whose checksum
    differs is refused, named, before any manifest is written.
    """
    if name not in PUBLISHED_MODELS:
        raise DatasetError(f"unknown published model {name!r}; published: {sorted(PUBLISHED_MODELS)}")
    model = PUBLISHED_MODELS[name]
    files = {
        expected.name: _fetched(
            expected,
            Path(mirror, model.mirror_folder) if mirror else None,
            Path(download_folder) / MODEL_DOWNLOADS / name,
            model.urls,
            what="model",
            offline_hint=f"set data.model_mirror or {MODEL_MIRROR_VARIABLE} to a local mirror",
        )
        for expected in model.files
    }
    manifest = {
        "published_model": name,
        "description": model.description,
        "origin": model.origin,
        "source": f"mirror {Path(mirror).resolve()}" if mirror else "download from the pinned commit",
        "keras_file": model.keras_file,
        "int8_file": model.int8_file,
        "files": files,
    }
    write_json(manifest_path, manifest)
    return manifest


def published_path(manifest, name):
    """The path of the file ``name`` of a published model's manifest, its checksum checked again."""
    if name not in manifest["files"]:
        raise DatasetError(f"{manifest['published_model']}: no file {name!r} (files: {sorted(manifest['files'])})")
    return verified_path(manifest["files"][name])
