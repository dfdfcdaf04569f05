"""The int8 variant in TensorFlow Lite Micro's LUT compression: weights binned to 16 values a channel, 4-bit indices.

TFLite Micro's compression (``tflite_micro.compression``) stores a tensor as
value tables and bit-packed indices; its DECODE operator (custom operator
``TFLM_DECODE``) rebuilds the tensor in the arena before the layer runs. A
table may hold at most ``2**bits`` values, so the int8 variant's weights are
binned first: each output channel (along the tensor's quantized dimension, the
axis its scales are per) to ``values_per_channel`` values, by one-dimensional
k-means (Lloyd's algorithm started from the channel's quantiles, so it needs
no seed), rounded back to int8. Scales and zero points are the int8 variant's.

Two files come out. The *binned* model is a plain int8 model with the binned
weights: LiteRT evaluates its accuracy on the whole test set. The *compressed*
model is what a device stores: its size is the variant's flash, TFLite Micro
measures its arena (the decoded tensors live there) and runs it. Only weights
that compression makes smaller are compressed (a table of 16 values per
channel must cost less than the 4 bits it saves per weight).

``verify_decoding`` runs both files on TFLite Micro on the same images and
refuses a compressed file whose outputs differ from the binned model's in any
value: a table that does not fit its tensor (per-tensor tables over
per-channel weights, a wrong axis) can run without an error and give wrong
outputs.
"""

import logging
import math

import numpy as np

from .datasets import load_prepared, seeded_subset
from .graph import operator_name, parse_model
from .schemes import LUT, MICRO_COMPRESSION
from .variants import ToolFailure, converting, read_variant

logger = logging.getLogger(__name__)

# Operators whose constant weights (input 1) are binned and compressed.
WEIGHTED_OPERATORS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
INT8_RANGE = (-127, 127)  # TFLite's symmetric int8 weights
KMEANS_ITERATIONS = 100


def index_bits(values_per_channel):
    return max(1, math.ceil(math.log2(values_per_channel)))


def kmeans_bins(values, count):
    """``values`` (int8) with each replaced by the nearest of at most ``count`` int8 centres (1-D k-means)."""
    values = np.asarray(values)
    if len(np.unique(values)) <= count:
        return values.copy()
    points = values.astype(np.float64).ravel()
    centres = np.quantile(points, (np.arange(count) + 0.5) / count)
    for _ in range(KMEANS_ITERATIONS):
        nearest = np.abs(points[:, None] - centres[None, :]).argmin(axis=1)
        sums = np.bincount(nearest, weights=points, minlength=count)
        sizes = np.bincount(nearest, minlength=count)
        updated = np.where(sizes > 0, sums / np.maximum(sizes, 1), centres)
        if np.allclose(updated, centres):
            break
        centres = updated
    centres = np.unique(np.clip(np.round(centres), *INT8_RANGE))
    nearest = np.abs(points[:, None] - centres[None, :]).argmin(axis=1)
    return centres[nearest].astype(values.dtype).reshape(values.shape)


def _weights(parsed):
    """``(operator name, output tensor name, weight tensor index)`` of every weighted operator."""
    subgraph = parsed.subgraphs[0]
    for operator in subgraph.operators or []:
        name = operator_name(parsed, operator)
        if name in WEIGHTED_OPERATORS and len(operator.inputs) > 1 and operator.inputs[1] >= 0:
            output = subgraph.tensors[operator.outputs[0]].name
            yield name, output.decode() if isinstance(output, bytes) else output, int(operator.inputs[1])


def saves_bytes(shape, axis, values_per_channel):
    """Whether LUT compression of an int8 tensor of ``shape`` is smaller than the tensor.

    One table per channel along ``axis``; ``axis`` None: one table for the whole (per-tensor) tensor.
    """
    elements = int(np.prod(shape))
    channels = 1 if axis is None else int(shape[axis])
    return elements * index_bits(values_per_channel) / 8 + channels * values_per_channel < elements


