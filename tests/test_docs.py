"""Every Snakemake and make command the README and the docs show runs as written, as a dry run.

A command is read from the pages' code blocks and inline code, in the words
a reader copies; only ``-n`` is added (after the program's name, so that the
reader's own order of arguments is what Snakemake parses). A ``make`` command
is dry-run by make itself, and every Snakemake command make would start is
dry-run in turn.
"""

import itertools
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from tools.workflow import Workflow

from conftest import REPOSITORY

PAGES = sorted(
    [REPOSITORY / "README.md", REPOSITORY / "profiles" / "README.md", REPOSITORY / "config" / "README.md"]
    + list((REPOSITORY / "docs").glob("*.md"))
)
PROGRAMS = ("snakemake", ".venv/bin/snakemake", "make")
SHELL_OPERATORS = {"|", "||", "&&", ";", ">", ">>", "<"}
# The one command no dry run can check: the HTML report of a study that has run (the end-to-end
# tier makes it for the smoke study).
NEEDS_A_FINISHED_STUDY = {".venv/bin/snakemake --report results/default/report.html"}
# A reader's own file in the docs' example (docs/own-data.md): written from the page's block, its
# placeholder paths swapped for files that exist.
EXAMPLE_CONFIG = "my_study.yaml"


def code_lines(text):
    """Every line of the page's fenced blocks (continuations joined, comments cut) and every inline span."""
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    lines = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            lines.append(line.split(" #", 1)[0].strip())
    outside = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    lines += re.findall(r"`([^`\n]+)`", outside)
    return lines


def shown_commands():
    """``{command: page}`` of every command the pages show, in their words."""
    commands = {}
    for page in PAGES:
        for line in code_lines(page.read_text()):
            if line.split(" ", 1)[0] in PROGRAMS and " " in line:  # not YAML or prose, which need not parse
                commands.setdefault(shlex.join(shlex.split(line)), page.relative_to(REPOSITORY).as_posix())
    return commands


def test_the_pages_show_the_commands_a_reader_runs():
    """The reader's commands are found, so that the dry runs below cannot pass by finding none."""
    commands = shown_commands()
    assert {
        "make run",
        "make test",
        ".venv/bin/snakemake --cores 2 all publish_reports --configfile config/seeds.yaml",
        ".venv/bin/snakemake --cores 8 --configfile config/paper.yaml",
        ".venv/bin/snakemake --cores 4 --configfile my_study.yaml",
        "snakemake --unlock",
    } <= set(commands)
    assert set(commands) >= NEEDS_A_FINISHED_STUDY


@pytest.fixture(scope="module")
def reader(tmp_path_factory):
    """A fresh copy of the workflow with its Makefile, and the docs' example config with files that exist."""
    folder = tmp_path_factory.mktemp("reader")
    workflow = Workflow.copy(folder / "clone")
    for name in ("Makefile", "pyproject.toml"):
        (workflow.folder / name).write_bytes((REPOSITORY / name).read_bytes())
    page = (REPOSITORY / "docs" / "own-data.md").read_text()
    example = yaml.safe_load(re.search(rf"`{EXAMPLE_CONFIG}`:\s*```yaml\n(.*?)```", page, re.DOTALL).group(1))
    archive, model = folder / "parts.tar.gz", folder / "my_cnn.keras"
    archive.write_bytes(b"")  # a dry run checks that the files exist, and reads neither
    model.write_bytes(b"")
    example["image_folders"]["parts"].update(source=str(archive))
    del example["image_folders"]["parts"]["sha256"]  # "3f5a...e1" on the page
    example["trained_models"]["my_cnn"]["file"] = str(model)
    (workflow.folder / EXAMPLE_CONFIG).write_text(yaml.safe_dump(example))
    return workflow


def dry_run(workflow, words):
    """The Snakemake command ``words`` (its program first) with ``-n``; its output on failure."""
    return workflow.run("-n", *[word for word in words[1:] if word != "..."], check=False)


@pytest.mark.parametrize("command", sorted(set(shown_commands()) - NEEDS_A_FINISHED_STUDY))
def test_every_command_of_the_docs_runs_as_written(reader, command):
    words = shlex.split(command)
    if words[0] != "make":
        result = dry_run(reader, words)
        assert result.returncode == 0, f"{command} ({shown_commands()[command]}):\n{result.stdout}\n{result.stderr}"
        return
    made = subprocess.run(["make", "-n", *words[1:]], cwd=reader.folder, capture_output=True, text=True)
    assert made.returncode == 0, f"{command} ({shown_commands()[command]}): {made.stderr}"
    for line in made.stdout.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        # The Snakemake command alone, up to a pipe or redirection (make rulegraph's `| dot`).
        started = list(itertools.takewhile(lambda word: word not in SHELL_OPERATORS, lexer))
        if started and Path(started[0]).name == "snakemake":
            result = dry_run(reader, started)
            assert result.returncode == 0, f"{command} starts {line}:\n{result.stdout}\n{result.stderr}"
