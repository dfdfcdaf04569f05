"""The QAT stage: whether a QAT variant is worth making, the fine-tuning job, and its variant made by the scheme's tool.

``run_finetune`` fine-tunes only where the post-training variant loses more
than ``qat.threshold_points`` against fp32 (``null``: always); elsewhere it
writes an empty model and a record saying why (as where QAT cannot wrap the
model, or its fine-tuning diverges), and the variant is then marked not
converted with that reason, as every stage marks a variant its tool did not
make. ``deployed_flatbuffer`` hands the fine-tuned model to the QAT
scheme's own tool: the converter's int8 (``int8_qat``); the converter's fp32
file quantized by the AI Edge Quantizer with int4's min/max ranges
(``int4_qat``: its grid is the weights' own maximum, so never OCTAV or MSE);
the converter's int8 binned per channel (``int8_lut_qat``: the binning leaves
weights that already have at most that many values as they are).
"""

import logging
from pathlib import Path

import numpy as np

from .conversion import calibration_images, calibration_key, convert, converter_reason, loadable
from .datasets import load_prepared
from .edge_quantizer import quantize
from .files import read_json, write_bytes, write_json
from .lut import binned_model
from .schemes import (
    CONVERTER,
    EDGE_QUANTIZER,
    FULL_INTEGER,
    INT4,
    LUT,
    MICRO_COMPRESSION,
    MIN_MAX,
    QAT_SCHEMES,
    REFERENCE_SCHEME,
)
from .variants import CONVERTED, ToolFailure, converting

logger = logging.getLogger(__name__)

MADE = "fine-tuned"
NOT_NEEDED = "not needed"
UNSUPPORTED = "QAT unsupported"
DIVERGED = "QAT diverged"
TOOLS = {FULL_INTEGER: CONVERTER, INT4: EDGE_QUANTIZER, LUT: MICRO_COMPRESSION}


def needs_qat(reference_metrics, post_training_metrics, threshold_points, base, model=None, models=None):
    """``(whether to fine-tune, why)`` from the fp32 and post-training evaluations of ``model``.

    ``models``: ``qat.models``, the models QAT may fine-tune (None: all).
    """
    if models is not None and model not in models:
        return False, f"qat.models {list(models)} leaves out {model}"
    if post_training_metrics.get("status", CONVERTED) != CONVERTED or post_training_metrics.get("accuracy") is None:
        return (
            False,
            f"its post-training variant {base} was not made ({post_training_metrics.get('reason', 'no accuracy')})",
        )
    if reference_metrics.get("accuracy") is None:
        return False, f"its {REFERENCE_SCHEME} variant has no accuracy"
    loss = 100 * (reference_metrics["accuracy"] - post_training_metrics["accuracy"])
    if threshold_points is None:
        return True, f"qat.threshold_points is null: always fine-tuned ({base} loses {loss:.2f} points)"
    if loss > threshold_points:
        return True, f"{base} loses {loss:.2f} points, more than qat.threshold_points {threshold_points}"
    return False, f"{base} loses {loss:.2f} points, within qat.threshold_points {threshold_points}: not needed"


def deployed_flatbuffer(model, base, representative, values_per_channel=16):
    """The file ``base``'s tool makes of the fine-tuned ``model`` (for the LUT scheme: the binned model)."""
    if base == INT4:
        return quantize(convert(model, REFERENCE_SCHEME), INT4, representative, algorithm=MIN_MAX)
    flatbuffer = convert(model, FULL_INTEGER, representative)
    if base == LUT:
        return binned_model(flatbuffer, values_per_channel)[0]
    return flatbuffer


