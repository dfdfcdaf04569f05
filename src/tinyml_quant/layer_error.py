"""Per-layer quantization error: every quantized layer's output against the same tensor of the fp32 variant.

Method. Both ``.tflite`` files the study evaluates run in LiteRT (its builtin
kernels, no delegate) with every intermediate tensor kept
(``experimental_preserve_all_tensors``) on the same
seeded test images (not the calibration images, which come from the training
split). The converter names an operator's output tensor after the Keras layers
it fused, the same in every variant of one model, so each operator output of
the quantized variant is matched by name to the fp32 variant's tensor. The error
is therefore the error the deployed variant carries at that layer, accumulated
from the input on. Per layer:

* ``rmse``: root mean square of (dequantized output - fp32 output);
* ``rmse_in_steps``: ``rmse`` over the tensor's own quantization scale, the
  error in that layer's quantization steps (rounding alone is about 0.29);
* ``cosine_similarity`` of the two outputs, all images flattened;
* ``snr_db``: 10 log10(power of the fp32 output / power of the error).

Why not TensorFlow's ``QuantizationDebugger`` for the matching: it always
re-quantizes the model itself as int8 (``mlir_quantize`` without an inference
type: a 16x8 converter gets int8 scales), so it cannot measure int16x8, and it
measures its own re-quantized model rather than the variant file. The
workflow uses it where it does apply, for the int8 float fallback (``recovery``).
"""

import logging

import numpy as np
import pandas as pd
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from .datasets import load_prepared, seeded_subset
from .files import write_csv
from .runtime import quantize_input
from .variants import NotConverted, read_variant

logger = logging.getLogger(__name__)

# The columns of a layer-error table, after the variant's and the image count.
LAYER_COLUMNS = (
    *("layer", "depth", "operator", "tensor", "dtype"),
    *("scale", "rmse", "rmse_in_steps", "cosine_similarity", "snr_db"),
)
# Operators whose output is a copy, a padding or a reinterpretation of their input: no error of their own.
PASS_THROUGH = ("QUANTIZE", "DEQUANTIZE", "RESHAPE", "PAD")


def _interpreter(model):
    """LiteRT with its builtin kernels and no delegate: XNNPACK would fuse layers and not keep their outputs."""
    interpreter = Interpreter(
        model_path=str(model),
        experimental_preserve_all_tensors=True,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        num_threads=1,
    )
    interpreter.allocate_tensors()
    return interpreter


def _run(interpreter, image):
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], quantize_input(image[None], detail))
    interpreter.invoke()


def layer_errors(quantized_model, reference_model, images):
    """One row per matched operator output of ``quantized_model``, in execution order (see the module docstring)."""
    quantized, reference = _interpreter(quantized_model), _interpreter(reference_model)
    reference_tensors = {detail["name"]: detail["index"] for detail in reference.get_tensor_details()}
    quantized_details = {detail["index"]: detail for detail in quantized.get_tensor_details()}
    layers = []
    for operator in quantized._get_ops_details():  # LiteRT's only listing of operators in execution order
        if operator["op_name"] in PASS_THROUGH or not len(operator["outputs"]):
            continue
        detail = quantized_details[operator["outputs"][0]]
        # A quantized output has a scale: integer tensors without one are indices and shapes
        # (a Reshape's SHAPE, STRIDED_SLICE and PACK), not values carrying an error.
        quantized_output = np.issubdtype(detail["dtype"], np.integer) and detail["quantization"][0] > 0
        if quantized_output and detail["name"] in reference_tensors:
            layers.append((operator["op_name"], detail, reference_tensors[detail["name"]]))
    if not layers:
        raise ValueError(f"{quantized_model}: no quantized layer matches a tensor of {reference_model}")
    sums = np.zeros((len(layers), 4))  # error power, signal power, dot product, quantized power
    counts = np.zeros(len(layers))
    for image in images:
        _run(quantized, image)
        _run(reference, image)
        for position, (_, detail, reference_index) in enumerate(layers):
            scale, zero_point = detail["quantization"]
            values = (quantized.get_tensor(detail["index"]).astype(np.float64) - zero_point) * scale
            expected = reference.get_tensor(reference_index).astype(np.float64)
            if values.shape != expected.shape:
                raise ValueError(f"tensor {detail['name']}: shapes differ ({values.shape} and {expected.shape})")
            error = values - expected
            sums[position] += (np.sum(error**2), np.sum(expected**2), np.sum(values * expected), np.sum(values**2))
            counts[position] += values.size
    rows = []
    for position, (operator, detail, _) in enumerate(layers):
        rows.append(
            {
                "layer": position,
                "depth": position / max(1, len(layers) - 1),
                "operator": operator,
                "tensor": detail["name"],
                "dtype": np.dtype(detail["dtype"]).name,
                **error_figures(*sums[position], counts[position], float(detail["quantization"][0])),
            }
        )
    return pd.DataFrame(rows, columns=list(LAYER_COLUMNS))


def error_figures(error_power, signal_power, dot, quantized_power, count, scale):
    """One layer's figures from its sums over all its values (see the module docstring).

    Sums of squared error, squared fp32 output, their product with the quantized
    output, and squared quantized output, over ``count`` values; ``scale`` > 0.
    An exact layer has an infinite SNR; an all-zero output, no cosine (NaN).
    """
    rmse = float(np.sqrt(error_power / count))
    norms = float(np.sqrt(signal_power * quantized_power))
    return {
        "scale": scale,
        "rmse": rmse,
        "rmse_in_steps": rmse / scale,
        "cosine_similarity": float(dot / norms) if norms else float("nan"),
        "snr_db": float(10 * np.log10(signal_power / error_power)) if error_power else float("inf"),
    }


def run_layer_error(quantized_path, reference_path, dataset_path, images, sample_seed, variant, output_path):
    """Snakemake entry point: the per-layer error CSV of one variant on a seeded sample of test images."""
    dataset = load_prepared(dataset_path)
    sample = seeded_subset(len(dataset.y_test), images, sample_seed)
    try:
        read_variant(quantized_path)
        read_variant(reference_path)
    except NotConverted as error:
        logger.warning("%s: no layer error: %s", quantized_path, error)
        write_csv(output_path, pd.DataFrame(columns=[*variant, "images", *LAYER_COLUMNS]))
        return None
    table = layer_errors(quantized_path, reference_path, dataset.x_test[sample])
    table.insert(0, "images", len(sample))
    for position, (name, value) in enumerate(variant.items()):  # dataset, model, seed, scheme
        table.insert(position, name, value)
    write_csv(output_path, table)
    worst = table.sort_values("rmse_in_steps", ascending=False).iloc[0]
    logger.info(
        "%s: %d layers; largest error %.2f steps at %s", quantized_path, len(table), worst.rmse_in_steps, worst.tensor
    )
    return table
