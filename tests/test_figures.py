"""Every figure is drawn to exactly the paths it is given, in the format of each path's suffix."""

import itertools

import numpy as np
import pandas as pd
import pytest
import yaml

from tinyml_quant import figures
from tinyml_quant.schemes import SCHEMES

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
                "seed": 42,
                "scheme": scheme,
                "status": "converted",
                "size_kb": 100.0 if scheme == "fp32" else 40.0,
                "accuracy": 0.9 - 0.01 * SCHEMES.index(scheme),
                "accuracy_ci_low": 0.89 - 0.01 * SCHEMES.index(scheme),
                "accuracy_ci_high": 0.91 - 0.01 * SCHEMES.index(scheme),
                "significant": SCHEMES.index(scheme) > 2,
                "accuracy_change_vs_fp32": -SCHEMES.index(scheme),
                "tflm_status": "runs" if runs else "unsupported on TFLite Micro",
                "arena_bytes": 50_000 if runs else np.nan,
                "tflm_unsupported_operator": None if runs else "DEQUANTIZE",
            }
        )
    pd.DataFrame(rows).to_csv(tmp_path / "results.csv", index=False)
    return tmp_path / "results.csv"


@pytest.fixture
def calibration_csv(tmp_path):
    rows = [
        {"dataset": dataset, "dataset_name": f"{dataset} (test)", "model": model, "seed": 42}
        | {"calibration_images": images, "accuracy_change_vs_fp32": -3.0 / images}
        for dataset, model, images in itertools.product(["mnist", "cifar10"], ["custom", "resnet_v1"], [1, 10, 100])
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "calibration.csv", index=False)
    return tmp_path / "calibration.csv"


@pytest.fixture
def npu_csv(tmp_path):
    boards = [board for board in config_boards() if board.get("npu")]
    rows = [
        {"dataset": dataset, "model": model, "seed": 42, "scheme": scheme, "board": board["label"]}
        | {"vela_status": "compiled" if scheme != "int4" else "Vela crashed (SIGFPE)", "inference_ms_estimate": 0.4}
        for dataset, model, scheme, board in itertools.product(
            ["mnist", "cifar10"], ["custom", "resnet_v1"], ["int8", "int16x8", "int4"], boards
        )
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "npu.csv", index=False)
    return tmp_path / "npu.csv"


def config_boards():
    return yaml.safe_load((REPOSITORY / "config" / "config.yaml").read_text())["boards"]


def test_the_result_and_device_figures_go_to_exactly_their_paths(results_csv, calibration_csv, npu_csv, tmp_path):
    boards = config_boards()
    outputs = {
        name: [tmp_path / "out" / f"{name}.png", tmp_path / "out" / f"{name}.svg"] for name in figures.RESULT_FIGURES
    }
    figures.plot_results(results_csv, outputs, dpi=40)
    names = [*figures.DEVICE_FIGURES, *figures.tradeoff_figure_names(["mnist", "cifar10"])]
    devices = {name: [tmp_path / "out" / f"{name}.pdf"] for name in names}
    figures.plot_device_fit(results_csv, calibration_csv, npu_csv, boards, devices, dpi=40)
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
    figures.plot_learning_curves([history, history], ["mnist/custom/1", "cifar10/custom/1"], curves, dpi=40)
    layers = tmp_path / "layers.csv"
    pd.DataFrame(
        {"dataset": "mnist", "model": "custom", "scheme": "int8", "depth": [0, 0.5, 1.0], "snr_db": [40.0, 35.0, 30.0]}
    ).to_csv(layers, index=False)
    errors = {"layer_error": [tmp_path / "errors.png"]}
    figures.plot_layer_errors([layers], errors, dpi=40)
    assert curves["learning_curves"][0].stat().st_size > 1000 and errors["layer_error"][0].stat().st_size > 1000
    with pytest.raises(ValueError, match="2 histories but 1 names"):
        figures.plot_learning_curves([history, history], ["mnist/custom/1"], curves)


def drawn_without_overlaps(figure):
    """Whether no legend of ``figure`` overlaps its title or any panel (as rendered)."""
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    legends = [legend.get_window_extent(renderer) for legend in figure.legends]
    others = [figure._suptitle.get_window_extent(renderer)] if figure._suptitle else []
    others += [axis.get_window_extent(renderer) for axis in figure.axes]
    others += [axis.title.get_window_extent(renderer) for axis in figure.axes if axis.get_title()]
    return not any(legend.overlaps(other) for legend in legends for other in others)


