"""Every figure is drawn to exactly the paths it is given, in the format of each path's suffix."""

import itertools

import numpy as np
import pandas as pd
import pytest
import yaml

from tinyml_quant import figures
from tinyml_quant.conversion import SCHEMES

from conftest import REPOSITORY


@pytest.fixture
def results_csv(tmp_path):
    rows = []
    for dataset, model, scheme in itertools.product(["mnist", "cifar10"], ["custom", "resnet_v1"], SCHEMES):
        runs = scheme in ("fp32", "int8", "int16x8")
        rows.append(
            {
                "dataset": dataset,
                "dataset_name": f"{dataset} (test)",
                "model": model,
                "scheme": scheme,
                "size_kb": 100.0 if scheme == "fp32" else 40.0,
                "accuracy": 0.9 - 0.01 * SCHEMES.index(scheme),
                "accuracy_change_vs_fp32": -SCHEMES.index(scheme),
                "tflm_status": "runs" if runs else "unsupported on TFLite Micro",
                "arena_bytes": 50_000 if runs else np.nan,
                "tflm_unsupported_operator": None if runs else "DEQUANTIZE",
            }
        )
    pd.DataFrame(rows).to_csv(tmp_path / "results.csv", index=False)
    return tmp_path / "results.csv"


def test_the_result_and_device_figures_go_to_exactly_their_paths(results_csv, tmp_path):
    boards = yaml.safe_load((REPOSITORY / "config" / "config.yaml").read_text())["boards"]
    outputs = {
        name: [tmp_path / "out" / f"{name}.png", tmp_path / "out" / f"{name}.svg"] for name in figures.RESULT_FIGURES
    }
    figures.plot_results(results_csv, outputs, dpi=40)
    devices = {name: [tmp_path / "out" / f"{name}.pdf"] for name in figures.DEVICE_FIGURES}
    figures.plot_device_fit(results_csv, boards, devices, dpi=40)
    written = sorted(path.name for path in (tmp_path / "out").iterdir())
    expected = sorted(path.name for paths in [*outputs.values(), *devices.values()] for path in paths)
    assert written == expected
    for paths in outputs.values():
        assert paths[0].read_bytes()[:4] == b"\x89PNG" and b"<svg" in paths[1].read_bytes()[:500]
    assert all(paths[0].read_bytes()[:4] == b"%PDF" for paths in devices.values())


def test_a_figure_without_a_path_is_an_error(results_csv):
    with pytest.raises(ValueError, match="no output paths given for figures \\['size_per_scheme'\\]"):
        figures.plot_results(results_csv, {"size_vs_accuracy": [], "accuracy_change_heatmap": []})


def test_learning_curves_and_layer_errors_are_drawn(tmp_path):
    history = tmp_path / "history.csv"
    pd.DataFrame({"epoch": [1, 2], "accuracy": [0.5, 0.7], "val_accuracy": [0.55, 0.72]}).to_csv(history, index=False)
    curves = {"learning_curves": [tmp_path / "curves.png"]}
    figures.plot_learning_curves([history, history], ["mnist/custom", "cifar10/custom"], curves, dpi=40)
    layers = tmp_path / "layers.csv"
    pd.DataFrame(
        {"dataset": "mnist", "model": "custom", "scheme": "int8", "depth": [0, 0.5, 1.0], "snr_db": [40.0, 35.0, 30.0]}
    ).to_csv(layers, index=False)
    errors = {"layer_error": [tmp_path / "errors.png"]}
    figures.plot_layer_errors([layers], errors, dpi=40)
    assert curves["learning_curves"][0].stat().st_size > 1000 and errors["layer_error"][0].stat().st_size > 1000
    with pytest.raises(ValueError, match="2 histories but 1 names"):
        figures.plot_learning_curves([history, history], ["mnist/custom"], curves)


def drawn_without_overlaps(figure):
    """Whether no legend of ``figure`` overlaps its title or any panel (as rendered)."""
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    legends = [legend.get_window_extent(renderer) for legend in figure.legends]
    others = [figure._suptitle.get_window_extent(renderer)] if figure._suptitle else []
    others += [axis.get_window_extent(renderer) for axis in figure.axes]
    return not any(legend.overlaps(other) for legend in legends for other in others)


@pytest.mark.parametrize("name", ["accuracy_vs_arena", "accuracy_vs_flash"])
def test_one_models_device_figures_have_readable_axes_and_legends_clear_of_the_title(results_csv, name):
    boards = figures.boards_from_config(yaml.safe_load((REPOSITORY / "config" / "config.yaml").read_text())["boards"])
    table = figures.read_results(results_csv)
    one = table[table.model == "custom"].copy()
    one["size_kb"] = np.where(one.scheme == "fp32", 48.0, 30.0)  # within one decade, as one small model's are
    one["arena_bytes"] = np.where(one.scheme == "fp32", 80_000, 26_000)
    figure = figures.DEVICE_FIGURES[name](one, boards)
    for axis in figure.axes:
        labels = [label.get_text() for label in axis.get_xticklabels() if label.get_text()]
        low, high = axis.get_xlim()
        in_view = [tick for tick in axis.get_xticks() if low <= tick <= high]
        assert len(in_view) >= 3, labels
    assert drawn_without_overlaps(figure)
    figures.pyplot().close(figure)