def run_finetune(
    model_path,
    dataset_path,
    reference_metrics_path,
    post_training_metrics_path,
    scheme,
    training_settings,
    qat_settings,
    values_per_channel,
    threads,
    model_output,
    record_output,
):
    """Snakemake entry point: fine-tune for ``scheme`` where needed; write the model (empty if not) and its record."""
    import keras

    from .qat import QATDiverged, QATUnsupported, check_supported, finetune
    from .runtime import load_keras_model

    base = QAT_SCHEMES[scheme]
    reference = read_json(reference_metrics_path)
    # The variant's key, from its fp32 evaluation (which names it): the report joins this record by it.
    record = {
        **{name: reference[name] for name in ("dataset", "model", "seed")},
        "scheme": scheme,
        "base_scheme": base,
        "settings": qat_settings,
    }
    wanted, reason = needs_qat(
        reference,
        read_json(post_training_metrics_path),
        qat_settings["threshold_points"],
        base,
        reference["model"],
        qat_settings.get("models"),
    )
    model = load_keras_model(model_path) if wanted else None
    if wanted:
        try:
            check_supported(model)
        except QATUnsupported as error:
            wanted, reason = False, f"{UNSUPPORTED}: {error}"
    if not wanted:
        status = UNSUPPORTED if reason.startswith(UNSUPPORTED) else NOT_NEEDED
        _write_unmade(model_output, record_output, {**record, "status": status, "reason": reason})
        return
    dataset = load_prepared(dataset_path)
    try:
        deployed, details = finetune(model, dataset, base, training_settings, qat_settings, threads, values_per_channel)
    except QATDiverged as error:
        _write_unmade(model_output, record_output, {**record, "status": DIVERGED, "reason": f"{DIVERGED}: {error}"})
        return
    keras.saving.save_model(deployed, _temporary(model_output))
    Path(_temporary(model_output)).replace(model_output)
    write_json(record_output, {**record, **details, "status": MADE, "reason": reason})


def _write_unmade(model_output, record_output, record):
    """No model (an empty file, so the rule's output exists) and the record saying why; its variant is marked."""
    logger.info("%s: no QAT: %s", model_output, record["reason"])
    write_bytes(model_output, b"")
    write_json(record_output, record)


def _temporary(path):
    return str(Path(path).with_name(f".{Path(path).stem}.partial.keras"))


def run_qat_conversion(model_path, record_path, dataset_path, scheme, calibration, values_per_channel, output_path):
    """Snakemake entry point: the QAT variant of ``scheme`` made by its tool, or marked with why it was not."""
    from .runtime import configure_tensorflow, load_keras_model

    base = QAT_SCHEMES[scheme]
    qat_record = read_json(record_path)
    details = {
        "scheme": scheme,
        "settings": {**calibration, "values_per_channel": values_per_channel},
        "qat": qat_record,
    }
    with converting(output_path, TOOLS[base], details) as made:
        if qat_record["status"] != MADE:
            raise ToolFailure(f"no QAT variant: {qat_record['reason']}")
        configure_tensorflow(1)
        dataset = load_prepared(dataset_path)
        representative = calibration_images(
            dataset.x_train, calibration["calibration_images"], calibration["calibration_seed"], calibration_key(scheme)
        )
        try:
            flatbuffer = deployed_flatbuffer(load_keras_model(model_path), base, representative, values_per_channel)
        except ToolFailure:
            raise
        except Exception as error:  # the tools raise ConverterError, ValueError, ... for what they cannot make
            raise ToolFailure(converter_reason(error)) from error
        made["flatbuffer"] = loadable(flatbuffer, TOOLS[base])
        if base == LUT:
            _, tensors = binned_model(flatbuffer, values_per_channel)
            made["record"]["compressed_tensors"] = [
                {"tensor": index, "axis": axis, "layer": layer} for index, axis, layer in tensors
            ]
            levels = _most_values_per_channel(flatbuffer, tensors)
            made["record"]["most_values_per_channel"] = levels
    logger.info("%s: QAT variant made with %s", output_path, TOOLS[base])


def _most_values_per_channel(flatbuffer, tensors):
    """The most distinct int8 values any compressed channel holds (at most the table size when QAT held the grid)."""
    from .graph import parse_model

    parsed = parse_model(flatbuffer)
    most = 0
    for index, axis, _ in tensors:
        tensor = parsed.subgraphs[0].tensors[index]
        values = np.frombuffer(bytes(parsed.buffers[tensor.buffer].data), np.int8).reshape(list(tensor.shape))
        channels = [values] if axis is None else list(np.moveaxis(values, axis, 0))
        most = max(most, *(len(np.unique(channel)) for channel in channels))
    return most
