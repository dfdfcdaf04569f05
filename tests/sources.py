"""Dataset sources the tests build: IDX files, image files, and image folders as tar, zip or folder."""

import gzip
import io
import tarfile
import zipfile

import numpy as np
from PIL import Image

from tinyml_quant import readers


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


def write_gzip(path, content):
    with gzip.open(path, "wb") as handle:
        handle.write(content)
    return path


def cifar10_members(folder="b", empty=(), extra=()):
    record = np.zeros((1, readers.CIFAR10_RECORD_BYTES), np.uint8)
    record[0, 0] = 3
    names = ("test_batch.bin", *(f"data_batch_{i}.bin" for i in range(1, 6)))
    return [*extra, *((f"{folder}/{name}", b"" if name in empty else record.tobytes()) for name in names)]


class LeavesAMark:
    """An object whose unpickling touches a file: what a malicious .npz could carry."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))
