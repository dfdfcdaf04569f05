"""Microcontroller memory, measured with TensorFlow Lite Micro's Python interpreter (``tflite-micro``).

**Arena.** TFLite Micro needs one "tensor arena" of RAM, fixed at start-up,
for activations, scratch buffers and its own bookkeeping. The figure reported
here is the smallest ``arena_size`` for which TFLM's interpreter allocates the
model, found by binary search: every probe constructs
``tflite_micro.runtime.Interpreter.from_bytes(model, arena_size=N)``, which
allocates all tensors, and succeeds or raises. The search keeps "``lo`` fails,
``hi`` allocates" and ends at ``hi == lo + 1``, so the result has been seen to
allocate and one byte less has been seen to fail.

The interpreter's own allocation report (``print_allocations``) is not that
figure: it is printed text, not a value, and on the study's smoke models it was
528-552 bytes *below* the smallest arena that allocates for some int8
variants (memory planning borrows temporary memory that the final tally
omits). It is not read. The binary search assumes that every size above the
minimum allocates too: on the 30 smoke variants that run, every size from 64
bytes below to 64 above the minimum, and 60 random sizes up to four times it,
behaved so.

The figure comes from TFLM's host (x86-64) build with its reference kernels.
The planned activation memory (the arena's "head") is the same on a
microcontroller; the persistent bookkeeping holds pointers, which are half as
wide on a 32-bit MCU, and optimized kernels (CMSIS-NN) may ask for scratch
memory of their own, so a board's figure may differ by a few KB.

**Isolation.** A failed allocation normally raises ``RuntimeError('TFLM failed
to allocate tensors')`` with the reason printed by C++ on standard error, but
often it ends the process with a segmentation fault instead: some kernels'
Prepare goes on with the null pointer of an allocation that failed. On the
30 smoke variants that run, 19 crashed at one or more of 14 sizes probed
below their minimum, some at 80% of it, and every arena under about 500
bytes crashes. So no TFLM code runs in the caller: each measurement runs in
a child process (``python -m tinyml_quant.micro_worker``, through ``children``), which logs every
probe to a file before trying it. When the child dies, the probe it was trying counts as a failure
(too small) and a new child resumes the search from the bounds so far (4 of
the 30 smoke searches hit such a crash once, and ended at the same figure).
The child costs 0.2-0.3 s to start (Python, numpy, TFLM) and a probe 2-15 ms
on the study's models, so a whole measurement (21 probes and one inference)
takes 0.25-0.5 s on a ResNet-8 to ResNet-20; one child per probe would cost
about 5 s.

**Runs, wrong output.** TFLite Micro's outputs must agree with LiteRT's on
the seeded sample within a tolerance (``gate``: ``min_top1_agreement``, the
share of images both give the same class, and ``max_output_steps``, the
largest difference of an integer output in quantization steps). Their
reference kernels round differently from LiteRT's, so correct int8 variants
differ by a few steps and, now and then, in one image's class; a variant
beyond the tolerance computes something else, and its status is ``"runs,
wrong output"`` with the reasons. So is any file whose weights lie outside
the flatbuffer (``graph.external_buffers``), whatever the sample shows:
TFLite Micro never reads them.

**Unsupported** is a result, not an error: when TFLM refuses the model at a
generous arena (float16 weights reach ``DEQUANTIZE``, which TFLM only accepts
from integer types; dynamic-range "hybrid" convolutions), the status is
``"unsupported on TFLite Micro"`` with the refused operator, parsed from
TFLM's message. TFLM stops at the first operator it refuses, so one is named.
"""

import logging
import numbers
import tempfile
import time
from pathlib import Path

import numpy as np

from .children import run_child
from .datasets import load_prepared, seeded_subset
from .files import write_json
from .graph import external_buffers
from .micro_worker import FIRST_ARENA_BYTES, GROWTH, MAX_ARENA_BYTES, refused_operator
from .runtime import dequantize_output, image_shape, load_interpreter, quantize_input
from .variants import NOT_CONVERTED, NotConverted, not_converted_fields, read_variant

logger = logging.getLogger(__name__)

