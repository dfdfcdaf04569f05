"""Mutation testing of the library's safeguards with mutmut, and its report (``reports/mutation.md``).

    python -m tools.mutation                   # mutmut run, then the report
    python -m tools.mutation --minutes 90      # the same, stopped after 90 minutes of mutants
    python -m tools.mutation --report          # the report of the recorded results only
    python -m tools.mutation --survivors-only  # after adding tests: the survivors not judged equivalent

mutmut (configured in ``pyproject.toml``, ``[tool.mutmut]``) copies the
project to ``mutants/``, changes the modules that carry the safeguards one
small edit at a time (a comparison flipped, a constant changed, a call
dropped, ...), and runs the fast test tier on each change; a mutant the tests
do not notice "survives". Survivors judged equivalent (the change does not
alter behaviour) are listed with the change and the reason in
``tools/mutation_equivalent.yaml``; the score per module counts killed mutants
among the non-equivalent ones.

A full pass takes longer than a working day on two cores, so its results are
committed (``reports/mutation_results.json``, mutmut's result and code hash of
every function) and put back into a fresh checkout's ``mutants/`` before each
run: a run goes on where the last one, on any clone, stopped, and mutmut runs
again only the mutants of functions whose code has changed since.

Why mutmut: it is maintained, needs no configuration beyond a few lines in
``pyproject.toml``, runs only the tests that reach the mutated function (it
records which tests call which function first), and can fork its workers from
a clean server process, which TensorFlow, not fork-safe once its threads run,
needs. cosmic-ray would need a session database and a separate worker set-up
for the same result.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections import Counter, defaultdict
from pathlib import Path

import yaml
from mutmut.mutation.file_mutation import compute_function_hashes
from mutmut.stats import status_by_exit_code
from mutmut.utils.format_utils import mangled_name_from_mutant_name

from tinyml_quant.files import read_json, write_json, write_text

REPOSITORY = Path(__file__).resolve().parents[1]
STATS = REPOSITORY / "mutants" / "mutmut-stats.json"
RECORD = REPOSITORY / "reports" / "mutation_results.json"
EQUIVALENT = REPOSITORY / "tools" / "mutation_equivalent.yaml"
TARGET = 0.85
# mutmut's result names: killed by a test, or not; a timeout counts as killed (the mutant hung).
TIMEOUT = "timeout"
KILLED = {"killed", TIMEOUT, "segfault"}
NOT_RUN = "not checked"
SURVIVED = {"survived", "no tests", "suspicious"}


def environment():
    """This process's environment, with the dataset mirror named for the mutated copy.

    mutmut runs the tests in ``mutants/``, one folder deeper than the checkout, where the
    tests' default (``../shared/datasets`` beside the checkout) does not exist: without
    this, the tests that read the mirror would skip and kill nothing.
    """
    variables = dict(os.environ)
    if not variables.get("TINYML_DATASET_MIRROR", "").strip():
        variables["TINYML_DATASET_MIRROR"] = str(REPOSITORY.parent / "shared" / "datasets")
    return variables


def mutated_paths(repository=REPOSITORY):
    """``only_mutate`` of mutmut's settings in ``pyproject.toml``: the files it mutates."""
    return tomllib.loads((repository / "pyproject.toml").read_text())["tool"]["mutmut"]["only_mutate"]


def meta_path(name, repository=REPOSITORY):
    """mutmut's results of the mutated file ``name`` (``src/...py``): ``mutants/src/...py.meta``."""
    return repository / "mutants" / f"{name}.meta"


