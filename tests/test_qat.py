"""Quantization-aware training: the file each tool writes holds exactly the weights the model trained with.

The independent truth is the tools' own output: the TFLite converter's and
the AI Edge Quantizer's files are read back (their integer weights times
their scales) and compared, weight by weight, with the kernels the QAT model
computed with. A grid simulated per tensor where the tool quantizes per
channel must fail that comparison.
"""

import numpy as np
import pytest

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def small_model(seed=0):
    """Conv2D + BN, DepthwiseConv2D + BN, an unfoldable BN after an addition, Dense: every case QAT meets."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((12, 12, 3), name="image")
    x = layers.Rescaling(1 / 255.0)(inputs)
    x = layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv")(x)
    x = layers.BatchNormalization(name="conv_bn")(x)
    x = layers.Activation("relu")(x)
    y = layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, use_bias=False, name="depthwise")(x)
    y = layers.BatchNormalization(name="depthwise_bn")(y)
    y = layers.Activation("relu")(y)
    y = layers.Conv2D(8, 1, name="pointwise")(y)
    x = layers.Add()([x, y])
    x = layers.BatchNormalization(name="after_add_bn")(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(5, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            channels = layer.gamma.shape[0]
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, channels),
                    rng.normal(0, 0.1, channels),
                    rng.normal(0, 0.2, channels),
                    rng.uniform(0.5, 2.0, channels),
                ]
            )
    return model


def images(count=32, seed=1):
    return np.random.default_rng(seed).uniform(0, 255, (count, 12, 12, 3)).astype(np.float32)


def deployed_weights(flatbuffer):
    """``{shape: [dequantized weights]}`` of every quantized constant of rank 2 or 4 (weights, not biases)."""
    from ai_edge_litert import schema_py_generated as schema

    from tinyml_quant.graph import parse_model

    parsed = parse_model(flatbuffer)
    found = {}
    for tensor in parsed.subgraphs[0].tensors:
        quantization = tensor.quantization
        data = parsed.buffers[tensor.buffer].data
        if data is None or len(data) == 0 or quantization is None or quantization.scale is None:
            continue
        shape = tuple(int(size) for size in tensor.shape)
        if len(shape) not in (2, 4):
            continue
        raw = np.asarray(data, np.uint8)
        if tensor.type == schema.TensorType.INT4:
            nibbles = np.stack([raw & 0x0F, raw >> 4], axis=1).ravel()[: int(np.prod(shape))].astype(np.int16)
            values = np.where(nibbles > 7, nibbles - 16, nibbles)
        elif tensor.type == schema.TensorType.INT8:
            values = raw.view(np.int8).astype(np.int16)
        else:
            continue
        values = values.reshape(shape).astype(np.float64)
        scale = np.asarray(quantization.scale, np.float64)
        axis = int(quantization.quantizedDimension)
        if len(scale) > 1:
            scale = scale.reshape([-1 if dim == axis else 1 for dim in range(len(shape))])
        found.setdefault(shape, []).append((values * scale, scale))
    return found


def tflite_layout(kernel, kind):
    """A Keras kernel in the layout TFLite stores it in."""
    if kind == "Conv2D":
        return np.transpose(kernel, (3, 0, 1, 2))  # (h, w, in, out) -> (out, h, w, in)
    if kind == "DepthwiseConv2D":
        return kernel.reshape(1, *kernel.shape[:2], -1)  # (h, w, in, m) -> (1, h, w, in x m)
    return kernel.T  # Dense (in, out) -> (out, in)


def mismatch_in_steps(deployed, wrapped):
    """Per wrapped layer, the largest difference between trained and stored weights, in the stored steps.

    Up to one factor per tensor: the converter folds a constant multiply before
    a layer (the models' 1/255 rescaling) into its weights, which scales the
    values and the scales alike and leaves every integer as it was trained.
    """

    from tinyml_quant.qat import _FakeQuantKernel

    found = deployed_weights(deployed)
    worst = {}
    for layer in wrapped.layers:
        if not isinstance(layer, _FakeQuantKernel):
            continue
        trained = tflite_layout(layer.deployed_kernel().astype(np.float64), layer._qat_kind)
        ((stored, scale),) = found[trained.shape]
        factor = np.sum(trained * stored) / np.sum(stored * stored)
        worst[layer.name] = float(np.max(np.abs(trained / factor - stored) / scale))
    return worst


@pytest.fixture(scope="module")
def folded_model():
    from tinyml_quant.qat import fold_batch_norm

    model = small_model()
    return model, fold_batch_norm(model)


def test_folding_keeps_the_model_and_freezes_what_it_cannot_fold(folded_model):
    from tinyml_quant.qat import folding_pairs

    model, folded = folded_model
    # Conv and depthwise fold; the batch norm after the addition has no single producer.
    assert folding_pairs(model) == {"conv": "conv_bn", "depthwise": "depthwise_bn"}
    batch = images()
    np.testing.assert_allclose(folded.predict(batch, verbose=0), model.predict(batch, verbose=0), atol=1e-5)


@pytest.mark.parametrize("base", ["int8", "int4", "int8_lut"])
def test_the_file_holds_the_trained_grid(folded_model, base):
    """The tool's file, read back, equals the fake-quantized kernels to a hundredth of a step."""
    from tinyml_quant.qat import project, wrap
    from tinyml_quant.qat_stage import deployed_flatbuffer

    _, folded = folded_model
    wrapped = wrap(folded, base, values_per_channel=4)
    flatbuffer = deployed_flatbuffer(project(wrapped, folded), base, images(), values_per_channel=4)
    worst = mismatch_in_steps(flatbuffer, wrapped)
    assert set(worst) == {"conv", "depthwise", "pointwise", "predictions"}
    assert max(worst.values()) < 0.01, worst


def test_a_wrong_grid_is_caught(folded_model):
    """Per-tensor 4-bit simulated where the quantizer makes 4-bit convolutions per channel: the weights differ."""
    from tinyml_quant import qat
    from tinyml_quant.qat_stage import deployed_flatbuffer

    _, folded = folded_model
    wrapped = qat.wrap(folded, "int4")
    for layer in wrapped.layers:
        if getattr(layer, "_qat_kind", None) == "Conv2D":
            layer.grid = qat.Grid(4, per_channel=False)
    flatbuffer = deployed_flatbuffer(qat.project(wrapped, folded), "int4", images())
    worst = mismatch_in_steps(flatbuffer, wrapped)
    assert worst["conv"] > 0.1 and worst["pointwise"] > 0.1


def test_the_lut_table_is_the_post_training_binning(folded_model):
    """Fine-tuning starts from the LUT variant's own weights: each channel's table is the binned int8 file's values."""
    from tinyml_quant.conversion import convert
    from tinyml_quant.lut import binned_model
    from tinyml_quant.qat import WRAPPED, Grid, lut_table

    _, folded = folded_model
    binned, _ = binned_model(convert(folded, "int8", images()), 4)
    stored = deployed_weights(binned)
    for layer in folded.layers:
        kind = type(layer).__name__
        if kind not in WRAPPED:
            continue
        kernel = layer.get_weights()[0]
        table = lut_table(kernel, kind, Grid(8, True, 4))
        ((values, scale),) = stored[tflite_layout(kernel, kind).shape]
        axis = next(dim for dim, size in enumerate(scale.shape) if size > 1)
        codes = np.moveaxis(np.round(values / scale), axis, 0).reshape(table.shape[1], -1)
        step = np.abs(kernel.reshape(-1, table.shape[1])).max(axis=0) / 127
        for channel in range(table.shape[1]):
            expected = np.unique(codes[channel])
            np.testing.assert_allclose(np.unique(table[:, channel] / step[channel]), expected, atol=1e-3)


def test_lut_fine_tuning_keeps_its_table_and_stays_on_it(small_resnet):
    """The deployed weights are on the tables of the trained weights: fine-tuning moves weights, never a table."""
    from tinyml_quant.datasets import PreparedDataset
    from tinyml_quant.qat import WRAPPED, Grid, finetune, fold_batch_norm, leaves, lut_table

    from synthetic import brightest_quadrant

    model, test_images, test_labels, _, _ = small_resnet
    folded = {layer.name: layer for layer in leaves(fold_batch_norm(model))}
    train_images, train_labels = brightest_quadrant(320)
    dataset = PreparedDataset(
        train_images, train_labels, test_images, test_labels, ["0", "1", "2", "3"], {"name": "toy"}
    )
    settings = {
        "seed": 0,
        "batch_size": 32,
        "optimizer": "adam",
        "weight_decay": 0.0,
        "lr_schedule": "constant",
        "label_smoothing": 0.0,
        "validation_split": 0.0,
        "augmentation": {},
    }  # fmt: skip  (no hold-out: the last epoch is kept)
    deployed, record = finetune(model, dataset, "int8_lut", settings, {"epochs": 2, "learning_rate": 0.01}, 2, 4)
    assert record["selected_epoch"] == 2
    for layer in leaves(deployed):
        kind = type(layer).__name__
        if kind not in WRAPPED:
            continue
        trained = folded[layer.name].get_weights()[0]
        table = lut_table(trained, kind, Grid(8, True, 4))
        kernel = layer.get_weights()[0]
        flat = kernel.reshape(-1, table.shape[1])
        for channel in range(flat.shape[1]):
            values = np.unique(flat[:, channel])
            gaps = np.abs(values[:, None] - table[None, :, channel]).min(axis=1)
            assert len(values) <= 4 and np.all(gaps <= np.abs(values).max() / 127 / 2 + 1e-7), layer.name


def test_the_epoch_kept_is_the_best_on_validation():
    """KeepBest restores the weights of the best validation epoch, and the start when no epoch beats it."""
    import keras

    from tinyml_quant.qat import KeepBest

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    for start, accuracies, kept in ((0.5, [0.4, 0.6, 0.55], 2), (0.7, [0.4, 0.6, 0.55], 0)):
        keep = KeepBest(start)
        keep.set_model(model)
        model.layers[0].set_weights([np.zeros((2, 1)), np.zeros(1)])
        keep.on_train_begin()
        for epoch, accuracy in enumerate(accuracies):
            model.layers[0].set_weights([np.full((2, 1), epoch + 1.0), np.zeros(1)])
            keep.on_epoch_end(epoch, {"loss": 1.0, "val_accuracy": accuracy})
        keep.on_train_end()
        assert keep.best_epoch == kept and keep.accuracies == [start, *accuracies]
        assert np.all(model.layers[0].get_weights()[0] == kept)


def test_unsupported_layers_are_named():
    import keras

    from tinyml_quant.qat import QATUnsupported, check_supported

    inputs = keras.Input((6, 4))
    outputs = keras.layers.Dense(2)(keras.layers.LSTM(3, name="memory")(inputs))
    with pytest.raises(QATUnsupported, match="'memory' \\(LSTM\\)"):
        check_supported(keras.Model(inputs, outputs))


def test_needs_qat_compares_the_loss_with_the_threshold():
    from tinyml_quant.qat_stage import needs_qat

    reference = {"status": "converted", "accuracy": 0.80}
    assert needs_qat(reference, {"status": "converted", "accuracy": 0.785}, 1.0, "int4")[0] is True
    assert needs_qat(reference, {"status": "converted", "accuracy": 0.795}, 1.0, "int4") == (
        False,
        "int4 loses 0.50 points, within qat.threshold_points 1.0: not needed",
    )
    assert needs_qat(reference, {"status": "converted", "accuracy": 0.81}, None, "int4")[0] is True
    missing = needs_qat(
        reference, {"status": "not converted", "reason": "no int4 kernel", "accuracy": None}, 1.0, "int4"
    )
    assert missing == (False, "its post-training variant int4 was not made (no int4 kernel)")
    # qat.models leaves the model out: not fine-tuned, whatever it loses, and the key is named.
    assert needs_qat(reference, {"status": "converted", "accuracy": 0.1}, 1.0, "int4", "resnet8", ["custom"]) == (
        False,
        "qat.models ['custom'] leaves out resnet8",
    )
    assert needs_qat(reference, {"status": "converted", "accuracy": 0.1}, 1.0, "int4", "custom", ["custom"])[0]


@pytest.mark.parametrize("base", ["int4", "int8_lut"])
def test_finetuned_file_computes_what_keras_computed(small_resnet, base):
    """LiteRT's accuracy on the QAT file is the fine-tuned Keras model's within a handful of test images.

    The file differs from the Keras model only by its calibrated int8 activations.
    """
    from tinyml_quant.datasets import PreparedDataset
    from tinyml_quant.evaluation import predict
    from tinyml_quant.qat import finetune
    from tinyml_quant.qat_stage import deployed_flatbuffer
    from tinyml_quant.runtime import load_interpreter

    from synthetic import brightest_quadrant

    model, test_images, test_labels, representative, _ = small_resnet
    train_images, train_labels = brightest_quadrant(320)
    dataset = PreparedDataset(
        train_images, train_labels, test_images, test_labels, ["0", "1", "2", "3"], {"name": "toy"}
    )
    settings = {
        "seed": 0, "batch_size": 32, "optimizer": "adam", "weight_decay": 0.0, "lr_schedule": "cosine",
        "label_smoothing": 0.0, "validation_split": 0.1, "augmentation": {},
    }  # fmt: skip
    deployed, record = finetune(model, dataset, base, settings, {"epochs": 2, "learning_rate": 0.001}, 2, 16)
    assert record["folded_batch_norms"] and record["training_seconds"] > 0
    # The start and both epochs judged on the validation hold-out; the kept one is their best.
    accuracies = record["validation_accuracies"]
    assert len(accuracies) == 3 and accuracies[record["selected_epoch"]] == max(accuracies)
    flatbuffer = deployed_flatbuffer(deployed, base, representative, 16)
    outputs, _ = predict(load_interpreter(flatbuffer), test_images, 40)
    predictions = outputs.argmax(axis=1)
    keras_right = round(record["keras_accuracy"] * len(test_labels))
    assert abs(int((predictions == test_labels).sum()) - keras_right) <= 3


def test_a_diverging_fine_tuning_is_named_and_its_variant_marked(small_resnet, tmp_path):
    """A learning rate that sends the loss to infinity: the variant is marked "QAT diverged", naming the setting."""
    from tinyml_quant.datasets import save_prepared
    from tinyml_quant.files import read_json, write_json
    from tinyml_quant.qat_stage import DIVERGED, run_finetune, run_qat_conversion
    from tinyml_quant.variants import read_record

    from synthetic import brightest_quadrant

    model, test_images, test_labels, _, _ = small_resnet
    train_images, train_labels = brightest_quadrant(320)
    classes, provenance = ["0", "1", "2", "3"], {"dataset": "toy", "name": "toy"}
    save_prepared(tmp_path / "toy.npz", train_images, train_labels, test_images, test_labels, classes, provenance)
    model.save(tmp_path / "model.keras")
    key = {"dataset": "toy", "model": "resnet_v1", "seed": 3}
    write_json(tmp_path / "fp32.json", {**key, "scheme": "fp32", "status": "converted", "accuracy": 0.9})
    write_json(tmp_path / "int4.json", {**key, "scheme": "int4", "status": "converted", "accuracy": 0.5})
    settings = {
        "seed": 0, "batch_size": 32, "optimizer": "sgd", "momentum": 0.9, "nesterov": False, "weight_decay": 0.0,
        "lr_schedule": "constant", "label_smoothing": 0.0, "validation_split": 0.1, "augmentation": {},
    }  # fmt: skip
    qat = {"epochs": 2, "learning_rate": 1e12, "threshold_points": 1.0}
    run_finetune(
        tmp_path / "model.keras", tmp_path / "toy.npz", tmp_path / "fp32.json", tmp_path / "int4.json", "int4_qat",
        settings, qat, 16, 2, tmp_path / "qat.keras", tmp_path / "qat.json",
    )  # fmt: skip
    record = read_json(tmp_path / "qat.json")
    assert record["status"] == DIVERGED and "qat.learning_rate (1000000000000.0)" in record["reason"]
    # Named by its variant's key, which the report joins it by.
    assert {name: record[name] for name in (*key, "scheme")} == {**key, "scheme": "int4_qat"}
    assert (tmp_path / "qat.keras").stat().st_size == 0
    calibration = {"calibration_images": 16, "calibration_seed": 0}
    output = tmp_path / "int4_qat.tflite"
    run_qat_conversion(
        tmp_path / "qat.keras", tmp_path / "qat.json", tmp_path / "toy.npz", "int4_qat", calibration, 16, output
    )
    assert read_record(output)["status"] == "not converted"
    assert DIVERGED in read_record(output)["reason"]


def test_a_qat_record_not_fine_tuned_names_its_variant_and_why(tmp_path):
    """Within the threshold nothing is trained, yet the record carries the key the report joins it by."""
    from tinyml_quant.files import read_json, write_json
    from tinyml_quant.qat_stage import NOT_NEEDED, run_finetune

    key = {"dataset": "toy", "model": "custom", "seed": 7}
    write_json(tmp_path / "fp32.json", {**key, "scheme": "fp32", "status": "converted", "accuracy": 0.9})
    write_json(tmp_path / "lut.json", {**key, "scheme": "int8_lut", "status": "converted", "accuracy": 0.895})
    qat = {"epochs": 2, "learning_rate": 0.001, "threshold_points": 1.0}
    run_finetune(
        tmp_path / "absent.keras", tmp_path / "absent.npz", tmp_path / "fp32.json", tmp_path / "lut.json",
        "int8_lut_qat", {}, qat, 16, 1, tmp_path / "qat.keras", tmp_path / "qat.json",
    )  # fmt: skip
    record = read_json(tmp_path / "qat.json")
    assert {name: record[name] for name in (*key, "scheme", "status")} == {
        **key,
        "scheme": "int8_lut_qat",
        "status": NOT_NEEDED,
    }
    assert "within qat.threshold_points 1.0" in record["reason"] and (tmp_path / "qat.keras").stat().st_size == 0
