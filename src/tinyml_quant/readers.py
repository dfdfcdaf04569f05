"""Readers of dataset files: IDX, CIFAR-10's binary release, and image folders.

Everything here reads files that came from somewhere else, so every reader
refuses, with a ``DatasetError`` naming the file and the member, what could
harm the machine or silently mislabel data:

* archive members that would land outside the folder they are read into
  (absolute names, ``..``, Windows drive letters), links, devices, and
  encrypted zip members; nothing is ever extracted to disk;
* decompression bombs: more than ``MAX_MEMBERS`` members, a member larger
  than ``MAX_MEMBER_BYTES``, more than ``MAX_TOTAL_BYTES`` in all, or an image
  whose header claims more than ``MAX_IMAGE_PIXELS`` pixels (refused before
  its pixels are decoded);
* anything that is not a PNG, JPEG or BMP image where images belong.

Nothing read is ever unpickled: IDX and CIFAR-10 records are parsed with numpy.
"""

import gzip
import io
import logging
import os
import stat
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, UnidentifiedImageError

logger = logging.getLogger(__name__)

MAX_MEMBERS = 1_000_000
MAX_MEMBER_BYTES = 64 << 20
MAX_TOTAL_BYTES = 16 << 30
MAX_IMAGE_PIXELS = 4096 * 4096
IMAGE_FORMATS = ("PNG", "JPEG", "BMP")
SPLITS = ("train", "test")
# Files operating systems leave in folders and archives; skipped, never read as images.
SYSTEM_FILES = (".DS_Store", "Thumbs.db", "desktop.ini")
SYSTEM_FOLDERS = ("__MACOSX",)


class DatasetError(ValueError):
    """Bad dataset input: the message names the file (and archive member)."""


# --------------------------------------------------------------------------- IDX (MNIST)

_IDX_UNSIGNED_BYTE = 0x08