RUNS = "runs"
WRONG_OUTPUT = "runs, wrong output"
UNSUPPORTED = "unsupported on TFLite Micro"
STATUSES = (RUNS, WRONG_OUTPUT, UNSUPPORTED, NOT_CONVERTED)
# The tolerance of the correctness gate, as config ``micro`` names it.
GATE_KEYS = ("min_top1_agreement", "max_output_steps")
# The child process: ``python -m`` this module with the request file.
WORKER_MODULE = "tinyml_quant.micro_worker"
# Each restart follows a crashed probe and narrows the search, so at most one per probe (about 31).
WORKER_RESTARTS = 64
WORKER_TIMEOUT_SECONDS = 900


def _read_model(model):
    """``(bytes, where, LiteRT interpreter)``; a file LiteRT cannot load raises ValueError naming it."""
    content, where = _model_bytes(model)
    try:
        interpreter = load_interpreter(content)
    except ValueError as error:
        raise ValueError(f"{where}: not a loadable TFLite model ({error.__cause__ or error})") from error
    return content, where, interpreter


def _run_worker(request, folder):
    """Run one TFLM child; return ``(events, returncode, stderr tail)``. The child never raises into us."""
    return run_child(WORKER_MODULE, request, folder, WORKER_TIMEOUT_SECONDS)


def _crash_text(returncode, stderr):
    reason = f"signal {-returncode}" if returncode < 0 else f"exit status {returncode}"
    return f"TFLite Micro's process ended with {reason}: {stderr.strip()[-500:]}"


def allocates(model, arena_bytes):
    """Whether TFLM allocates ``model`` in an arena of ``arena_bytes``; a crash of TFLM counts as no."""
    if not isinstance(arena_bytes, numbers.Integral) or isinstance(arena_bytes, bool) or arena_bytes < 0:
        raise ValueError(f"arena_bytes must be a non-negative integer, got {arena_bytes!r}")
    content, _, _ = _read_model(model)
    with tempfile.TemporaryDirectory(prefix="tflm-") as folder:
        model_path = Path(folder) / "model.tflite"
        model_path.write_bytes(content)
        events, returncode, stderr = _run_worker(
            {"mode": "probe", "model_path": str(model_path), "arena_bytes": int(arena_bytes)}, folder
        )
    results = [event for event in events if event["event"] == "result"]
    if results:
        return bool(results[-1]["allocates"])
    if returncode < 0 and events:
        return False  # TFLM crashed inside the probe
    raise RuntimeError(f"the TFLite Micro child process failed: {_crash_text(returncode, stderr)}")


def _litert_outputs(interpreter, images):
    """The quantized inputs both runtimes get, and LiteRT's raw (not dequantized) outputs for them."""
    input_detail = interpreter.get_input_details()[0]
    expected = image_shape(input_detail)
    if tuple(images.shape[1:]) != expected:
        raise ValueError(f"images of shape {tuple(images.shape[1:])} do not fit the model's input {expected}")
    model_inputs = np.ascontiguousarray(quantize_input(images, input_detail))
    output_detail = interpreter.get_output_details()[0]
    outputs = []
    for model_input in model_inputs:
        interpreter.set_tensor(input_detail["index"], model_input[None])
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(output_detail["index"])[0].copy())
    return model_inputs, np.stack(outputs), output_detail


def compare_outputs(tflm_outputs, litert_outputs, output_detail, labels=None):
    """How TFLM's outputs for a sample of images compare with LiteRT's for the same quantized inputs.

    ``top1_agreement``: the share of images both runtimes give the same class.
    For integer outputs, ``max_difference_steps``: the largest difference of
    any output value in quantization steps (the two runtimes' kernels may round
    differently: one step is rounding, more is a real difference); float
    outputs have no steps and report ``max_abs_difference`` only. With
    ``labels``, each runtime's accuracy on the sample. Whether the
    disagreement is tolerable is ``gate_failures``'s answer.
    """
    tflm_outputs, litert_outputs = np.asarray(tflm_outputs), np.asarray(litert_outputs)
    if tflm_outputs.shape != litert_outputs.shape:
        raise ValueError(f"TFLM gave outputs of shape {tflm_outputs.shape}, LiteRT {litert_outputs.shape}")
    tflm_values = dequantize_output(tflm_outputs, output_detail).reshape(len(tflm_outputs), -1)
    litert_values = dequantize_output(litert_outputs, output_detail).reshape(len(litert_outputs), -1)
    tflm_classes, litert_classes = tflm_values.argmax(axis=1), litert_values.argmax(axis=1)
    comparison = {
        "images": int(len(tflm_outputs)),
        "top1_agreement": float(np.mean(tflm_classes == litert_classes)),
        "disagreeing_images": int(np.sum(tflm_classes != litert_classes)),
        "max_abs_difference": float(np.max(np.abs(tflm_values - litert_values))),
        "max_difference_steps": None,
        "tflm_accuracy": None,
        "litert_accuracy": None,
    }
    if np.issubdtype(litert_outputs.dtype, np.integer):
        steps = np.abs(tflm_outputs.astype(np.int64) - litert_outputs.astype(np.int64))
        comparison["max_difference_steps"] = int(steps.max())
    if labels is not None:
        labels = np.asarray(labels)
        comparison["tflm_accuracy"] = float(np.mean(tflm_classes == labels))
        comparison["litert_accuracy"] = float(np.mean(litert_classes == labels))
    return comparison