@pytest.mark.parametrize("name", ["accuracy_vs_arena", "accuracy_vs_flash"])
def test_one_models_device_figures_have_readable_axes_and_legends_clear_of_the_title(results_csv, name):
    boards = figures.boards_from_config(config_boards())
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


@pytest.mark.parametrize("seed", range(5))
def test_the_pareto_front_is_every_point_no_other_point_beats(seed):
    """Against the definition: a point is on the front when no other is as small and more accurate, or smaller
    and as accurate."""
    generator = np.random.default_rng(seed)
    sizes = generator.choice([10.0, 20.0, 30.0, 40.0], 12)
    changes = generator.choice([-2.0, -1.0, 0.0, 0.5], 12)
    dominated = {
        index
        for index in range(12)
        for other in range(12)
        if (sizes[other] <= sizes[index] and changes[other] > changes[index])
        or (sizes[other] < sizes[index] and changes[other] >= changes[index])
    }
    front = figures.pareto_front(sizes, changes)
    on_front = set(range(12)) - dominated
    # Of equal points (same size and change) the front keeps one.
    assert {(sizes[index], changes[index]) for index in front} == {(sizes[index], changes[index]) for index in on_front}
    assert list(sizes[front]) == sorted(sizes[front])


def test_the_tradeoff_figures_legends_are_clear_of_the_title_and_the_panel(results_csv):
    boards = figures.boards_from_config(config_boards())
    figure = figures.tradeoff(figures.read_results(results_csv), boards, "cifar10")
    assert drawn_without_overlaps(figure)
    titles = [axis.get_title() for axis in figure.axes]
    assert titles == ["What to choose on cifar10 (test): accuracy change against flash"]
    figures.pyplot().close(figure)


def test_every_layer_error_point_lies_inside_its_panels_axis():
    # A lossy scheme drawn after a mild one: its layers must stay in view of the shared axis.
    table = pd.DataFrame(
        {
            "dataset": "mnist",
            "model": "custom",
            "scheme": ["int8"] * 3 + ["int4"] * 3,
            "depth": [0, 0.5, 1.0] * 2,
            "snr_db": [40.0, 35.0, 30.0, 12.0, 4.0, -3.0],
        }
    )
    figure = figures.layer_error(table)
    for axis in figure.axes:
        bottom, top = axis.get_ylim()
        for line in axis.get_lines():
            assert all(bottom <= value <= top for value in line.get_ydata())
    figures.pyplot().close(figure)


def test_layer_errors_are_drawn_beside_a_model_without_any_and_in_a_study_without_integer_variants(tmp_path):
    """A variant its tool could not make leaves a CSV of headers only (as its job writes it); fp32 alone, none."""
    from tinyml_quant.layer_error import LAYER_COLUMNS

    headers_only = tmp_path / "failed.csv"
    pd.DataFrame(columns=["dataset", "model", "seed", "scheme", "images", *LAYER_COLUMNS]).to_csv(
        headers_only, index=False
    )
    layers = tmp_path / "layers.csv"
    pd.DataFrame(
        {"dataset": "mnist", "model": "custom", "seed": 1, "scheme": "int8", "depth": [0, 1.0], "snr_db": [40.0, 30.0]}
    ).to_csv(layers, index=False)
    for name, paths in (("mixed", [headers_only, layers]), ("failed", [headers_only]), ("fp32_only", [])):
        output = tmp_path / f"{name}.png"
        figures.plot_layer_errors(paths, {"layer_error": [output]}, dpi=40)
        assert output.stat().st_size > 1000


def test_the_heatmap_has_one_colour_scale_and_says_mean_over_seeds_only_for_several(results_csv):
    table = pd.read_csv(results_csv)
    # MNIST's changes are ten times smaller than CIFAR-10's: one scale shows them as such.
    table["accuracy_change_vs_fp32"] = table.accuracy_change_vs_fp32.astype(float)
    table.loc[table.dataset == "mnist", "accuracy_change_vs_fp32"] /= 10
    figure = figures.accuracy_change_heatmap(table)
    images = [image for axis in figure.axes for image in axis.get_images()]
    assert len(images) == 2
    assert {image.get_clim() for image in images} == {(-(len(SCHEMES) - 1), len(SCHEMES) - 1)}
    assert "mean over" not in figure.get_suptitle()
    several = pd.concat([table, table.assign(seed=43)])
    assert "mean over 2 seeds" in figures.accuracy_change_heatmap(several).get_suptitle()
    figures.pyplot().close("all")