def refresh_mutated_sources(repository=REPOSITORY):
    """Put the plain source back in ``mutants/`` for every module mutmut would mutate wrongly or not at all.

    mutmut regenerates a module's mutants when its copy in ``mutants/`` is not
    newer than the source, and measures covered lines (``mutate_only_covered_lines``)
    on the copies *before* regenerating. Two cases go wrong: a module edited since
    the last run is measured on its old mutated copy, whose lines are not the
    source's (config once fell from 344 mutants to 32); and a module newly listed
    in ``only_mutate`` has a plain copy newer than its source, so it is never
    mutated. A plain copy with the source's own time (``copy2``, as mutmut's first
    copy) fixes both; mutmut keeps the results of the functions whose code is unchanged.
    Returns the modules refreshed.
    """
    refreshed = []
    for name in mutated_paths(repository):
        source, copy = repository / name, repository / "mutants" / name
        if not copy.exists():
            continue  # mutmut copies it itself
        never_mutated = not meta_path(name, repository).exists()
        if never_mutated or source.stat().st_mtime > copy.stat().st_mtime:
            shutil.copy2(source, copy)
            refreshed.append(name)
    return refreshed


def forget_seen_tests(stats_path=STATS):
    """Make mutmut record again which functions every test calls; returns whether there was a record.

    mutmut records the functions a test calls once, the first time it sees the
    test. A test seen before a module was listed (or before a function was added
    to one) is never recorded as calling that module's functions, so their
    mutants run against the new tests only, or none ("no tests"): layer_error's
    per-layer figures once survived a mutant that the old tests catch. With no
    test counted as seen, mutmut's next run records them all again (the whole
    fast tier once, a few minutes); earlier results and mappings are kept.
    """
    if not stats_path.exists():
        return False
    stats = json.loads(stats_path.read_text())
    stats["duration_by_test"] = {}
    stats_path.write_text(json.dumps(stats, indent=4))
    return True


def save_record(seconds, repository=REPOSITORY, record=RECORD):
    """Copy mutmut's results of every mutated module into the committed record; returns the record.

    Kept per module: each function's code hash and each mutant's exit code
    (``null``: not run yet), what mutmut needs to carry results over; the
    per-mutant durations are left out. ``seconds`` is added to the record's
    total time of mutation runs. A module with no results in this checkout
    keeps its recorded ones.
    """
    recorded = read_json(record) if record.exists() else {"seconds": 0, "modules": {}}
    modules = {**recorded["modules"], **module_results(repository)}
    updated = {"seconds": round(recorded["seconds"] + seconds), "modules": modules}
    write_json(record, updated)
    return updated


def restore_record(repository=REPOSITORY, record=RECORD):
    """Give a checkout with no mutmut results of a module the recorded ones; returns the modules restored.

    mutmut reads ``mutants/<file>.meta`` when it makes a module's mutants and
    keeps the result of every mutant whose function's code hash is unchanged,
    so the restored results of unchanged functions stand and the rest run
    again. A checkout's own results are never overwritten: they are newer.
    """
    if not record.exists():
        return []
    restored = []
    for name, results in read_json(record)["modules"].items():
        if name in mutated_paths(repository) and not meta_path(name, repository).exists():
            # The other keys mutmut's loader insists on; durations are only its estimates.
            meta = {**results, "type_check_error_by_key": {}, "durations_by_key": {}, "estimated_durations_by_key": {}}
            write_json(meta_path(name, repository), meta)
            restored.append(name)
    return restored


def mutants_made(repository=REPOSITORY):
    """Whether every mutated module's copy in ``mutants/`` holds its mutants and is newer than its source.

    Then mutmut makes no mutants (it remakes a module's only when its copy is
    not newer than the source), and the coverage it measures to make them is
    not needed.
    """
    for name in mutated_paths(repository):
        copy = repository / "mutants" / name
        if not (copy.exists() and meta_path(name, repository).exists()):
            return False
        if copy.stat().st_mtime <= (repository / name).stat().st_mtime:
            return False
    return True


def mutmut_run(*mutants, deadline=None):
    """``mutmut run``, interrupted at ``deadline`` (see ``run_until``); returns mutmut's exit status.

    Without its coverage pass when the mutants are all made (``tools/mutmut_without_coverage.py``).
    """
    entry = ["-m", "tools.mutmut_without_coverage"] if mutants_made() else ["-m", "mutmut"]
    return run_until([sys.executable, *entry, "run", *mutants], deadline)


