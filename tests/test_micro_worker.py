"""The TFLite Micro child process: its search, its reading of TFLM's messages, its capture of descriptor 2."""

import os

import numpy as np
import pytest

from tinyml_quant import micro_worker
from tinyml_quant.micro_worker import refused_operator

INVOKE_FAILURE = "Node ADD (number 0) failed to invoke with status 1\n"


class DoublingInterpreter:
    """TFLM's Python interpreter interface for a model whose output is its input doubled."""

    def __init__(self, fails_in_invoke=False):
        self.fails_in_invoke = fails_in_invoke

    def set_input(self, value, index):
        assert index == 0
        self.value = value

    def invoke(self):
        if self.fails_in_invoke:  # as TFLM does: its reason on descriptor 2, a generic exception
            os.write(2, INVOKE_FAILURE.encode())
            raise RuntimeError("invoke failed")

    def get_output(self, index):
        assert index == 0  # the model's one output
        return self.value * 2


def search(tmp_path, minimum, low=0, high=None, max_arena_bytes=1 << 30, refusal=None, **interpreter):
    """Run the child's search against a model that allocates from ``minimum`` bytes; ``(events, probed sizes)``."""
    np.save(tmp_path / "input.npy", np.arange(6, dtype=np.int8).reshape(2, 3))
    request = {"low": low, "high": high, "max_arena_bytes": max_arena_bytes, "input_path": tmp_path / "input.npy"}
    events, probed = [], []

    def probe(arena_bytes):
        probed.append(arena_bytes)
        if refusal:
            return None, refusal
        if arena_bytes >= minimum:
            return DoublingInterpreter(**interpreter), ""
        return None, f"Failed to allocate tail memory. Requested: {minimum}, available {arena_bytes}, missing: 1"

    micro_worker._search_and_run(request, probe, lambda **event: events.append(event))
    return events, probed


def test_the_search_bisects_to_the_smallest_arena_then_runs_each_input_there(tmp_path):
    first = micro_worker.FIRST_ARENA_BYTES
    events, probed = search(tmp_path, 6088)
    assert events == [
        {"event": "invoke"},
        {
            "event": "done",
            "arena_bytes": 6088,
            "largest_failing_arena_bytes": 6087,
            "outputs": [[0, 2, 4], [6, 8, 10]],
            "output_dtype": "int8",
        },
    ]
    assert probed[:2] == [first, first // 2] and len(probed) == 21
    # Above the first guess: grow four-fold while memory is short, then bisect between the last two.
    events, probed = search(tmp_path, 3 << 20)
    assert probed[:3] == [first, 4 * first, (first + 4 * first) // 2] and events[-1]["arena_bytes"] == 3 << 20
    # Resumed after a crash at 2 MiB: the first guess is four times the crashed size.
    assert search(tmp_path, 3 << 20, low=2 << 20)[1][0] == 8 << 20


def test_the_search_stops_with_a_finding_when_tflm_refuses_or_memory_runs_out(tmp_path):
    refusal = "Didn't find op for builtin opcode 'STABLEHLO_ADD'"
    assert search(tmp_path, 6088, refusal=refusal) == ([{"event": "unsupported", "message": refusal}], [1 << 20])
    events, probed = search(tmp_path, 5 << 20, max_arena_bytes=4 << 20)
    assert events == [{"event": "too_large"}] and probed == [1 << 20, 4 << 20]
    assert search(tmp_path, 5 << 20, max_arena_bytes=16 << 20)[0][-1]["arena_bytes"] == 5 << 20
    events, _ = search(tmp_path, 6088, fails_in_invoke=True)
    assert events == [{"event": "invoke"}, {"event": "unsupported", "message": INVOKE_FAILURE}]


def test_tflms_own_words_are_captured_whole_and_descriptor_2_is_given_back():
    """TFLM writes its reasons from C++ to descriptor 2: every byte of them, undecodable ones replaced."""
    before = os.fstat(2)

    def fails():
        os.write(2, b"Node CONV_2D (number 3) failed to prepare \xff\n")
        raise RuntimeError("generic")

    assert micro_worker._capture_stderr(fails) == (None, True, "Node CONV_2D (number 3) failed to prepare \ufffd\n")
    assert micro_worker._capture_stderr(lambda: 7) == (7, False, "")
    after = os.fstat(2)
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)


def test_a_resumed_search_with_known_bounds_confirms_its_upper_bound(tmp_path):
    events, probed = search(tmp_path, 6088, low=6087, high=6088)
    assert probed == [6088] and events[-1]["arena_bytes"] == 6088 and events[-1]["largest_failing_arena_bytes"] == 6087
    events, probed = search(tmp_path, 6088, low=6000, high=6100)
    assert events[-1]["arena_bytes"] == 6088 and 6088 in probed and 6087 in probed and 6100 not in probed
    # The size that allocated in the crashed child fails in this one: TFLM is not behaving, a finding.
    events, probed = search(tmp_path, 7000, low=6087, high=6088)
    assert probed == [6088] and events == [
        {
            "event": "unsupported",
            "message": "allocation at 6088 bytes did not repeat: "
            "Failed to allocate tail memory. Requested: 7000, available 6088, missing: 1",
        }
    ]


@pytest.mark.parametrize(
    "message",
    [
        # One of TFLM's wordings each, so that every one of them is needed.
        "Failed to allocate tail memory. Requested: 7000, available 6088",
        "Arena size is too small for all buffers. Needed 6088 but only 6000 was available.\n88 bytes required",
        "missing: 12",
        "Too many buffers (max is 128)",
    ],
    # Short ids: mutmut selects tests by id, and a message's newline cannot be passed as one.
    ids=["tail memory", "arena too small", "bytes missing", "too many buffers"],
)
def test_tflm_memory_messages_are_told_from_refusals(message):
    assert micro_worker.is_memory_failure(message)


@pytest.mark.parametrize(
    "message",
    ["", None, "Node DEQUANTIZE (number 0) failed to prepare", "missing: many"],
    ids=["empty", "none", "refusal", "no byte count"],
)
def test_a_refusal_or_no_message_is_not_a_memory_failure(message):
    assert not micro_worker.is_memory_failure(message)


def test_refused_operator_is_read_from_tflm_messages():
    message = (
        "tensorflow/lite/micro/kernels/dequantize_common.cc:42 input->type == kTfLiteInt8 was not true.\r\n"
        "Node DEQUANTIZE (number 0) failed to prepare with status 1\r\n"
    )
    assert refused_operator(message) == ("DEQUANTIZE", 0)
    assert refused_operator("Didn't find op for builtin opcode 'STABLEHLO_ADD'") == ("STABLEHLO_ADD", None)
    assert refused_operator("something else") == (None, None)
