"""A Snakemake logger plugin that writes every job Snakemake announces, and every job it finishes, as JSON lines.

Snakemake finds it by its module name (``snakemake_logger_plugin_<name>``) on
``sys.path``; ``tools.workflow`` puts this folder's parent there and runs
``snakemake --logger joblist --logger-joblist-path FILE ...``. The lines come
from Snakemake's own structured log records (``LogEvent.JOB_INFO`` with the
job's rule, wildcards, threads and files; ``LogEvent.JOB_FINISHED`` with its
id), never from its printed text. With ``--dry-run`` the file lists the jobs a
run would execute.
"""

import json
from dataclasses import dataclass, field
from typing import Optional

from snakemake_interface_logger_plugins.base import LogHandlerBase
from snakemake_interface_logger_plugins.common import LogEvent
from snakemake_interface_logger_plugins.settings import LogHandlerSettingsBase

# The fields of a JOB_INFO record kept in the file (see snakemake.jobs.Job.log_info).
JOB_FIELDS = ("jobid", "rule_name", "wildcards", "threads", "input", "output", "log", "benchmark", "reason")


@dataclass
class LogHandlerSettings(LogHandlerSettingsBase):
    # Optional[...], not `str | None`: Snakemake turns the annotation into an argparse type.
    path: Optional[str] = field(  # noqa: UP045
        default=None,
        metadata={"help": "File to write one JSON line per announced job to", "required": True},
    )


class LogHandler(LogHandlerBase):
    def __post_init__(self):
        # Snakemake lists the files its handlers write under this standard logging name.
        self.baseFilename = self.settings.path
        self.file = open(self.settings.path, "w")  # noqa: SIM115 - open for the handler's life, closed in close()

    def emit(self, record):
        event = getattr(record, "event", None)
        if event == LogEvent.JOB_INFO:
            line = {"event": "announced", **{name: getattr(record, name, None) for name in JOB_FIELDS}}
        elif event == LogEvent.JOB_FINISHED:
            line = {"event": "finished", "jobid": getattr(record, "job_id", None)}
        else:
            return
        self.file.write(json.dumps(line, default=str) + "\n")
        self.file.flush()  # a run killed mid-way leaves every line written so far

    def close(self):
        self.file.close()
        super().close()

    @property
    def writes_to_stream(self):
        return False

    @property
    def writes_to_file(self):
        return True

    @property
    def has_filter(self):
        return True

    @property
    def has_formatter(self):
        return True

    @property
    def needs_rulegraph(self):
        return False