def run_until(command, deadline=None):
    """Run ``command`` in the checkout; at ``deadline`` (``time.monotonic()``) interrupt it as Ctrl-C would.

    mutmut records each mutant's result as it finishes and, on an interrupt,
    stops its workers without recording the unfinished ones, which run next
    time. Only its own process is interrupted: a worker killed by the signal
    would read as a mutant killed by a test. Returns the exit status, 0 when
    stopped at the deadline.
    """
    process = subprocess.Popen(command, cwd=REPOSITORY, env=environment(), preexec_fn=interruptible)
    try:
        return process.wait(timeout=None if deadline is None else max(0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        print("time is up: stopping mutmut; the mutants not run yet run next time", flush=True)
        process.send_signal(signal.SIGINT)
        process.wait()
        return 0
    finally:
        if process.poll() is None:  # this command itself interrupted: let mutmut record what finished
            process.send_signal(signal.SIGINT)
            process.wait()


def interruptible():
    """In a child before it starts: SIGINT back to its default, so that the child's Python raises KeyboardInterrupt.

    A shell starts a background command (``nohup python -m tools.mutation ... &``)
    with SIGINT ignored, its children inherit that, and Python installs its
    KeyboardInterrupt handler only where SIGINT is not ignored: mutmut would
    never stop at the deadline (it ran on for an hour once).
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def mutmut(*arguments, check=True, capture=True):
    return subprocess.run(
        [sys.executable, "-m", "mutmut", *arguments],
        cwd=REPOSITORY,
        env=environment(),
        capture_output=capture,
        text=True,
        check=check,
    )


def module_results(repository=REPOSITORY):
    """``{mutated file: its function hashes and mutants' exit codes}`` of this checkout's mutmut results."""
    modules = {}
    for name in mutated_paths(repository):
        if meta_path(name, repository).exists():
            meta = read_json(meta_path(name, repository))
            modules[name] = {key: meta[key] for key in ("exit_code_by_key", "hash_by_function_name")}
    return modules


def results(repository=REPOSITORY):
    """``{mutant name: status}`` of every mutant, in mutmut's words (``not checked``: not run yet)."""
    return {
        mutant: status_by_exit_code[exit_code]
        for module in module_results(repository).values()
        for mutant, exit_code in module["exit_code_by_key"].items()
    }


def results_of_current_code(repository=REPOSITORY):
    """``results``, with the mutants of every function edited since mutmut made them as not run yet.

    mutmut hashes each mutated function's syntax tree (docstring included) when
    it makes the mutants, and its next run gives no result to the mutants of a
    function whose hash has changed. Until then their results are of code that
    is gone, and the report would count them as if they held.
    """
    statuses = {}
    for name, module in module_results(repository).items():
        hashes = compute_function_hashes((repository / name).read_text())
        for mutant, exit_code in module["exit_code_by_key"].items():
            function = mangled_name_from_mutant_name(mutant).rpartition(".")[2]
            unchanged = hashes.get(function) == module["hash_by_function_name"].get(function)
            statuses[mutant] = status_by_exit_code[exit_code] if unchanged else NOT_RUN
    return statuses


def survivors():
    """The names of the last runs' surviving mutants."""
    return [name for name, status in results().items() if status in SURVIVED]


def judgements():
    """``tools/mutation_equivalent.yaml``: each survivor judged equivalent, with the change judged and the reason."""
    return (yaml.safe_load(EQUIVALENT.read_text()) if EQUIVALENT.exists() else None) or {}


def widen_to_test_modules(stats_path=STATS):
    """Let every mutated function be tested by whole test modules, not the single tests mutmut saw call it.

    mutmut records which test was running when a function was called. A
    module-scoped fixture (one conversion, one firmware bundle) runs during
    the first test that asks for it, so the function is recorded for that
    test alone, and the other tests that check the fixture's result never see
    its mutants. Widening each function's tests to every test of the same
    modules undoes that; mutmut still stops at the first failing test.
    Returns how many (function, test) pairs were added.
    """
    stats = json.loads(stats_path.read_text())
    tests_by_module = defaultdict(set)
    for test in stats["duration_by_test"]:
        tests_by_module[test.partition("::")[0]].add(test)
    added = 0
    for function, tests in stats["tests_by_mangled_function_name"].items():
        wider = set(tests).union(*(tests_by_module[test.partition("::")[0]] for test in tests))
        added += len(wider) - len(tests)
        stats["tests_by_mangled_function_name"][function] = sorted(wider)
    stats_path.write_text(json.dumps(stats, indent=4))
    return added


def timeouts_survived(mutants, repository=REPOSITORY):
    """Record as survived each of ``mutants`` (survivors of the first pass) that timed out in the second; returns them.

    mutmut limits a mutant's CPU time to a multiple of its tests' recorded
    durations, which count each test's call but not its fixtures' set-up.
    Widened to whole test modules, the list brings in module fixtures (a
    model trained, converted) that its own tests did not build, the limit is
    passed, and a mutant that ran its own tests to the end in the first pass,
    unnoticed, is stopped as a hang and would count as killed (an equivalent
    ``seeded_subset`` mutant did). A hang would have shown in the first pass.
    """
    survived = []
    for name in mutated_paths(repository):
        path = meta_path(name, repository)
        if not path.exists():
            continue
        meta = read_json(path)
        codes = meta["exit_code_by_key"]
        timed_out = [mutant for mutant in mutants if mutant in codes and status_by_exit_code[codes[mutant]] == TIMEOUT]
        if timed_out:
            codes.update(dict.fromkeys(timed_out, 0))  # mutmut's exit code of a survivor
            write_json(path, meta)
            survived += timed_out
    return survived


def module_of(mutant):
    """``tinyml_quant.readers.x_read_idx__mutmut_3`` -> ``readers``."""
    return mutant.split(".")[1]


def listed_modules(repository=REPOSITORY):
    """The modules ``only_mutate`` names, by module name (``readers``)."""
    return [Path(name).stem for name in mutated_paths(repository)]


def not_run(statuses, modules):
    """The names of the mutants of ``modules`` (``readers``) that have no result yet, in name order.

    mutmut reruns every mutant named on its command line, finished or not, so a
    module's name as a wildcard would run its finished mutants again.
    """
    return sorted(mutant for mutant, status in statuses.items() if module_of(mutant) in modules and status == NOT_RUN)


def summary(statuses, equivalent, modules=()):
    """Counts per module; every one of ``modules`` has a row, mutated yet or not."""
    per_module = defaultdict(Counter, {module: Counter() for module in modules})
    for mutant, status in statuses.items():
        module = module_of(mutant)
        if status in KILLED:
            per_module[module]["killed"] += 1
        elif mutant in equivalent:
            per_module[module]["equivalent"] += 1
        elif status in SURVIVED:
            per_module[module]["survived"] += 1
        else:
            per_module[module][status] += 1
    return per_module


def score_rows(per_module):
    """One Markdown table row per module: counts, score, and whether the target is met."""
    rows = []
    for module, counts in sorted(per_module.items()):
        judged = counts["killed"] + counts["survived"]
        score = f"{100 * counts['killed'] / judged:.1f}%" if judged else "-"
        if not counts.total():
            verdict = "not run yet"
        elif counts[NOT_RUN]:
            verdict = "not run to completion"
        else:
            verdict = "yes" if counts["killed"] >= TARGET * judged else "NO"
        rows.append(
            f"| {module} | {sum(counts.values())} | {counts['killed']} | {counts['equivalent']} | "
            f"{counts['survived']} | {counts[NOT_RUN]} | {score} | {verdict} |"
        )
    return rows


def changed_lines(diff):
    """The removed and added lines of ``mutmut show``'s diff, without its file headers."""
    return "\n".join(line for line in diff.splitlines() if line[:1] in "-+" and not line.startswith(("---", "+++")))


def shown(mutant):
    """``mutmut show``'s diff of ``mutant``; it needs the mutated copies a run leaves in ``mutants/``."""
    shown = mutmut("show", mutant, check=False)
    if shown.returncode:
        raise SystemExit(
            f"mutmut show {mutant} failed (a checkout whose mutants were never made, as a fresh clone?): "
            f"run python -m tools.mutation here first\n{shown.stderr.strip()}"
        )
    return shown.stdout


def judged_equivalent(recorded, changes):
    """The reasons of the survivors still recorded as equivalent, and the survivors to judge again.

    ``recorded``: ``tools/mutation_equivalent.yaml``, each mutant's name with
    the change it was judged on and the reason. ``changes``: each survivor's
    change now. mutmut numbers a function's mutants in order, so a name can
    come to mean another change when the function's code or covered lines
    change: a judgement stands only for the change it was made on.
    """
    equivalent, judge_again = {}, {}
    for mutant, change in changes.items():
        if mutant in recorded:
            if recorded[mutant]["change"].strip("\n") == change:
                equivalent[mutant] = recorded[mutant]["reason"]
            else:
                judge_again[mutant] = recorded[mutant]["change"].strip("\n")
    return equivalent, judge_again


def write_report(statuses, seconds, output=REPOSITORY / "reports" / "mutation.md"):
    recorded = judgements()
    changes = {
        mutant: changed_lines(shown(mutant)) for mutant, status in sorted(statuses.items()) if status in SURVIVED
    }
    equivalent, judge_again = judged_equivalent(recorded, changes)
    per_module = summary(statuses, equivalent, listed_modules())
    survivors = []
    for mutant, change in changes.items():
        if mutant in equivalent:
            reason = equivalent[mutant]
        elif mutant in judge_again:
            reason = (
                "**not killed: judged equivalent as another change, judge again**\n\n"
                f"```diff\n{judge_again[mutant]}\n```\n\nnow:"
            )
        else:
            reason = "**not killed: a test is missing**"
        survivors.append(f"### `{mutant}`\n\n{reason}\n\n```diff\n{change}\n```\n")
    text = "\n".join(
        [
            "# Mutation testing of the safeguards\n",
            f"`python -m tools.mutation` (mutmut, the fast test tier), {seconds / 3600:.1f} h of runs in all on "
            "this machine, results carried from run to run in `reports/mutation_results.json`. "
            "A mutant is one small edit of a module; killed means a test failed because of it. Equivalent "
            "survivors change nothing observable (reasons below, from `tools/mutation_equivalent.yaml`); the "
            f"score is killed / (killed + other survivors). Target: {100 * TARGET:.0f}% per module. "
            "Calls to a module's logger are not mutated (`do_not_mutate_patterns` in `pyproject.toml`).\n",
            "| module | mutants | killed | equivalent | survived | not run | score | target met |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
            *score_rows(per_module),
            "\n## Surviving mutants\n",
            *survivors,
        ]
    )
    write_text(output, text + "\n")
    return per_module


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tools.mutation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--report", action="store_true", help="only write the report of the recorded results")
    parser.add_argument("mutants", nargs="*", help="only these mutants (mutmut's names, wildcards allowed)")
    parser.add_argument(
        "--survivors-only",
        action="store_true",
        help="only the recorded survivors not judged equivalent, through both passes (after adding tests for them)",
    )
    parser.add_argument(
        "--whole-modules",
        action="store_true",
        help="run the named mutants (or --survivors-only's) against whole test modules at once, without the "
        "first pass: for survivors whose second pass was cut short",
    )
    parser.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="stop the first pass after this many minutes (finished results are kept; the rest run next time)",
    )
    parser.add_argument(
        "--modules",
        nargs="+",
        default=[],
        metavar="MODULE",
        help="only the mutants of these modules (config, readers, ...) not run yet, as a short run's choice",
    )
    args = parser.parse_args(argv)
    if args.minutes is not None and args.minutes <= 0:
        parser.error(f"--minutes must be positive, not {args.minutes}")
    unknown = sorted(set(args.modules) - set(listed_modules()))
    if unknown:
        parser.error(
            f"--modules: {', '.join(unknown)} not among only_mutate in pyproject.toml: {', '.join(listed_modules())}"
        )
    if args.modules and (args.mutants or args.survivors_only):
        parser.error("--modules takes no mutant names and no --survivors-only")
    if args.whole_modules and not (args.mutants or args.survivors_only):
        parser.error("--whole-modules takes mutant names or --survivors-only (first-pass survivors)")
    for name in restore_record():
        print(f"{name}: results restored from {RECORD.relative_to(REPOSITORY)}")
    if not args.report:
        started = time.monotonic()
        try:
            returncode = run_passes(args, None if args.minutes is None else started + 60 * args.minutes)
        finally:
            save_record(time.monotonic() - started)
        if returncode not in (0, 1):
            return returncode
    per_module = write_report(results_of_current_code(), read_json(RECORD)["seconds"] if RECORD.exists() else 0)
    for module, counts in sorted(per_module.items()):
        print(module, dict(counts))
    return 0


def run_passes(args, deadline):
    """The first pass (until ``deadline``), then this run's new survivors against whole test modules."""
    forgotten = refresh_and_forget_seen_tests()
    # An equivalent survivor survives any test; rerunning them would take hours.
    judged = set(judgements()) if args.survivors_only else set()
    if args.survivors_only:
        mutants = sorted(set(survivors()) - judged)
    elif args.modules:
        # Read before mutmut remakes a refreshed module's mutants: an edited function's mutants are
        # among these by their old names, the ones it has beyond those only from the next run on.
        mutants = not_run(results_of_current_code(), args.modules)
    else:
        mutants = args.mutants
    if (args.survivors_only or args.modules) and not mutants:  # no names would run every mutant
        print("no mutant to run: " + ("no survivor to kill" if args.survivors_only else "each has a result"))
        return 0
    if args.whole_modules:
        if forgotten:  # nothing to widen until a first pass has recorded them again
            raise SystemExit("--whole-modules: a module changed since the last run; run its first pass first")
        return run_on_whole_test_modules(mutants)
    # Survivors of earlier runs went through the second pass then; --survivors-only takes them again,
    # all but those judged equivalent.
    earlier = judged if args.survivors_only else set(survivors())
    # Through the first pass too: after a refresh it records every test's calls again,
    # which the second pass's widening needs.
    returncode = mutmut_run(*mutants, deadline=deadline)
    if returncode not in (0, 1):
        return returncode
    # Second pass, not bound by --minutes: a survivor that skipped it would never take it.
    remaining = [name for name in survivors() if name not in earlier]
    if not remaining:
        return returncode
    # A source edited while the first pass ran would otherwise be remade from its mutated copy.
    # (Its tests' calls are not forgotten: the widening below needs them.)
    refresh_mutated_sources()
    return run_on_whole_test_modules(remaining)


def refresh_and_forget_seen_tests():
    """``refresh_mutated_sources``, and every test's calls recorded again if a module was refreshed.

    Returns whether the record of the tests' calls was emptied.
    """
    refreshed = refresh_mutated_sources()
    for name in refreshed:
        print(f"{name}: changed or newly listed since the last run; its mutants are made again")
    forgotten = bool(refreshed) and forget_seen_tests()
    if forgotten:
        print("every test's calls are recorded again")
    return forgotten


def run_on_whole_test_modules(mutants):
    """Run ``mutants`` (first-pass survivors) with each function's tests widened to their whole test modules."""
    own_tests = STATS.read_text()
    try:
        print(f"{widen_to_test_modules()} tests added to functions' lists; rerunning {len(mutants)} survivors")
        return mutmut_run(*mutants)
    finally:
        # Also when the pass is interrupted: the time-limit stops it had are results mutmut kept.
        for name in timeouts_survived(mutants):
            print(f"{name}: timed out on whole test modules after surviving its own tests; recorded as survived")
        # Each function's own tests again for the next first pass: with whole test modules, mutmut
        # would run the module's faster tests before the one that kills most mutants.
        write_text(STATS, own_tests)


if __name__ == "__main__":
    sys.exit(main())
