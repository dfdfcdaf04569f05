"""The results tables, from records written here as the stages write them (every stage's own tests check those)."""

import json

import numpy as np
import pandas as pd
import pytest

from tinyml_quant.reporting import run_gather

VERSIONS = {"tensorflow": "tf", "keras": "k", "workflow": "w"}


def write(path, record):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return path


def study_records(folder, models, schemes=("fp32", "int8"), test_images=200, accuracy=None):
    """Every record ``gather`` reads, for ``models`` ({name: training record}) on dataset "toy"."""
    paths = {kind: [] for kind in ("evaluations", "training", "graphs", "micro", "latencies")}
    for model, trained in models.items():
        base = {"dataset": "toy", "dataset_name": "toy (test)", "model": model}
        paths["training"].append(write(folder / "train" / f"{model}.json", {**base, "versions": VERSIONS, **trained}))
        for number, scheme in enumerate(schemes):
            variant = {**base, "scheme": scheme}
            value = accuracy(model, scheme) if accuracy else 0.8 - 0.01 * number
            evaluation = {
                **variant,
                "file_bytes": 4096 // (number + 1),
                "accuracy": value,
                "agreement_with_fp32": 1.0 - 0.02 * number,
                "test_images": test_images,
                "input_type": "float32" if scheme == "fp32" else "int8",
                "mean_inference_ms": 0.1,
                "threads": 2,
                "litert_version": "l",
            }
            paths["evaluations"].append(write(folder / "evaluate" / model / f"{scheme}.json", evaluation))
            graph = {**variant, "macs": 1000, "parameters": 100, "operator_total": 3, "operators": {"CONV_2D": 3}}
            paths["graphs"].append(write(folder / "graph" / model / f"{scheme}.json", graph))
            micro = {**variant, "status": "runs", "arena_bytes": 2048, "unsupported_operator": None, "agreement": None}
            paths["micro"].append(write(folder / "micro" / model / f"{scheme}.json", micro))
            latency = {**variant, "median_ms": 0.5, "p90_ms": 0.6, "threads": 1}
            paths["latencies"].append(write(folder / "latency" / model / f"{scheme}.json", latency))
    return paths


def gathered(folder, paths):
    table = run_gather(
        paths["evaluations"],
        paths["training"],
        paths["graphs"],
        paths["micro"],
        paths["latencies"],
        [],
        [],
        folder / "results.csv",
        folder / "results.md",
    )
    return table, (folder / "results.md").read_text()


TRAINED = {
    "source": "trained here",
    "test_accuracy": 0.8,
    "parameters": 100,
    "seed": 42,
    "epoch_seconds_median": 0.4213,
    "final_epoch": {"epoch": 3, "accuracy": 0.7, "val_accuracy": 0.75},
}
IMPORTED = {
    "source": "imported from /models/mine.keras",
    "test_accuracy": 0.3,
    "parameters": 90,
    "warning": "trained_models.mine.input_scale: the model scores 30.0% ... with input_scale 0.00392157",
}


def test_the_tables_say_which_model_is_imported_and_show_its_warning_first(tmp_path):
    table, markdown = gathered(tmp_path, study_records(tmp_path, {"custom": TRAINED, "mine": IMPORTED}))
    assert list(table.model_source.unique()) == ["trained here", "imported from /models/mine.keras"]
    assert markdown.index("## Warnings") < markdown.index("## toy (test)")
    assert f"- **mine** on toy (test): {IMPORTED['warning']}" in markdown
    assert "| mine (imported) |" in markdown and "| custom " in markdown
    written = pd.read_csv(tmp_path / "results.csv")
    assert written[written.model == "mine"].model_warning.unique().tolist() == [IMPORTED["warning"]]
    assert written[written.model == "custom"].model_warning.isna().all()


def test_a_model_trained_in_under_a_second_an_epoch_does_not_read_zero(tmp_path):
    _, markdown = gathered(tmp_path, study_records(tmp_path, {"custom": TRAINED}))
    row = next(line for line in markdown.splitlines() if line.startswith("| toy (test) | custom"))
    assert row.rstrip(" |").endswith("0.421")


def test_no_warning_section_without_a_warning(tmp_path):
    _, markdown = gathered(tmp_path, study_records(tmp_path, {"custom": TRAINED}))
    assert "## Warnings" not in markdown


def test_size_compression_and_accuracy_change_are_against_the_models_own_fp32(tmp_path):
    table, _ = gathered(tmp_path, study_records(tmp_path, {"custom": TRAINED}))
    int8 = table[table.scheme == "int8"].iloc[0]
    assert int8.compression_vs_fp32 == pytest.approx(2.0) and int8.size_kb == pytest.approx(2.0)
    assert int8.accuracy_change_vs_fp32 == pytest.approx(-1.0)
    assert np.isclose(table[table.scheme == "fp32"].accuracy_change_vs_fp32, 0).all()
