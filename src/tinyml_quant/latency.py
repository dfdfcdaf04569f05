"""Host-CPU latency of one TFLite variant with the LiteRT interpreter.

Batch 1 (what a device runs), a fixed number of threads (recorded, 1 by
default so numbers from machines with different core counts compare), a few
warm-up invokes (the first ones pay for lazy kernel preparation and cold
caches), then ``invokes`` timed invokes, each timed on its own with
``time.perf_counter``. The median and the 90th percentile are reported: the
median is robust to the odd scheduler hiccup, the 90th percentile shows how
wide the spread is. These are host-CPU figures: they rank the schemes on this
machine's LiteRT kernels, not a microcontroller's speed.
"""

import logging
import platform
import time

import numpy as np
from ai_edge_litert import __version__ as litert_version

from .datasets import load_prepared
from .files import write_json
from .runtime import image_shape, load_interpreter, quantize_input
from .variants import NotConverted, not_converted_fields, read_variant

logger = logging.getLogger(__name__)

TIMING_LABEL = "host-CPU"


def _check_counts(threads, invokes, warmup):
    for name, value, smallest in (("threads", threads, 1), ("invokes", invokes, 1), ("warmup", warmup, 0)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < smallest:
            raise ValueError(f"{name} must be an integer of at least {smallest}, got {value!r}")


def measure_latency(model, image=None, threads=1, invokes=50, warmup=5):
    """Median and 90th-percentile milliseconds of one batch-1 invoke of ``model`` (path or bytes).

    ``image`` is one input image without the batch dimension, quantized with
    the input tensor's scale and zero point; zeros when None (kernel time does
    not depend on the pixel values for these models).
    """
    _check_counts(threads, invokes, warmup)
    interpreter = load_interpreter(model, threads)
    input_detail = interpreter.get_input_details()[0]
    expected = image_shape(input_detail)
    if input_detail["shape"][0] != 1:
        interpreter.resize_tensor_input(input_detail["index"], [1, *expected])
        interpreter.allocate_tensors()
        input_detail = interpreter.get_input_details()[0]
    image = np.zeros(expected, np.float32) if image is None else np.asarray(image)
    if tuple(image.shape) != expected:
        raise ValueError(f"an image of shape {tuple(image.shape)} does not fit the model's input {expected}")
    interpreter.set_tensor(input_detail["index"], quantize_input(image[None], input_detail))
    for _ in range(warmup):
        interpreter.invoke()
    seconds = np.empty(invokes)
    for index in range(invokes):
        started = time.perf_counter()
        interpreter.invoke()
        seconds[index] = time.perf_counter() - started
    milliseconds = 1000.0 * seconds
    return {
        "median_ms": float(np.median(milliseconds)),
        "p90_ms": float(np.percentile(milliseconds, 90)),
        "min_ms": float(milliseconds.min()),
        "threads": int(threads),
        "invokes": int(invokes),
        "warmup": int(warmup),
        "batch_size": 1,
        "timing": f"{TIMING_LABEL}: LiteRT {litert_version}, batch 1, {threads} thread(s), "
        f"median and 90th percentile of {invokes} invokes after {warmup} warm-up",
        "clock": TIMING_LABEL,
        "host": f"{platform.machine()} {platform.processor() or platform.system()}".strip(),
        "litert_version": litert_version,
    }


def run_latency(tflite_path, dataset_path, variant, threads, invokes, warmup, output_path):
    """Snakemake entry point: time one variant (``variant`` names it) on the dataset's first test image."""
    dataset = load_prepared(dataset_path)
    try:
        read_variant(tflite_path)
    except NotConverted as error:
        empty = {"median_ms": None, "p90_ms": None, "threads": threads}
        write_json(output_path, {**variant, **not_converted_fields(error), **empty})
        return None
    result = measure_latency(tflite_path, dataset.x_test[0], threads, invokes, warmup)
    result.update(
        {**variant, "tflite_path": str(tflite_path), "dataset_name": dataset.name, "input_image": "test image 0"}
    )
    write_json(output_path, result)
    logger.info(
        "%s: median %.3f ms, p90 %.3f ms (%s)", tflite_path, result["median_ms"], result["p90_ms"], result["timing"]
    )
    return result
