"""Native code that can crash run in a child process, so that a crash is a result rather than the job's end.

TFLite Micro (``micro_worker``) and the TFLite converter (``conversion_worker``)
can end their process with a signal (a segmentation fault) instead of raising.
Each runs as ``python -m <module> <request.json>``, not as a multiprocessing
"spawn" child, which would re-run a Snakemake script's top level. The child
logs its progress as JSON lines to the request's ``progress_path``, flushed
line by line, so the parent knows how far a child that died got.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def run_child(module, request, folder, timeout):
    """Run ``python -m module`` on ``request``: ``(events, returncode, stderr tail)``; it never raises into us."""
    request_path = Path(folder) / "request.json"
    progress_path = Path(folder) / f"progress-{time.monotonic_ns()}.jsonl"
    request_path.write_text(json.dumps({**request, "progress_path": str(progress_path)}))
    environment = dict(os.environ)
    # The child imports this package; make that work even where it is not installed (a source checkout).
    source_root = str(Path(__file__).resolve().parents[1])
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [source_root, environment.get("PYTHONPATH")]))
    completed = subprocess.run(
        [sys.executable, "-m", module, str(request_path)],
        capture_output=True,
        text=True,
        env=environment,
        cwd=folder,
        timeout=timeout,
    )
    events = []
    if progress_path.exists():
        for line in progress_path.read_text().splitlines():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line cut short by the crash
    return events, completed.returncode, completed.stderr[-2000:]


def event_log(progress_path):
    """The child's side: a function that appends one event (keyword arguments) to the progress file."""
    progress = open(progress_path, "a")  # noqa: SIM115 -- open for the child's whole life

    def log(**event):
        progress.write(json.dumps(event) + "\n")
        progress.flush()  # into the kernel, so the line survives a crash of this process

    return log


def signal_name(returncode):
    """``"signal SIGSEGV"`` for a child a signal ended (negative ``returncode``); ``"exit status N"`` otherwise."""
    if returncode >= 0:
        return f"exit status {returncode}"
    try:
        return f"signal {signal.Signals(-returncode).name}"
    except ValueError:
        return f"signal {-returncode}"