def read_idx(path):
    """Parse a gzip-compressed IDX file of unsigned bytes (MNIST's format) into a numpy array."""
    try:
        with gzip.open(path) as handle:  # binary mode, gzip's default
            # One byte past the limit is enough to know a file is over it: a bomb is never inflated whole.
            content = handle.read(MAX_TOTAL_BYTES + 1)
    except (EOFError, OSError, zlib.error) as error:
        raise DatasetError(f"{path}: cannot decompress ({error}); the file is truncated or corrupt") from error
    if len(content) > MAX_TOTAL_BYTES:
        raise DatasetError(f"{path}: decompresses to more than {MAX_TOTAL_BYTES} bytes")
    if len(content) < 4 or content[0:2] != b"\x00\x00" or content[2] != _IDX_UNSIGNED_BYTE:
        raise DatasetError(f"{path}: not an unsigned-byte IDX file (bad magic number)")
    rank = content[3]
    header_size = 4 + 4 * rank
    if rank == 0 or len(content) < header_size:
        raise DatasetError(f"{path}: IDX header is truncated or has no dimensions")
    shape = tuple(int.from_bytes(content[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank))
    expected = int(np.prod(shape, dtype=object))
    actual = len(content) - header_size
    if actual != expected:
        raise DatasetError(f"{path}: IDX header says shape {shape} ({expected} values) but the file holds {actual}")
    return np.frombuffer(content, dtype=np.uint8, offset=header_size).reshape(shape)


# --------------------------------------------------------------------------- archives and folders


def _unsafe_name_reason(name):
    """Why a member name could escape the folder it is read into; None when it is safe."""
    if not name or "\x00" in name:
        return "empty name or NUL byte"
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    if "\\" in name:
        return "backslash in the name"
    if ".." in PurePosixPath(name).parts:
        return "'..' in the path"
    return None


@dataclass
class _Budget:
    """Counts members and bytes read from one source against the limits."""

    source: Path
    members: int = 0
    total_bytes: int = 0

    def count(self):
        """One more member; a folder is one and takes no bytes."""
        self.members += 1
        if self.members > MAX_MEMBERS:
            raise DatasetError(f"{self.source}: more than {MAX_MEMBERS} members; refused as a possible archive bomb")

    def take(self, name, size):
        """One more file, ``name``, of ``size`` bytes."""
        self.count()
        if size > MAX_MEMBER_BYTES:
            raise DatasetError(
                f"{self.source}: member {name!r} is {size} bytes, more than the {MAX_MEMBER_BYTES} allowed per file"
            )
        self.total_bytes += size
        if self.total_bytes > MAX_TOTAL_BYTES:
            raise DatasetError(f"{self.source}: more than {MAX_TOTAL_BYTES} bytes in all; refused as a possible bomb")


def source_kind(path):
    """``"tar"``, ``"zip"`` or ``"folder"`` for a dataset source path, from its name (and type)."""
    path = Path(path)
    if path.is_dir():
        return "folder"
    name = path.name.lower()
    if name.endswith((".tar.gz", ".tgz")):
        return "tar"
    if name.endswith(".zip"):
        return "zip"
    raise DatasetError(f"{path}: not a .tar.gz, .tgz or .zip archive, nor a folder")


def iter_files(path):
    """``(member name, bytes)`` of every regular file of a ``.tar.gz``/``.tgz``, ``.zip`` or folder.

    Also yields ``(folder name, None)`` for every folder, so callers can see
    empty ones. Members are checked (see the module docstring) before they are
    read; the whole source is never extracted.
    """
    kind = source_kind(path)
    budget = _Budget(Path(path))
    if kind == "tar":
        yield from _tar_files(Path(path), budget)
    elif kind == "zip":
        yield from _zip_files(Path(path), budget)
    else:
        yield from _folder_files(Path(path), budget)


def _tar_files(path, budget):
    try:
        # Streaming mode: one pass through the gzip stream, no index of every member kept.
        with tarfile.open(path, "r|gz") as archive:
            for member in archive:
                reason = _unsafe_name_reason(member.name)
                if reason:
                    raise DatasetError(f"{path}: unsafe archive member {member.name!r}: {reason}")
                if member.isdir():
                    budget.count()
                    yield member.name, None  # tarfile already strips a folder name's trailing "/"
                    continue
                if not member.isfile():
                    raise DatasetError(
                        f"{path}: unsafe archive member {member.name!r}: not a regular file or folder "
                        "(a link or a device)"
                    )
                budget.take(member.name, member.size)
                yield member.name, archive.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
        raise DatasetError(f"{path}: cannot read the archive ({error}); the file is truncated or corrupt") from error


def _zip_files(path, budget):
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                reason = _unsafe_name_reason(info.filename)
                if reason:
                    raise DatasetError(f"{path}: unsafe archive member {info.filename!r}: {reason}")
                # The Unix file type, where the archiver recorded one (0 otherwise: a plain file).
                kind = stat.S_IFMT(info.external_attr >> 16)
                if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
                    raise DatasetError(
                        f"{path}: unsafe archive member {info.filename!r}: not a regular file or folder "
                        "(a link or a device)"
                    )
                if info.flag_bits & 0x1:
                    raise DatasetError(f"{path}: archive member {info.filename!r} is encrypted")
                if info.is_dir():
                    budget.count()
                    yield info.filename.rstrip("/"), None
                    continue
                budget.take(info.filename, info.file_size)
                yield info.filename, archive.read(info)
    # UnicodeDecodeError: a member name flagged UTF-8 that is not (found by the long fuzz run).
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        EOFError,
        OSError,
        zlib.error,
        NotImplementedError,
        UnicodeDecodeError,
    ) as error:
        raise DatasetError(f"{path}: cannot read the archive ({error}); the file is truncated or corrupt") from error


def _folder_files(path, budget):
    # os.walk does not follow a linked folder; the loop below refuses one anyway.
    for folder, subfolders, files in os.walk(path):
        relative = Path(folder).relative_to(path)
        for name in sorted(subfolders):
            if (Path(folder) / name).is_symlink():
                raise DatasetError(f"{path}: {relative / name} is a link; only regular files and folders are read")
            budget.count()
            yield (relative / name).as_posix(), None
        subfolders.sort()
        for name in sorted(files):
            file_path = Path(folder) / name
            member = (relative / name).as_posix()
            details = file_path.lstat()
            if not stat.S_ISREG(details.st_mode):
                raise DatasetError(f"{path}: {member} is not a regular file (a link or a device)")
            budget.take(member, details.st_size)
            try:
                yield member, file_path.read_bytes()
            except OSError as error:
                raise DatasetError(f"{path}: cannot read {member} ({error})") from error


# --------------------------------------------------------------------------- CIFAR-10 binary release