def check_gate(gate):
    """``gate`` checked: ``min_top1_agreement`` a fraction, ``max_output_steps`` a count; else ValueError."""
    if not isinstance(gate, dict) or set(gate) != set(GATE_KEYS):
        raise ValueError(f"the TFLite Micro gate needs exactly the keys {list(GATE_KEYS)}, got {gate!r}")
    agreement, steps = gate["min_top1_agreement"], gate["max_output_steps"]
    if isinstance(agreement, bool) or not isinstance(agreement, numbers.Real) or not 0 <= agreement <= 1:
        raise ValueError(f"micro.min_top1_agreement must be a fraction from 0 to 1, got {agreement!r}")
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 0:
        raise ValueError(f"micro.max_output_steps must be a non-negative integer, got {steps!r}")
    return {"min_top1_agreement": float(agreement), "max_output_steps": int(steps)}


def gate_failures(agreement, gate):
    """Why TFLite Micro's outputs (``compare_outputs``) fall outside ``gate``'s tolerance; empty when they pass.

    Float outputs have no quantization steps: their agreement alone decides.
    """
    gate = check_gate(gate)
    failures = []
    if agreement["top1_agreement"] < gate["min_top1_agreement"]:
        failures.append(
            f"top-1 agreement with LiteRT {agreement['top1_agreement']:.1%} on {agreement['images']} images, "
            f"below micro.min_top1_agreement {gate['min_top1_agreement']:.0%}"
        )
    steps = agreement.get("max_difference_steps")
    if steps is not None and steps > gate["max_output_steps"]:
        failures.append(
            f"outputs up to {steps} quantization steps from LiteRT's, over micro.max_output_steps "
            f"{gate['max_output_steps']}"
        )
    return failures


def _external_failure(external):
    """The reason a file with weights outside the flatbuffer is wrong on TFLite Micro."""
    named = ", ".join(map(str, list(external)[:5])) + (", ..." if len(external) > 5 else "")
    return (
        f"weights outside the flatbuffer ({len(external)} buffers, {sum(external.values())} bytes at "
        f"Buffer.offset: {named}), which TensorFlow Lite Micro never reads"
    )


def _unsupported(result, message):
    operator, node = refused_operator(message)
    text = "\n".join(line.strip() for line in message.splitlines() if line.strip())  # TFLM ends lines with \r\n
    result.update(
        status=UNSUPPORTED, arena_bytes=None, unsupported_operator=operator, unsupported_node=node, tflm_error=text
    )
    return result


def _model_bytes(model):
    """``(bytes, where)`` of a ``.tflite`` path or flatbuffer bytes; ``where`` names it in errors."""
    if isinstance(model, (bytes, bytearray)):
        return bytes(model), "model bytes"
    try:
        return Path(model).read_bytes(), str(model)
    except OSError as error:
        raise ValueError(f"{model}: cannot read the TFLite file ({error})") from error


