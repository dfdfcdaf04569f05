"""The benchmark's report: figures with their baselines and targets, as ``bench.md`` and ``bench.csv``."""

import csv
import math
import os
import time


class Report:
    def __init__(self):
        self.rows, self.sections = [], []

    def figure(
        self, section, metric, value, unit, model="", baseline=None, target=None, higher_is_better=True, note=""
    ):
        """One figure; with a baseline its ratio (value / baseline) is checked against ``target``."""
        ratio = value / baseline if baseline else None
        checked = ratio if baseline is not None else value
        met = None
        if target is not None and checked is not None:
            met = checked >= target if higher_is_better else checked <= target
        self.rows.append(
            {
                "section": section,
                "metric": metric,
                "model": model,
                "value": value,
                "unit": unit,
                "baseline": baseline,
                "ratio": ratio,
                "target": target,
                "target_kind": None if target is None else (">=" if higher_is_better else "<="),
                "met": met,
                "note": note,
            }
        )
        return ratio

    def add(self, text):
        self.sections.append(text)

    def targets(self):
        return [row for row in self.rows if row["target"] is not None]


def fmt(value, digits=2):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, int) or (isinstance(value, float) and abs(value) >= 100):
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write(report, machine, command, output_dir, started):
    """Write ``bench.md`` and ``bench.csv`` to ``output_dir``; return the elapsed seconds and the target rows."""
    output_dir.mkdir(parents=True, exist_ok=True)
    elapsed = time.perf_counter() - started
    machine["load_average_at_end"] = os.getloadavg()
    target_rows = [
        [
            row["section"],
            row["metric"],
            row["model"],
            fmt(row["value"]),
            fmt(row["ratio"]) if row["ratio"] is not None else "",
            f"{row['target_kind']} {row['target']}",
            fmt(row["met"]),
        ]
        for row in report.targets()
    ]
    header = [
        "# Benchmark: the study's costs against baselines and the machine's limits\n",
        f"`{command}` on {machine['date']}, {elapsed / 60:.1f} min in all. Every ratio compares two things "
        "measured side by side in this run; figures differ between machines, so the machine is recorded.\n",
        table(
            ["machine", ""],
            [
                ["cores (os.cpu_count / usable)", f"{machine['cores']} / {machine['usable_cores']}"],
                ["CPU", machine["cpu_model"]],
                ["instruction sets", ", ".join(machine["cpu_flags"]) or "none of interest"],
                ["system", machine["machine"]],
                ["Python", machine["python"]],
                ["libraries", ", ".join(f"{name} {version}" for name, version in machine["versions"].items())],
                [
                    "load average at start / end",
                    f"{machine['load_average_at_start'][0]:.2f} / {machine['load_average_at_end'][0]:.2f}",
                ],
            ],
        ),
        (
            f"\n**The machine was not idle** (load average {machine['load_average_at_start'][0]:.1f} at the start): "
            "wall-clock figures are pessimistic.\n"
            if machine["load_average_at_start"][0] > 0.5
            else ""
        ),
        "\n## Targets\n\n",
        table(["section", "figure", "model", "value", "ratio", "target", "met"], target_rows),
    ]
    (output_dir / "bench.md").write_text("\n".join([*header, *report.sections]))
    with open(output_dir / "bench.csv", "w", newline="") as handle:
        columns = [
            "section",
            "metric",
            "model",
            "value",
            "unit",
            "baseline",
            "ratio",
            "target",
            "target_kind",
            "met",
            "note",
        ]
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        machine_rows = [
            ("cores", machine["cores"], "cores"),
            ("usable_cores", machine["usable_cores"], "cores"),
            ("cpu_model", machine["cpu_model"], ""),
            ("cpu_flags", " ".join(machine["cpu_flags"]), ""),
            ("python", machine["python"], ""),
            ("load_average_at_start", machine["load_average_at_start"][0], ""),
            ("load_average_at_end", machine["load_average_at_end"][0], ""),
            ("bench_wall_s", elapsed, "s"),
            *((f"version_{name}", version, "") for name, version in machine["versions"].items()),
        ]
        for metric, value, unit in machine_rows:
            writer.writerow({"section": "machine", "metric": metric, "value": value, "unit": unit})
        for row in report.rows:
            writer.writerow(
                {key: (f"{value:.6g}" if isinstance(value, float) else value) for key, value in row.items()}
            )
    return elapsed, target_rows
