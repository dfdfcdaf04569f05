"""Synthetic data the tests train on: small, seeded, and learnable."""

import io

import numpy as np
from PIL import Image


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


# Your own data and model, as a user brings them: three shapes.
SHAPES = ("circle", "cross", "square")


def shape_image(kind, size, rng, colour):
    """A noisy grey or colour picture of one of three shapes: learnable, not trivial."""
    pixels = rng.integers(0, 60, (size, size)).astype(np.uint8)
    yy, xx = np.mgrid[:size, :size]
    centre, radius = size / 2 + rng.uniform(-2, 2, 2), size / 3
    if kind == "circle":
        mask = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 < radius**2
    elif kind == "cross":
        mask = (abs(yy - centre[0]) < 2) | (abs(xx - centre[1]) < 2)
    else:
        mask = (abs(yy - centre[0]) < radius) & (abs(xx - centre[1]) < radius)
    pixels[mask] = 200 + rng.integers(0, 55)
    if colour:
        return Image.fromarray(np.stack([pixels, pixels[::-1], 255 - pixels], axis=-1), "RGB")
    return Image.fromarray(pixels, "L")


def image_files(splits, per_class, size, colour, format, seed=0):
    rng = np.random.default_rng(seed)
    for split in splits:
        for kind in SHAPES:
            for index in range(per_class):
                buffer = io.BytesIO()
                shape_image(kind, size, rng, colour).save(buffer, format=format, quality=95)
                yield f"{split}/{kind}/{index}.{format.lower().replace('jpeg', 'jpg')}", buffer.getvalue()


def trained_keras_model(path, input_shape, classes, expects_unit_range=True):
    """A small model trained on images scaled to 0..1, as many users' models are."""
    import keras

    from tinyml_quant.runtime import configure_tensorflow

    configure_tensorflow(1, seed=0)
    rng = np.random.default_rng(0)
    kinds = rng.integers(0, len(SHAPES), 480)
    images = np.stack([np.asarray(shape_image(SHAPES[k], input_shape[0], rng, input_shape[-1] == 3)) for k in kinds])
    images = images.reshape(len(kinds), *input_shape).astype("float32")
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(16, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(x), name="users_cnn")
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    scale = 1 / 255 if expects_unit_range else 1.0
    model.fit(images * scale, kinds, epochs=20, batch_size=32, verbose=0)
    model.save(path)
    return path
