"""Your own trained model into the study: checked against its dataset, preprocessing folded in.

The study's TFLite variants all take the dataset's raw pixels (0-255) as
float32, as the built-in models do. A model trained on normalized inputs
declares ``input_scale`` and ``input_offset`` (config ``trained_models``): the
imported model is ``Rescaling(scale, offset)`` then the user's model, so every
variant applies the same normalization inside the model, and the record says
which. A ``.keras`` file, or a Keras 2 HDF5 file (``.h5``: MLPerf Tiny's
models), is loaded as it is by ``keras.models.load_model``; a TensorFlow SavedModel folder
through ``keras.layers.TFSMLayer`` (its ``serving_default`` signature). A published model
(``trained_models.<name>.published``) is imported from the Keras file its fetch verified.
"""

import logging
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from . import __version__
from .datasets import load_prepared, seeded_subset
from .fetch import published_path
from .files import atomic_path, read_json, write_json
from .runtime import configure_tensorflow

logger = logging.getLogger(__name__)


class ModelMismatch(ValueError):
    """A trained model that does not fit its dataset; the message names the file and the config key."""


def load_user_model(path, key):
    """The model at ``path`` (``.keras``, ``.h5`` or SavedModel folder); ValueError naming it and ``key``."""
    path = Path(path)
    try:
        if path.is_dir():
            signature = tf.saved_model.load(str(path)).signatures["serving_default"]
            specs = list(signature.structured_input_signature[1].values())
            if len(specs) != 1:
                raise ValueError(f"the signature has {len(specs)} inputs, not one")
            spec = specs[0]
            layer = keras.layers.TFSMLayer(str(path), call_endpoint="serving_default")
            # The whole shape, batch size included: a model exported for a fixed batch keeps it.
            inputs = keras.Input(batch_shape=tuple(spec.shape), dtype=spec.dtype.name, name="image")
            outputs = layer(inputs)
            if isinstance(outputs, dict):
                if len(outputs) != 1:
                    raise ValueError(f"the signature has {len(outputs)} outputs, not one: {sorted(outputs)}")
                outputs = next(iter(outputs.values()))
            return keras.Model(inputs, outputs, name=path.name)
        return keras.models.load_model(path, compile=False)
    except Exception as error:  # Keras and TensorFlow raise many types for a file they cannot read
        raise ModelMismatch(f"{path} ({key}): cannot load the model ({type(error).__name__}: {error})") from error


def fixed_batch_size(model):
    """The batch size ``model``'s input is built for (``keras.Input(batch_size=1)``), or None when any fits."""
    size = model.inputs[0].shape[0]
    return None if size is None else int(size)


def check_fits(model, dataset, key):
    """Raise unless ``model`` takes the dataset's images and gives one output per class."""
    input_shape = tuple(model.inputs[0].shape[1:])
    image_shape = tuple(int(size) for size in dataset.x_train.shape[1:])
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ModelMismatch(
            f"{key}: the model has {len(model.inputs)} inputs and {len(model.outputs)} outputs; one each"
        )
    if fixed_batch_size(model) not in (None, 1):
        # A microcontroller, TFLite Micro and the per-image stages run one image per invoke.
        raise ModelMismatch(
            f"{key}: the model's input is built for batches of {fixed_batch_size(model)} images; a microcontroller "
            "runs one image at a time: export it with batch size 1 or none (keras.Input(shape=...))"
        )
    if input_shape != image_shape:
        raise ModelMismatch(
            f"{key}: the model takes inputs of shape {input_shape}, but the images of {dataset.name} are "
            f"{image_shape}; set image_size or channels of that dataset (image_folders) to match, or export the "
            "model for this size"
        )
    outputs = tuple(model.outputs[0].shape[1:])
    if outputs != (len(dataset.class_names),):
        raise ModelMismatch(
            f"{key}: the model gives outputs of shape {outputs}, but {dataset.name} has {len(dataset.class_names)} "
            f"classes ({dataset.class_names}); class_names of that dataset fixes their number and order"
        )


def with_preprocessing(model, scale, offset):
    """``model`` behind ``Rescaling(scale, offset)``: raw pixels in, whatever the model expects passed on."""
    if scale == 1.0 and offset == 0.0:
        return model
    # The model's own batch size too: the converter lowers a fixed-batch LSTM or attention model only
    # with it (without it, tensor-list ops it cannot lower, or SHAPE and GATHER that TFLite Micro refuses).
    inputs = keras.Input(batch_shape=tuple(model.inputs[0].shape), name="image")
    x = keras.layers.Rescaling(scale, offset, name="declared_preprocessing")(inputs)
    return keras.Model(inputs, model(x), name=f"{model.name}_with_preprocessing")