def _run_on_tflm(content, where, model_inputs, max_arena_bytes, result):
    """The arena search and the run of ``model_inputs`` in children; the final event, counts into ``result``."""
    with tempfile.TemporaryDirectory(prefix="tflm-") as folder:
        model_path, input_path = Path(folder) / "model.tflite", Path(folder) / "input.npy"
        model_path.write_bytes(content)
        np.save(input_path, model_inputs)
        request = {
            "mode": "measure",
            "model_path": str(model_path),
            "input_path": str(input_path),
            "max_arena_bytes": max_arena_bytes,
        }
        final = _search_in_children(request, folder, where, result)
    if final["event"] == "too_large":
        raise RuntimeError(f"{where}: TFLite Micro could not allocate the model in {max_arena_bytes} bytes")
    return final


def measure_micro(model, images=None, labels=None, max_arena_bytes=MAX_ARENA_BYTES, reference=None, gate=None):
    """Measure one variant on TFLite Micro; see the module docstring for the method.

    ``model`` is a ``.tflite`` path or flatbuffer bytes; ``images`` a batch
    of input images (unquantized pixels, NHWC). TFLM runs each at the measured
    arena and its outputs are compared with LiteRT's on the same quantized
    inputs (``compare_outputs``; ``labels`` add each runtime's accuracy);
    without images it runs one image of zeros. ``reference`` is the model
    LiteRT runs instead, for a model only TFLite Micro runs (a compressed one,
    against its uncompressed twin); by default the model itself. ``gate``
    (``check_gate``) is the tolerance of the correctness gate; without it only
    weights outside the flatbuffer make the output wrong.

    Returns a dict: ``status`` (``"runs"``, ``"runs, wrong output"`` or
    ``"unsupported on TFLite Micro"``), ``arena_bytes`` (None when
    unsupported), ``flash_bytes`` (the flatbuffer's length), the refused
    operator when unsupported, ``wrong_output`` (why the gate failed, or
    None), ``external_buffer_bytes``, and the search's cost. A file that is
    not a TFLite model raises ValueError.
    """
    from tflite_micro import __version__ as tflm_version

    if not isinstance(max_arena_bytes, int) or max_arena_bytes < FIRST_ARENA_BYTES:
        raise ValueError(f"max_arena_bytes must be an integer of at least {FIRST_ARENA_BYTES}, got {max_arena_bytes!r}")
    if gate is not None:
        gate = check_gate(gate)
    content, where = _model_bytes(model)
    _, _, interpreter = _read_model(model if reference is None else reference)
    # Read from the file, not the sample: a sample may agree by chance, and TFLite Micro never reads those weights.
    external = external_buffers(content)
    if images is None:
        input_shape = image_shape(interpreter.get_input_details()[0])
        images = np.zeros((1, *input_shape), np.float32)
    model_inputs, litert_outputs, output_detail = _litert_outputs(interpreter, np.asarray(images))
    result = {
        "status": RUNS,
        "arena_bytes": None,
        "flash_bytes": len(content),
        "unsupported_operator": None,
        "unsupported_node": None,
        "tflm_error": None,
        "largest_failing_arena_bytes": None,
        "agreement": None,
        "gate": gate,
        "wrong_output": None,
        "external_buffer_bytes": sum(external.values()),
        "arena_probes": 0,
        "worker_restarts": 0,
        "crashed_probe_bytes": [],
        "measurement_seconds": 0.0,
        "tflm_version": tflm_version,
    }
    started = time.perf_counter()
    final = _run_on_tflm(content, where, model_inputs, max_arena_bytes, result)
    result["measurement_seconds"] = time.perf_counter() - started
    if final["event"] == "unsupported":
        return _unsupported(result, final["message"])
    result["arena_bytes"] = final["arena_bytes"]
    result["largest_failing_arena_bytes"] = final["largest_failing_arena_bytes"]
    tflm_outputs = np.asarray(final["outputs"], dtype=final["output_dtype"])
    result["agreement"] = compare_outputs(tflm_outputs, litert_outputs, output_detail, labels)
    failures = [_external_failure(external)] if external else []
    failures += gate_failures(result["agreement"], gate) if gate is not None else []
    if failures:
        result.update(status=WRONG_OUTPUT, wrong_output="; ".join(failures))
    return result


