"""The TensorFlow Lite Micro child process of ``micro``: the arena search and the sample run, one request each.

Run as ``python -m tinyml_quant.micro_worker <request.json>`` by
``micro._run_worker`` (``children.run_child``). TFLM can end this process with a segmentation fault
when an arena is too small, so every probe is logged to the request's
progress file before it is tried and after it ends: the parent reads how far
it got and resumes in a new child.

TFLM's Python binding raises one bare RuntimeError whatever went wrong; the
reason exists only in the text its C++ code prints to descriptor 2, so this
module captures that text and reads it with the patterns below (checked on
real TFLM messages in the tests): the one place the project reads a program's
printed words.
"""

import json
import os
import re
import resource
import sys
import tempfile
from pathlib import Path

import numpy as np

from .children import event_log

FIRST_ARENA_BYTES = 1 << 20  # generous for the study's models; grown GROWTH-fold while memory is short
GROWTH = 4
MAX_ARENA_BYTES = 1 << 30

# TFLM's Python binding raises one bare RuntimeError whatever went wrong; the reason exists only
# in the text its C++ code prints, so these patterns read that text (tested on real TFLM messages).
# "Too many buffers" is the memory planner running out of its scratch space in a small arena.
_MEMORY_FAILURE = re.compile(r"Failed to allocate|bytes required|missing: \d+|Too many buffers")
_REFUSED_NODE = re.compile(r"Node (\S+) \(number (\d+)\) failed to (prepare|invoke)")
_MISSING_OPERATOR = re.compile(r"Didn't find op for builtin opcode '([^']+)'")


def refused_operator(message):
    """``(operator, node index)`` that TFLM names in an error message; ``(None, None)`` if it names none."""
    found = _REFUSED_NODE.search(message or "")
    if found:
        return found.group(1), int(found.group(2))
    found = _MISSING_OPERATOR.search(message or "")
    if found:
        return found.group(1), None
    return None, None


def is_memory_failure(message):
    """Whether TFLM's message says the arena was too small (rather than that the model is refused)."""
    return bool(_MEMORY_FAILURE.search(message or ""))


def _capture_stderr(function):
    """``(value, failed, text)`` of ``function()`` with file descriptor 2 captured.

    TFLM prints its reasons from C++ straight to descriptor 2, and raises
    only a generic RuntimeError.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            value, failed = function(), False
        except RuntimeError:
            value, failed = None, True
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        text = capture.read().decode(errors="replace")
    return value, failed, text


def main(request_path):
    """Child process: run the probes of one request, logging each before and after it runs."""
    from tflite_micro import runtime

    # Crashes are expected here (arenas too small for TFLM's own records): leave no core files behind.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    request = json.loads(Path(request_path).read_text())
    model = Path(request["model_path"]).read_bytes()
    log = event_log(request["progress_path"])

    def probe(arena_bytes):
        log(event="probe", arena_bytes=arena_bytes)
        interpreter, failed, text = _capture_stderr(
            lambda: runtime.Interpreter.from_bytes(model, arena_size=arena_bytes)
        )
        log(event="result", arena_bytes=arena_bytes, allocates=not failed, message=text if failed else "")
        return interpreter, text

    if request["mode"] == "probe":
        probe(request["arena_bytes"])
        return
    _search_and_run(request, probe, log)


def _search_and_run(request, probe, log):
    """Find a generous arena, bisect down to the smallest, then run the input once at that size."""
    low, high, smallest = request["low"], request["high"], None
    if high is None:
        arena_bytes = max(FIRST_ARENA_BYTES, GROWTH * low)
        while smallest is None:
            smallest, text = probe(arena_bytes)
            if smallest is None and not is_memory_failure(text):
                log(event="unsupported", message=text)
                return
            if smallest is None:
                low, arena_bytes = arena_bytes, arena_bytes * GROWTH
                if arena_bytes > request["max_arena_bytes"]:
                    log(event="too_large")
                    return
        high = arena_bytes
    while high - low > 1:
        middle = (low + high) // 2
        interpreter, _ = probe(middle)
        if interpreter is not None:
            high, smallest = middle, interpreter
        else:
            low = middle
    if smallest is None:  # resumed after a crash with the bounds already known
        smallest, text = probe(high)
        if smallest is None:
            log(event="unsupported", message=f"allocation at {high} bytes did not repeat: {text}")
            return
    log(event="invoke")
    outputs, failed, text = _capture_stderr(lambda: _invoke_each(smallest, np.load(request["input_path"])))
    if failed:
        log(event="unsupported", message=text)
        return
    log(
        event="done",
        arena_bytes=high,
        largest_failing_arena_bytes=low,
        outputs=outputs.tolist(),
        output_dtype=outputs.dtype.name,
    )


def _invoke_each(interpreter, model_inputs):
    """TFLM's output for each input, one invoke each, in the arena of the measured size."""
    outputs = []
    for model_input in model_inputs:
        interpreter.set_input(model_input[None], 0)
        interpreter.invoke()
        outputs.append(np.asarray(interpreter.get_output(0))[0].copy())
    return np.stack(outputs)


if __name__ == "__main__":
    main(sys.argv[1])
