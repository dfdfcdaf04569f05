"""A variant's ``.tflite`` file and its conversion record, written together; a variant its tool could not make.

Every variant is written with a JSON record beside it (``<scheme>.json`` next
to ``<scheme>.tflite``): which tool made it and how. When the tool cannot
make it (an operator the converter cannot lower, a layer the quantizer does
not support, a file LiteRT cannot prepare), the variant is marked instead:
an empty ``.tflite`` file and a record with status ``NOT_CONVERTED`` and the
tool's reason. Every later stage reads a variant through ``read_variant``,
which raises ``NotConverted``; each then records the variant as not converted,
and the rest of the grid goes on.
"""

import contextlib
import logging
from pathlib import Path

from .files import read_json, write_bytes, write_json

logger = logging.getLogger(__name__)

CONVERTED = "converted"
NOT_CONVERTED = "not converted"


class NotConverted(Exception):
    """A variant its tool could not make; ``record`` holds the tool and its reason."""

    def __init__(self, record):
        super().__init__(f"{record['tool']}: {record['reason']}")
        self.record = record


class ToolFailure(Exception):
    """Raised inside ``converting`` with the reason a tool gave for a variant it could not make."""


def record_path(tflite_path):
    return Path(tflite_path).with_suffix(".json")


def read_record(tflite_path):
    return read_json(record_path(tflite_path))


def read_variant(tflite_path):
    """The variant's flatbuffer; ``NotConverted`` when its record says the tool could not make it."""
    record = read_record(tflite_path)
    if record["status"] == NOT_CONVERTED:
        raise NotConverted(record)
    return Path(tflite_path).read_bytes()


def not_converted_fields(error):
    """What a stage records for a variant that was not converted, from the ``NotConverted`` it met."""
    return {"status": NOT_CONVERTED, "reason": str(error)}


@contextlib.contextmanager
def converting(tflite_path, tool, details):
    """Write the variant the block makes, with its record, or mark it not converted with the tool's reason.

    The block yields a dict and puts the flatbuffer under ``"flatbuffer"``
    (and any record fields under ``"record"``). A ``ToolFailure`` raised in
    the block, or a ``NotConverted`` of the variant it starts from, marks the
    variant; any other exception is a bug and propagates.
    """
    made = {"record": {}}
    record = {"tool": tool, **details}
    try:
        yield made
    except (ToolFailure, NotConverted) as error:
        logger.warning("%s: not converted: %s", tflite_path, error)
        write_bytes(tflite_path, b"")
        write_json(record_path(tflite_path), {**record, "status": NOT_CONVERTED, "reason": str(error)})
        return
    flatbuffer = made["flatbuffer"]
    write_bytes(tflite_path, flatbuffer)
    write_json(record_path(tflite_path), {**record, **made["record"], "status": CONVERTED, "bytes": len(flatbuffer)})