def tflm_outputs(model, images, reference=None):
    """TFLite Micro's raw outputs for ``images``, quantized as the model's input takes them; None if TFLM refuses it.

    ``reference`` supplies the input's quantization where LiteRT cannot load ``model``.
    """
    content, where = _model_bytes(model)
    _, _, interpreter = _read_model(reference if reference is not None else content)
    model_inputs = np.ascontiguousarray(quantize_input(np.asarray(images), interpreter.get_input_details()[0]))
    final = _run_on_tflm(content, where, model_inputs, MAX_ARENA_BYTES, {"arena_probes": 0, "crashed_probe_bytes": []})
    if final["event"] != "done":
        return None
    return np.asarray(final["outputs"], dtype=final["output_dtype"])


def _search_in_children(request, folder, where, result):
    """Run children until one finishes the search; a child killed in a probe is replaced.

    Returns the final event; counts probes and restarts into ``result``.
    """
    state = {"low": 0, "high": None}
    for attempt in range(WORKER_RESTARTS + 1):
        events, returncode, stderr = _run_worker({**request, "low": state["low"], "high": state["high"]}, folder)
        result["arena_probes"] += sum(event["event"] == "result" for event in events)
        final = _follow_events(events, state)
        if final is not None:
            return final
        if returncode >= 0 or not events:
            # Not a crash of TFLM (that ends the child with a signal): a broken set-up or a bug.
            raise RuntimeError(f"{where}: the TFLite Micro child process failed: {_crash_text(returncode, stderr)}")
        crashed = _interrupted_probe(events)
        if crashed is None or (state["high"] is None and GROWTH * crashed > request["max_arena_bytes"]):
            # A crash outside the search (in invoke), or at every arena up to the largest: TFLM cannot run it.
            return {"event": "unsupported", "message": _crash_text(returncode, stderr)}
        state["low"] = max(state["low"], crashed)  # a probe that crashed the child failed: too small
        result["arena_probes"] += 1
        result["crashed_probe_bytes"].append(crashed)
        result["worker_restarts"] = attempt + 1
    raise RuntimeError(f"{where}: TFLite Micro crashed {WORKER_RESTARTS + 1} times during the arena search")


def _follow_events(events, state):
    """Update the search bounds from the child's log; return its final event, if it got that far."""
    for event in events:
        if event["event"] == "result" and event["allocates"]:
            state["high"] = event["arena_bytes"] if state["high"] is None else min(state["high"], event["arena_bytes"])
        elif event["event"] == "result":
            state["low"] = max(state["low"], event["arena_bytes"])
        elif event["event"] in ("done", "unsupported", "too_large"):
            return event
    return None


def _interrupted_probe(events):
    """The arena size of a probe the child started but never finished, if its log ends with one."""
    if events and events[-1]["event"] == "probe":
        return events[-1]["arena_bytes"]
    return None


def run_micro_measurement(
    tflite_path, dataset_path, variant, agreement_images, sample_seed, gate, output_path, reference_path=None
):
    """Snakemake entry point: measure one variant on TFLM, and gate it against LiteRT on a seeded test sample.

    ``reference_path`` is the file LiteRT runs for a variant only TFLite Micro
    runs (the LUT-compressed one: its binned twin).
    """
    dataset = load_prepared(dataset_path)
    sample = seeded_subset(len(dataset.y_test), agreement_images, sample_seed)
    try:
        read_variant(tflite_path)
        if reference_path is not None:
            read_variant(reference_path)
    except NotConverted as error:
        result = {**variant, **not_converted_fields(error), "arena_bytes": None, "flash_bytes": None}
        write_json(output_path, {**result, "unsupported_operator": None, "agreement": None, "wrong_output": None})
        return result
    result = measure_micro(
        tflite_path, dataset.x_test[sample], dataset.y_test[sample], reference=reference_path, gate=gate
    )
    result.update(
        {
            **variant,
            "tflite_path": str(tflite_path),
            "dataset_name": dataset.name,
            "sample": f"{len(sample)} test images, seed {sample_seed}",
            "arena_method": "smallest arena that allocates, by binary search over TFLM interpreter construction",
        }
    )
    write_json(output_path, result)
    logger.info(
        "%s: %s%s, arena %s bytes, flash %d bytes, agreement %s",
        tflite_path,
        result["status"],
        f" ({result['wrong_output']})" if result["wrong_output"] else "",
        result["arena_bytes"],
        result["flash_bytes"],
        result["agreement"],
    )
    return result