# The normalizations a model is most often trained with: raw pixels, and pixels / 255.
COMMON_INPUT_SCALES = (1.0, 1 / 255)
# How much better another common scale must score than the declared one to be reported (fraction of images).
SCALE_WARNING_MARGIN = 0.10
SCALE_CHECK_IMAGES = 1000


def predicted_classes(model, images, batch_size=250):
    """``model``'s class for each image, in batches of ``batch_size``, or of its own batch size when it has one."""
    batch_size = fixed_batch_size(model) or batch_size
    outputs = np.asarray(model.predict(images.astype("float32"), batch_size=batch_size, verbose=0))
    return outputs.reshape(len(outputs), -1).argmax(axis=1)


def accuracy(model, images, labels, batch_size=250):
    return float(np.mean(predicted_classes(model, images, batch_size) == labels))


def preprocessing_warning(model, dataset, key, input_scale, input_offset, batch_size=250):
    """A warning naming the setting when another common input scale fits ``model`` far better; None otherwise.

    A model declared without the ``input_scale`` it was trained with (pixels
    / 255, say) still runs, and scores near chance: the import sees it by
    scoring a sample of test images with the declared preprocessing and with
    each other scale of ``COMMON_INPUT_SCALES``.
    """
    sample = seeded_subset(len(dataset.y_test), SCALE_CHECK_IMAGES, 0)
    images, labels = dataset.x_test[sample], dataset.y_test[sample]
    declared = accuracy(with_preprocessing(model, input_scale, input_offset), images, labels, batch_size)
    others = {
        scale: accuracy(with_preprocessing(model, scale, 0.0), images, labels, batch_size)
        for scale in COMMON_INPUT_SCALES
        if not (np.isclose(scale, input_scale) and input_offset == 0.0)
    }
    best = max(others, key=others.get, default=None)
    if best is None or others[best] - declared <= SCALE_WARNING_MARGIN:
        return None
    return (
        f"{key}.input_scale: the model scores {declared:.1%} on {len(sample)} test images with the declared "
        f"preprocessing (input_scale {input_scale:.6g}, input_offset {input_offset:g}) but {others[best]:.1%} "
        f"with input_scale {best:.6g}; declare the scale and offset it was trained with"
    )


def import_trained_model(model_path, dataset, key, input_scale=1.0, input_offset=0.0, batch_size=250, source=None):
    """``(model to convert, test metrics)`` for a user's trained model on its (prepared) dataset.

    ``source``: where the record says the model came from (``imported from <model_path>`` when None).
    """
    model = load_user_model(model_path, key)
    check_fits(model, dataset, key)
    warning = preprocessing_warning(model, dataset, key, input_scale, input_offset, batch_size)
    if warning:
        logger.warning("%s", warning)
    model = with_preprocessing(model, input_scale, input_offset)
    metrics = {
        "dataset": dataset.provenance["dataset"],
        "dataset_name": dataset.name,
        "model": key.split(".")[-1],
        "source": source or f"imported from {model_path}",
        "parameters": int(model.count_params()),
        "test_images": int(len(dataset.y_test)),
        "test_accuracy": accuracy(model, dataset.x_test, dataset.y_test, batch_size),
        "fixed_batch_size": fixed_batch_size(model),
        "preprocessing": {"input_scale": input_scale, "input_offset": input_offset, "applied": "inside the model"},
        "warning": warning,
    }
    return model, metrics


def trained_source(trained_path, published=None):
    """``(Keras file, where it came from)``: ``trained_path`` itself, or, for a ``published`` model, the
    Keras file its manifest (``trained_path``) names, its checksum checked again."""
    if not published:
        return trained_path, f"imported from {trained_path}"
    manifest = read_json(trained_path)
    path = published_path(manifest, manifest["keras_file"])
    return path, f"imported: {manifest['description']}, {manifest['keras_file']} ({manifest['origin']})"


def run_import(
    trained_path,
    dataset_path,
    model_name,
    input_scale,
    input_offset,
    threads,
    model_path,
    metrics_path,
    seed=None,
    published=None,
):
    """Snakemake entry point: check, wrap and save a trained model with its test metrics.

    ``trained_path`` is the model's file, or for a ``published`` model (its name) its fetch manifest.
    """
    configure_tensorflow(threads)
    dataset = load_prepared(dataset_path)
    keras_file, source = trained_source(trained_path, published)
    model, metrics = import_trained_model(
        keras_file, dataset, f"trained_models.{model_name}", input_scale, input_offset, source=source
    )
    metrics["published"] = published
    # The seed of the study the model appears under (it is not trained here).
    metrics["seed"] = seed
    metrics["versions"] = {"tensorflow": tf.__version__, "keras": keras.__version__, "workflow": __version__}
    with atomic_path(model_path) as temporary:
        model.save(temporary)
    write_json(metrics_path, metrics)
    logger.info("%s on %s: Keras test accuracy %.4f", model_name, dataset.name, metrics["test_accuracy"])
    return metrics
