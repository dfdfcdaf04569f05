"""Atomic file output and JSON helpers shared by every stage."""

import contextlib
import json
import logging
import os
import shutil
import sys
from pathlib import Path


@contextlib.contextmanager
def atomic_path(destination):
    """Yield a temporary path beside ``destination``; rename it into place on success.

    A reader never sees half a file. The temporary has a fixed hidden name,
    so the temporary of a killed job is overwritten when the job runs again
    rather than left behind; it keeps the destination's suffix because some
    writers (Keras, numpy) insist on it. Snakemake never runs two jobs for
    one output, so the fixed name cannot clash within the workflow.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = destination.with_name(f".{destination.stem}.partial{destination.suffix}")
    try:
        yield temporary
        os.replace(temporary, destination)
    finally:
        temporary.unlink(missing_ok=True)


def write_bytes(destination, content):
    with atomic_path(destination) as temporary:
        temporary.write_bytes(content)


def write_text(destination, text):
    with atomic_path(destination) as temporary:
        temporary.write_text(text)


def write_json(destination, value):
    write_text(destination, json.dumps(value, indent=2, sort_keys=True) + "\n")


def copy_files(sources, destinations):
    """Copy each source to the destination at the same position, each atomically."""
    if len(sources) != len(destinations):
        raise ValueError(f"{len(sources)} files to copy to {len(destinations)} destinations")
    for source, destination in zip(sources, destinations):
        with atomic_path(destination) as temporary:
            shutil.copyfile(source, temporary)


def write_csv(destination, table):
    """A pandas DataFrame as CSV, six significant digits for floats."""
    with atomic_path(destination) as temporary:
        table.to_csv(temporary, index=False, float_format="%.6g")


def read_json(path):
    with open(path) as handle:
        return json.load(handle)


@contextlib.contextmanager
def output_to_log(log_path):
    """Send this process's stdout and stderr, C++ libraries' included, to ``log_path``.

    TensorFlow and LiteRT write to file descriptors 1 and 2 directly, so
    replacing ``sys.stderr`` alone would miss their messages.
    """
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "w") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
        try:
            yield
        except BaseException:
            logging.getLogger("tinyml_quant").exception("job failed")
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