CIFAR10_RECORD_BYTES = 1 + 32 * 32 * 3
CIFAR10_BATCHES = {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"]}


def read_cifar10_binary(path, num_classes=10):
    """Parse CIFAR-10's binary release (records of 1 label byte + 3072 CHW pixel bytes)."""
    wanted = {name for names in CIFAR10_BATCHES.values() for name in names}
    contents = {}
    for member, content in iter_files(path):
        name = PurePosixPath(member).name
        if content is not None and name in wanted:
            contents[name] = content
    result = {}
    for split, names in CIFAR10_BATCHES.items():
        images, labels = [], []
        for name in names:
            if name not in contents:
                raise DatasetError(f"{path}: archive member {name} is missing")
            if len(contents[name]) % CIFAR10_RECORD_BYTES:
                raise DatasetError(f"{path}: member {name} is not a whole number of CIFAR-10 records")
            rows = np.frombuffer(contents[name], dtype=np.uint8).reshape(-1, CIFAR10_RECORD_BYTES)
            labels.append(rows[:, 0].astype(np.int64))
            images.append(rows[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        result[split] = (np.concatenate(images), np.concatenate(labels))
        if result[split][1].max(initial=0) >= num_classes:
            raise DatasetError(f"{path}: {split} labels outside 0..{num_classes - 1}")
    return result


# --------------------------------------------------------------------------- images


def decode_image(content, where, channels=None, image_size=None):
    """A PNG, JPEG or BMP file's pixels as uint8 ``(height, width, channels)``.

    ``channels`` (1 or 3) converts (grey to colour repeats the grey value,
    colour to grey uses ITU-R 601-2 luma, PIL's "L" conversion); without it,
    grey images give 1 channel and colour ones 3 (alpha is dropped).
    ``image_size`` ``(height, width)`` resizes with PIL's bilinear filter, which
    widens its support when shrinking (antialiased). ``where`` names the image
    in errors.
    """
    try:
        with Image.open(io.BytesIO(content)) as image:
            if image.format not in IMAGE_FORMATS:
                raise DatasetError(f"{where}: a {image.format} image; only {', '.join(IMAGE_FORMATS)} are read")
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise DatasetError(
                    f"{where}: claims {width}x{height} pixels, more than {MAX_IMAGE_PIXELS}; refused as a possible "
                    "decompression bomb"
                )
            target = channels or (1 if image.mode in ("1", "L", "LA", "I", "I;16", "F") else 3)
            if image.mode in ("I", "I;16", "F"):
                raise DatasetError(f"{where}: {image.mode} (16-bit or float) images are not supported; use 8-bit")
            image = image.convert("L" if target == 1 else "RGB")
            if image_size is not None and (image.height, image.width) != tuple(image_size):
                image = image.resize((image_size[1], image_size[0]), Image.Resampling.BILINEAR)
            pixels = np.asarray(image, dtype=np.uint8)
    except DatasetError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise DatasetError(f"{where}: not a readable {', '.join(IMAGE_FORMATS)} image ({error})") from error
    return pixels[:, :, None] if pixels.ndim == 2 else pixels


def _layout_parts(member):
    """A member name's parts (``PurePosixPath`` drops a leading ``./`` and a trailing ``/``)."""
    return PurePosixPath(member).parts


def _strip_wrapper(names):
    """The one top folder that wraps ``train/`` and ``test/`` (``tar czf x.tar.gz x/``), or None."""
    tops = {parts[0] for parts in map(_layout_parts, names) if len(parts) > 1}
    if len(tops) == 1 and not tops & set(SPLITS):
        return next(iter(tops))
    return None


# The share of train/ carved out as the test split of a folder without test/ (image_folders.<name>.test_fraction).
DEFAULT_TEST_FRACTION = 0.2


def carved_test_size(count, fraction):
    """How many of ``count`` training images a folder without ``test/`` gives its test split."""
    return max(1, int(round(fraction * count)))


def image_counts(path):
    """``{split: images}`` of a local image folder or ``.zip`` from its member names alone; None for a ``.tar.gz``.

    No image is read: a config check uses it before any job. Only names laid
    out as ``<split>/<class>/<image>`` count; the reader refuses the rest
    later. A ``.tar.gz`` names its members only as it is decompressed, so it
    is not counted (None), nor is a ``.zip`` that cannot be opened.
    """
    path = Path(path)
    try:
        kind = source_kind(path)
        if kind == "tar":
            return None
        if kind == "zip":
            with zipfile.ZipFile(path) as archive:
                names = [info.filename for info in archive.infolist() if not info.is_dir()]
        else:
            names = [
                (Path(folder).relative_to(path) / name).as_posix()
                for folder, _, files in os.walk(path)
                for name in files
            ]
    except (DatasetError, zipfile.BadZipFile, OSError):
        return None
    wrapper = _strip_wrapper(names)
    counts = dict.fromkeys(SPLITS, 0)
    for name in names:
        parts = _layout_parts(name)
        if wrapper and parts and parts[0] == wrapper:
            parts = parts[1:]
        system = any(part in SYSTEM_FOLDERS for part in parts) or (parts and parts[-1] in SYSTEM_FILES)
        if len(parts) == 3 and parts[0] in SPLITS and not system:
            counts[parts[0]] += 1
    return counts


def read_image_folder(path, class_names=None, channels=None, image_size=None):
    """Read an image folder (``.tar.gz``/``.tgz``, ``.zip`` or folder) laid out ``<split>/<class>/<image>``.

    ``train`` is required, ``test`` optional (``None`` when absent). Class ids
    follow ``class_names`` when given, otherwise the sorted folder names of
    ``train``. Without ``image_size`` every image must have the size of the
    first one; without ``channels`` every image must have its channel count.
    Returns ``({split: (images uint8 NHWC, labels int64) or None}, class_names)``.
    """
    members = list(iter_files(path))
    wrapper = _strip_wrapper(name for name, _ in members)
    files = {split: {} for split in SPLITS}
    folders = {split: set() for split in SPLITS}
    for member, content in members:
        parts = _layout_parts(member)
        if wrapper and parts and parts[0] == wrapper:
            parts = parts[1:]
        if not parts or any(part in SYSTEM_FOLDERS for part in parts) or parts[-1] in SYSTEM_FILES:
            continue
        depth = 2 if content is None else 3  # a folder is <split> or <split>/<class>; a file <split>/<class>/<image>
        if len(parts) > depth or parts[0] not in SPLITS or (content is not None and len(parts) < depth):
            raise DatasetError(
                f"{path}: {member!r} is not laid out as <split>/<class>/<image> with <split> one of {list(SPLITS)}"
            )
        if content is None:
            if len(parts) == 2:
                folders[parts[0]].add(parts[1])
        else:
            files[parts[0]].setdefault(parts[1], []).append((member, content))
    if not files["train"]:
        raise DatasetError(f"{path}: no images in train/ (expected train/<class>/<image>)")
    train_classes = sorted(set(files["train"]) | folders["train"])
    class_names = list(class_names) if class_names is not None else train_classes
    for split in SPLITS:
        for name in sorted(folders[split] - set(files[split])):
            raise DatasetError(f"{path}: class folder {split}/{name} is empty")
        for name in sorted(set(files[split]) - set(class_names)):
            raise DatasetError(f"{path}: folder {split}/{name} is not a known class; classes: {class_names}")
    for name in class_names:
        if name not in files["train"]:
            raise DatasetError(f"{path}: class {name!r} has no images in train/")
    class_ids = {name: index for index, name in enumerate(class_names)}
    first = None
    result = {}
    for split in SPLITS:
        if not files[split]:
            result[split] = None
            continue
        images, labels = [], []
        for class_name in sorted(files[split]):
            for member, content in sorted(files[split][class_name]):
                pixels = decode_image(content, f"{path}: member {member!r}", channels, image_size)
                if first is None:
                    first = (member, pixels.shape)
                elif pixels.shape != first[1]:
                    raise DatasetError(
                        f"{path}: images differ in size or channels: {first[0]!r} is {first[1]}, {member!r} is "
                        f"{pixels.shape}; set image_size (and channels) for this dataset to convert them"
                    )
                images.append(pixels)
                labels.append(class_ids[class_name])
        result[split] = (np.stack(images), np.asarray(labels, dtype=np.int64))
    logger.info(
        "%s: %d classes, %d train and %s test images of %s",
        path,
        len(class_names),
        len(result["train"][1]),
        "no" if result["test"] is None else len(result["test"][1]),
        first[1],
    )
    return result, class_names
