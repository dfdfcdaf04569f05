"""Weights TensorFlow Lite Micro never reads, and the gate that keeps a wrongly computed variant out of every choice.

The AI Edge Quantizer stores the weights of a model whose large buffers add up
to 256 KiB or more after the flatbuffer (``Buffer.offset``); TFLite Micro reads
only ``Buffer.data`` and computes with whatever its arena holds. The model here
crosses that threshold with one Dense layer of 1024 x 320 int8 weights.
"""

import json

import numpy as np
import pytest
from test_reporting import TRAINED, gathered, study_records

from tinyml_quant.conversion import calibration_images, convert
from tinyml_quant.deployment import deployment_plan
from tinyml_quant.edge_quantizer import calibrate, quantize, quantizer_for
from tinyml_quant.firmware import firmware_bundle
from tinyml_quant.micro import measure_micro
from tinyml_quant.runtime import load_interpreter

from synthetic import brightest_quadrant, fitted

GATE = {"min_top1_agreement": 0.95, "max_output_steps": 64}
# The quantizer's threshold (ai_edge_quantizer.model_modifier, 0.10.0): buffers of 1 KiB or more adding up to this.
EXTERNAL_FROM_BYTES = 256 * 1024


@pytest.fixture(scope="module")
def wide():
    """``(fp32 flatbuffer, calibration images, test images, test labels)`` of a model over the threshold."""
    import keras

    from tinyml_quant.runtime import configure_tensorflow

    configure_tensorflow(threads=1, seed=0)
    images, labels = brightest_quadrant(300)
    inputs = keras.Input((16, 16, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(320, activation="relu")(x)
    outputs = keras.layers.Dense(4, activation="softmax")(x)
    model = fitted(keras.Model(inputs, outputs), images[:250], labels[:250])
    return convert(model, "fp32"), calibration_images(images[:250], 32, 0), images[250:], labels[250:]


@pytest.fixture(scope="module")
def as_the_quantizer_writes_it(wide):
    """The quantizer's own output for int8 per tensor, as ``Quantizer.quantize`` returns it."""
    fp32, representative, _, _ = wide
    made = quantizer_for(fp32, "int8_per_tensor")
    return bytes(made.quantize(calibrate(made, fp32, representative), enable_progress_report=False).quantized_model)


@pytest.fixture(scope="module")
def quantized(wide):
    """The study's int8-per-tensor variant of the same model."""
    fp32, representative, _, _ = wide
    return quantize(fp32, "int8_per_tensor", representative)


def buffer_layout(flatbuffer):
    """``[(offset, size, len(data))]`` of every buffer, read with the schema's own accessors."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(flatbuffer, 0)
    return [
        (model.Buffers(index).Offset(), model.Buffers(index).Size(), model.Buffers(index).DataLength())
        for index in range(model.BuffersLength())
    ]


def raw_outputs(flatbuffer, images):
    """LiteRT's int8 outputs, not dequantized, image by image."""
    interpreter = load_interpreter(flatbuffer)
    inputs, output = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    scale, zero_point = inputs["quantization"]
    found = []
    for image in images:
        quantized = np.clip(np.round(image.astype(np.float32) / scale + zero_point), -128, 127).astype(inputs["dtype"])
        interpreter.set_tensor(inputs["index"], quantized[None])
        interpreter.invoke()
        found.append(interpreter.get_tensor(output["index"])[0].copy())
    return np.stack(found)


def test_the_quantizer_writes_weights_outside_the_flatbuffer_and_tflite_micro_computes_wrongly(
    wide, as_the_quantizer_writes_it
):
    _, _, images, labels = wide
    external = [(offset, size) for offset, size, data in buffer_layout(as_the_quantizer_writes_it) if offset > 1]
    assert sum(size for _, size in external) >= EXTERNAL_FROM_BYTES
    assert all(data == 0 for offset, _, data in buffer_layout(as_the_quantizer_writes_it) if offset > 1)
    measured = measure_micro(as_the_quantizer_writes_it, images, labels, gate=GATE)
    agreement = measured["agreement"]
    assert measured["status"] == "runs, wrong output"
    assert agreement["top1_agreement"] < GATE["min_top1_agreement"] and agreement["tflm_accuracy"] < 0.5
    # Both reasons: the file's layout, and what the sample shows (the gate itself, not only the layout).
    assert "weights outside the flatbuffer" in measured["wrong_output"]
    assert f"top-1 agreement with LiteRT {agreement['top1_agreement']:.1%}" in measured["wrong_output"]
    assert measured["external_buffer_bytes"] == sum(size for _, size in external)


def test_the_study_holds_every_weight_inline_and_litert_computes_the_same_bytes(
    wide, as_the_quantizer_writes_it, quantized
):
    _, _, images, labels = wide
    assert all(offset == 0 and size == 0 for offset, size, _ in buffer_layout(quantized))
    assert sum(data for _, _, data in buffer_layout(quantized)) >= EXTERNAL_FROM_BYTES
    assert np.array_equal(raw_outputs(quantized, images), raw_outputs(as_the_quantizer_writes_it, images))
    measured = measure_micro(quantized, images, labels, gate=GATE)
    assert measured["status"] == "runs" and measured["wrong_output"] is None
    assert measured["agreement"]["top1_agreement"] == 1.0
    assert measured["external_buffer_bytes"] == 0


def test_a_variant_tflite_micro_computes_wrongly_is_never_chosen_nor_bundled(
    wide, as_the_quantizer_writes_it, quantized, tmp_path
):
    """int8_per_tensor is the smallest and loses nothing: it would be the choice, were its file not computed wrongly."""
    _, _, images, labels = wide
    wrong = measure_micro(as_the_quantizer_writes_it, images, labels, gate=GATE)
    right = measure_micro(quantized, images, labels, gate=GATE)
    schemes = ("fp32", "int8", "int8_per_tensor")
    sizes = {"fp32": 4000, "int8": 2000, "int8_per_tensor": 1500}
    paths = study_records(tmp_path, {"custom": TRAINED}, schemes, predictions=lambda model, scheme, truth: truth)
    for path in paths["graphs"]:
        record = json.loads(path.read_text())
        path.write_text(json.dumps({**record, "file_bytes": sizes[record["scheme"]]}))
    micro = {}
    for path in paths["micro_measurements"]:
        record = json.loads(path.read_text())
        if record["scheme"] == "int8_per_tensor":
            record.update({key: wrong[key] for key in ("status", "arena_bytes", "agreement", "wrong_output")})
        path.write_text(json.dumps(record))
        micro[record["scheme"]] = record
    table, markdown = gathered(tmp_path, paths)
    choice = markdown[markdown.index("## What to choose") :].split("\n## ")[0]
    row = next(line for line in choice.splitlines() if line.startswith("| toy (test) | custom"))
    assert "int8 (2.0 KB" in row and "int8_per_tensor (" not in row.split("|")[3]
    assert table.set_index("scheme").tflm_status["int8_per_tensor"] == "runs, wrong output"
    evaluations = {scheme: {"accuracy": 1.0} for scheme in schemes}
    plan = deployment_plan(evaluations, micro, 1.0, False, ())
    assert plan["firmware_schemes"] == ["fp32", "int8"]
    with pytest.raises(ValueError, match="wrong output"):
        firmware_bundle(as_the_quantizer_writes_it, wrong, ["a", "b", "c", "d"], 10, "g_wide")
    # The file itself is refused, whatever a record says about it.
    with pytest.raises(ValueError, match="outside the flatbuffer"):
        firmware_bundle(as_the_quantizer_writes_it, right, ["a", "b", "c", "d"], 10, "g_wide")
    assert set(firmware_bundle(quantized, right, ["a", "b", "c", "d"], 10, "g_wide")) >= {"model_data.cc"}
