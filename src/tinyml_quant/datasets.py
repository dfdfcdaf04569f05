"""Datasets: parse a fetched dataset into one prepared ``.npz``, and load it back.

``prepare`` verifies the fetched files again (``fetch.verified_path``), parses
them (``readers``) and writes uint8 NHWC images, integer labels, class names
and a provenance record. ``load_prepared`` reads that file with
``allow_pickle=False``, so it can hold no code. ``seeded_subset`` is the one
way this project draws a sample.
"""

import json
import logging
from dataclasses import dataclass

import numpy as np

from .fetch import BUILTIN_DATASETS, verified_path
from .files import atomic_path, read_json
from .readers import (
    DEFAULT_TEST_FRACTION,
    DatasetError,
    carved_test_size,
    read_cifar10_binary,
    read_idx,
    read_image_folder,
)

__all__ = ["DatasetError"]

logger = logging.getLogger(__name__)


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
    paths = {name: verified_path(record) for name, record in manifest["files"].items()}
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
        fraction, seed = settings.get("test_fraction", DEFAULT_TEST_FRACTION), settings.get("split_seed", 0)
        images, labels = splits["train"]
        test_index = seeded_subset(len(labels), carved_test_size(len(labels), fraction), seed)
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
