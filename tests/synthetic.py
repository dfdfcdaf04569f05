"""Synthetic data the tests train on: small, seeded, and learnable."""

import numpy as np


def brightest_quadrant(count, size=16, seed=0):
    """``(images, labels)``: noisy grey images whose class (0-3) is the quadrant that is brighter."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 100, (count, size, size, 1)).astype(np.uint8)
    labels = rng.integers(0, 4, count)
    half = size // 2
    for index, label in enumerate(labels):
        row, column = divmod(int(label), 2)
        images[index, row * half : row * half + half, column * half : column * half + half] += 120
    return images, labels


def fitted(model, images, labels, epochs=3, batch_size=50):
    """``model`` trained with Adam on ``images`` (whole batches only: see tinyml_quant.training)."""
    import keras

    usable = len(labels) // batch_size * batch_size
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    model.fit(images[:usable].astype("float32"), labels[:usable], epochs=epochs, batch_size=batch_size, verbose=0)
    return model


def save_as_prepared(path, images, labels, train_images=None, dataset="toy", name="toy"):
    """A prepared dataset file of four classes whose test split is ``images`` and ``labels``.

    Its training split is ``train_images`` (labelled 0) when given, else the test images
    inverted (255 - pixel), so that a job reading the wrong split gives another answer.
    """
    from tinyml_quant.datasets import save_prepared

    if train_images is None:
        train_images, train_labels = 255 - images, labels
    else:
        train_labels = np.zeros(len(train_images), np.int64)
    provenance = {"dataset": dataset, "name": name}
    save_prepared(path, train_images, train_labels, images, labels, ["a", "b", "c", "d"], provenance)
    return path


def write_variant(path, flatbuffer, scheme="int8"):
    """``flatbuffer`` written as a variant file with its conversion record beside it, as the conversion jobs do."""
    from tinyml_quant.variants import converting

    with converting(path, "test", {"scheme": scheme}) as made:
        made["flatbuffer"] = flatbuffer
    return path