def binned_model(flatbuffer, values_per_channel, keep=()):
    """``(binned flatbuffer, [(tensor index, axis, layer)])``: the int8 model with its weights binned per channel.

    The list names the weight tensors to compress. ``keep`` names layers (by
    output tensor) left as they are: not binned, not compressed.
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    parsed = parse_model(flatbuffer)
    subgraph = parsed.subgraphs[0]
    compressed = []
    for operator, layer, index in _weights(parsed):
        tensor = subgraph.tensors[index]
        if layer in keep or tensor.type != schema.TensorType.INT8:
            continue
        buffer = parsed.buffers[tensor.buffer]
        if buffer.data is None or len(buffer.data) == 0:
            raise ToolFailure(f"{operator} {layer}: its weights are not stored in the flatbuffer's own buffers")
        shape = [int(size) for size in tensor.shape]
        quantization = tensor.quantization
        per_channel = quantization is not None and quantization.scale is not None and len(quantization.scale) > 1
        axis = int(quantization.quantizedDimension) if per_channel else None
        weights = np.frombuffer(bytes(buffer.data), np.int8).reshape(shape)
        if axis is None:
            binned = kmeans_bins(weights, values_per_channel)
        else:
            channels = [kmeans_bins(channel, values_per_channel) for channel in np.moveaxis(weights, axis, 0)]
            binned = np.moveaxis(np.stack(channels), 0, axis)
        buffer.data = np.frombuffer(np.ascontiguousarray(binned).tobytes(), np.uint8)
        if saves_bytes(shape, axis, values_per_channel):
            compressed.append((index, axis, layer))
    builder = flatbuffers.Builder(len(flatbuffer) + 1024)
    builder.Finish(parsed.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output()), compressed


def compression_spec(tensors, values_per_channel):
    """TFLite Micro's compression spec: one table per channel along each tensor's quantized axis."""
    from tflite_micro.tensorflow.lite.micro.compression import spec

    return [
        spec.Tensor(
            subgraph=0,
            tensor=index,
            compression=[
                spec.LookUpTableCompression(
                    index_bitwidth=index_bits(values_per_channel),
                    mode=spec.PerTensor() if axis is None else spec.PerChannel(axis=axis),
                )
            ],
        )
        for index, axis, _ in tensors
    ]


def compress(binned, tensors, values_per_channel):
    """The binned model with ``tensors`` LUT-compressed by TFLite Micro's compressor; ToolFailure with its reason."""
    from tflite_micro import compression

    if not tensors:
        raise ToolFailure("no weight tensor is large enough for LUT compression to make it smaller")
    try:
        return bytes(compression.compress(binned, compression_spec(tensors, values_per_channel)))
    except Exception as error:  # the compressor raises CompressionError (and others) naming the tensor
        raise ToolFailure(f"{type(error).__name__}: {error}") from error


def verify_decoding(compressed, binned, images):
    """Raise ToolFailure unless TFLite Micro gives the same outputs, value for value, for both files on ``images``."""
    from .micro import tflm_outputs

    decoded, expected = tflm_outputs(compressed, images, reference=binned), tflm_outputs(binned, images)
    if decoded is None or expected is None:
        raise ToolFailure("TFLite Micro does not run the binned or the compressed model")
    if decoded.shape != expected.shape or not np.array_equal(decoded, expected):
        differing = int(np.sum(np.any(decoded != expected, axis=tuple(range(1, expected.ndim)))))
        raise ToolFailure(
            f"TFLite Micro's outputs for the compressed model differ from the binned model's on {differing} of "
            f"{len(images)} images: its tables do not decode to the binned weights"
        )


def run_binning(int8_path, settings, output_path, keep=()):
    """Snakemake entry point: the int8 variant with its weights binned; the record lists the tensors to compress."""
    details = {"scheme": LUT, "settings": settings, "kept_layers": sorted(keep)}
    with converting(output_path, MICRO_COMPRESSION, details) as made:
        binned, tensors = binned_model(read_variant(int8_path), settings["values_per_channel"], keep)
        made["flatbuffer"] = binned
        made["record"]["compressed_tensors"] = [
            {"tensor": index, "axis": axis, "layer": layer} for index, axis, layer in tensors
        ]
        logger.info("%s: weights binned to %d values a channel", output_path, settings["values_per_channel"])


def run_compression(binned_path, dataset_path, settings, sample_images, sample_seed, output_path, scheme=LUT):
    """Snakemake entry point: compress the binned model and check, on a seeded test sample, that it decodes exactly."""
    from .variants import read_record

    dataset = load_prepared(dataset_path)
    sample = dataset.x_test[seeded_subset(len(dataset.y_test), sample_images, sample_seed)]
    with converting(output_path, MICRO_COMPRESSION, {"scheme": scheme, "settings": settings}) as made:
        binned = read_variant(binned_path)
        tensors = [
            (item["tensor"], item["axis"], item["layer"]) for item in read_record(binned_path)["compressed_tensors"]
        ]
        compressed = compress(binned, tensors, settings["values_per_channel"])
        verify_decoding(compressed, binned, sample)
        made["flatbuffer"] = compressed
        made["record"].update(compressed_tensors=len(tensors), verified_images=len(sample), binned_bytes=len(binned))
        # Inside the block: an int8 variant that was not converted leaves no tensors to count.
        logger.info("%s: %d tensors compressed, decoding verified on TFLite Micro", output_path, len(tensors))
