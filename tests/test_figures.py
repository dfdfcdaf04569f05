"""Every figure is drawn to exactly the paths it is given, in the format of each path's suffix."""

import itertools

import numpy as np
import pandas as pd
import pytest
import yaml

from tinyml_quant import devices, figures
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
                "file_bytes": 102_400 if scheme == "fp32" else 40_960,
                "compression_vs_fp32": 1.0 if scheme == "fp32" else 2.5,
                "macs": np.nan,
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
def fit_csv(results_csv, tmp_path):
    """The fit table of the results (``devices.fit_table``, as rule fit_table writes it)."""
    fit = fit_of(pd.read_csv(results_csv))
    fit.to_csv(tmp_path / "fit_table.csv", index=False)
    return tmp_path / "fit_table.csv"


def fit_of(results):
    config = yaml.safe_load((REPOSITORY / "config" / "config.yaml").read_text())
    return devices.fit_table(results, devices.boards_from_config(config["boards"]), {}, config["cortex_m_latency"])


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


def test_the_result_and_device_figures_go_to_exactly_their_paths(
    results_csv, fit_csv, calibration_csv, npu_csv, tmp_path
):
    boards = config_boards()
    outputs = {
        name: [tmp_path / "out" / f"{name}.png", tmp_path / "out" / f"{name}.svg"] for name in figures.RESULT_FIGURES
    }
    figures.plot_results(results_csv, outputs, dpi=40)
    names = [*figures.DEVICE_FIGURES, *figures.tradeoff_figure_names(["mnist", "cifar10"])]
    drawn = {name: [tmp_path / "out" / f"{name}.pdf"] for name in names}
    figures.plot_device_fit(results_csv, fit_csv, calibration_csv, npu_csv, boards, drawn, dpi=40)
    written = sorted(path.name for path in (tmp_path / "out").iterdir())
    expected = sorted(path.name for paths in [*outputs.values(), *drawn.values()] for path in paths)
    assert written == expected
    for paths in outputs.values():
        assert paths[0].read_bytes()[:4] == b"\x89PNG" and b"<svg" in paths[1].read_bytes()[:500]
    assert all(paths[0].read_bytes()[:4] == b"%PDF" for paths in drawn.values())


def test_a_figure_without_a_path_is_an_error(results_csv):
    with pytest.raises(ValueError, match="no output paths given for figures \\['size_per_scheme'\\]"):
        figures.plot_results(results_csv, {"accuracy_change_heatmap": []})


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


def test_one_models_arena_figure_has_readable_axes_and_legends_clear_of_the_title(results_csv):
    boards = figures.boards_from_config(config_boards())
    table = figures.read_results(results_csv)
    one = table[table.model == "custom"].copy()
    one["size_kb"] = np.where(one.scheme == "fp32", 48.0, 30.0)  # within one decade, as one small model's are
    one["arena_bytes"] = np.where(one.scheme == "fp32", 80_000, 26_000)
    figure = figures.accuracy_vs_arena(one, boards)
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
    accuracies = generator.choice([0.7, 0.8, 0.9, 0.95], 12)
    dominated = {
        index
        for index in range(12)
        for other in range(12)
        if (sizes[other] <= sizes[index] and accuracies[other] > accuracies[index])
        or (sizes[other] < sizes[index] and accuracies[other] >= accuracies[index])
    }
    front = figures.pareto_front(sizes, accuracies)
    on_front = set(range(12)) - dominated
    # Of equal points (same size and accuracy) the front keeps one.
    assert {(sizes[i], accuracies[i]) for i in front} == {(sizes[i], accuracies[i]) for i in on_front}
    assert list(sizes[front]) == sorted(sizes[front])


def test_the_tradeoff_figures_legends_are_clear_of_the_title_and_the_panels(results_csv, fit_csv):
    boards = figures.boards_from_config(config_boards())
    figure = figures.tradeoff(figures.read_results(results_csv), pd.read_csv(fit_csv), boards, "cifar10")
    assert drawn_without_overlaps(figure)
    assert figure.get_suptitle().startswith("What to choose on cifar10 (test)")
    figures.pyplot().close(figure)


# ---------------------------------------------------------------- the tradeoff ("what to choose") figure

MODELS = ("alpha", "beta", "gamma", "delta")
UNSUPPORTED_SCHEMES = ("dynamic_range", "float16")


def study(seed, wrong=4, datasets=("cifar10",)):
    """A results table of every model and scheme, flash and accuracy drawn at random (no two equal), the
    float schemes TFLite Micro refuses, and ``wrong`` integer variants that run with wrong output; these
    are made the smallest and most accurate of their dataset, so that a front that let them in would
    show it."""
    generator = np.random.default_rng(seed)
    rows = []
    for dataset, model, scheme in itertools.product(datasets, MODELS, SCHEMES):
        accuracy = generator.uniform(0.5, 0.95)
        size_kb = float(generator.uniform(15, 1500))
        unsupported = scheme in UNSUPPORTED_SCHEMES
        rows.append(
            {
                "dataset": dataset,
                "dataset_name": f"{dataset} (jpeg mirror)" if dataset == "cifar10" else f"{dataset} (official)",
                "model": model,
                "seed": 1,
                "scheme": scheme,
                "status": "converted",
                "size_kb": size_kb,
                "file_bytes": int(size_kb * 1024),
                "compression_vs_fp32": 1.0,
                "accuracy": accuracy,
                "accuracy_ci_low": accuracy - 0.008,
                "accuracy_ci_high": accuracy + 0.008,
                "accuracy_change_vs_fp32": 0.0,
                "significant": False,
                "above_chance": True,
                "tflm_status": "unsupported on TFLite Micro" if unsupported else "runs",
                "arena_bytes": np.nan if unsupported else int(generator.uniform(16, 700) * 1024),
                "tflm_unsupported_operator": "DEQUANTIZE" if unsupported else None,
                "tflm_top1_agreement": np.nan if unsupported else 1.0,
                "macs": np.nan,
            }
        )
    table = pd.DataFrame(rows)
    for dataset in datasets:
        runs = table[(table.dataset == dataset) & (table.tflm_status == "runs")]
        chosen = generator.choice(runs.index, wrong, replace=False)
        table.loc[chosen, "tflm_status"] = "runs, wrong output"
        table.loc[chosen, "tflm_top1_agreement"] = 0.1
        table.loc[chosen, "size_kb"] = runs.size_kb.min() / generator.uniform(1.1, 2.0, wrong)
        table.loc[chosen, "accuracy"] = runs.accuracy.max() + generator.uniform(0.001, 0.02, wrong)
    table["file_bytes"] = (table.size_kb * 1024).astype(int)
    table["accuracy_ci_low"], table["accuracy_ci_high"] = table.accuracy - 0.008, table.accuracy + 0.008
    return table


def brute_force_front(table):
    """The variants through the gate that no other variant through the gate beats on both flash and accuracy."""
    passing = table[(table.status == "converted") & (table.tflm_status == "runs")]
    return {
        index
        for index, row in passing.iterrows()
        if not ((passing.accuracy > row.accuracy) & (passing.size_kb < row.size_kb)).any()
    }


def drawn_front(figure):
    """The flash of each point of the front line the figure drew (its last point is the right edge)."""
    lines = [line for line in figure.axes[0].get_lines() if line.get_gid() == "pareto_front"]
    assert len(lines) == 1
    return set(lines[0].get_xdata()[:-1])


def tradeoff_of(table, dataset="cifar10"):
    boards = figures.boards_from_config(config_boards())
    results = figures.read_results_frame(table)
    return results, figures.tradeoff(results, fit_of(table), boards, dataset)


@pytest.mark.parametrize("seed", range(4))
def test_the_tradeoff_front_is_the_brute_force_front_over_every_model_and_never_a_wrong_variant(seed):
    table = study(seed)
    results, figure = tradeoff_of(table)
    expected = brute_force_front(results)
    assert set(figures.choice_front(results)) == expected
    # The drawn line too, over every model: not one front per model.
    assert drawn_front(figure) == set(results.size_kb.loc[sorted(expected)])
    assert len(set(results.model.loc[sorted(expected)])) >= 1
    wrong = results[results.tflm_status == "runs, wrong output"]
    assert len(wrong) == 4
    assert not set(wrong.index) & set(figures.choice_front(results))
    assert not set(wrong.size_kb) & drawn_front(figure)
    figures.pyplot().close(figure)


def test_a_model_at_chance_is_not_on_the_front():
    table = study(0, wrong=0)
    smallest = table[table.tflm_status == "runs"].size_kb.idxmin()
    table.loc[table.model == table.model[smallest], "above_chance"] = False
    results = figures.read_results_frame(table)
    front = figures.choice_front(results)
    assert front and smallest not in front
    assert not (results.model.loc[front] == table.model[smallest]).any()


def test_hollow_markers_are_the_variants_that_fit_no_cortex_m_board():
    """Against the boards' figures in the config: a variant goes on a board when TFLite Micro runs it and its
    file and arena, plus the board's allowances, fit the board's flash and RAM."""
    table = study(1)
    config_entries = [entry for entry in config_boards() if not entry.get("npu")]
    results, figure = tradeoff_of(table)

    def fits_somewhere(row):
        return row.tflm_status == "runs" and any(
            row.file_bytes + entry["flash_allowance_kb"] * 1024 <= entry["flash_kb"] * 1024
            and row.arena_bytes + entry["ram_allowance_kb"] * 1024 <= entry["ram_kb"] * 1024
            for entry in config_entries
        )

    expected = {f"{row.model}/{row.seed}/{row.scheme}" for row in results.itertuples() if not fits_somewhere(row)}
    assert 0 < len(expected) < len(results)
    markers = [c for c in figure.axes[0].collections if c.get_gid()]
    hollow = {c.get_gid() for c in markers if c.get_facecolors().size == 0 or c.get_facecolors()[0][3] == 0}
    assert hollow == expected
    figures.pyplot().close(figure)


def test_the_zoom_holds_the_fronts_choices_and_leaves_a_lossy_outlier_to_the_panel_below():
    table = study(2, wrong=0)
    # Each model's variants within 1.5 points of its best, as int8-like schemes keep them ...
    best = dict(zip(MODELS, (0.70, 0.78, 0.82, 0.85)))
    offsets = np.random.default_rng(2).uniform(-0.015, 0.0, len(table))
    table["accuracy"] = table.model.map(best) + offsets
    table["accuracy_ci_low"], table["accuracy_ci_high"] = table.accuracy - 0.008, table.accuracy + 0.008
    # ... but the smallest variant is an int4 that lost 30 points: on the front, yet no choice.
    smallest = table[table.tflm_status == "runs"].size_kb.idxmin()
    table.loc[smallest, "accuracy"] = table[table.model == table.model[smallest]].accuracy.max() - 0.30
    table.loc[smallest, ["accuracy_ci_low", "accuracy_ci_high"]] = table.accuracy[smallest] + np.array([-0.01, 0.01])
    results, figure = tradeoff_of(table)
    zoom, overview = figure.axes[0], figure.axes[1]
    low, high = zoom.get_ylim()
    front = figures.choice_front(results)
    assert smallest in front
    assert 100 * results.accuracy[smallest] < low
    others = [index for index in front if index != smallest]
    assert len(others) >= 2 and all(low <= 100 * results.accuracy[index] <= high for index in others)
    assert overview.get_ylim()[0] <= 100 * results.accuracy[smallest]
    figures.pyplot().close(figure)


def test_the_cifar10_mirrors_figure_says_it_is_the_jpeg_copy():
    table = study(3, datasets=("cifar10", "mnist"))
    for dataset, said in (("cifar10", True), ("mnist", False)):
        _, figure = tradeoff_of(table, dataset)
        assert ("JPEG quality-75 copy" in figure.get_suptitle()) is said
        figures.pyplot().close(figure)


def png_width_and_height(figure, dpi):
    import io
    import struct

    buffer = io.BytesIO()
    figure.savefig(buffer, dpi=dpi, bbox_inches="tight", format="png")
    figures.pyplot().close(figure)
    return struct.unpack(">II", buffer.getvalue()[16:24])


PAGE_PIXELS = 2000


def test_every_figure_of_a_default_sized_study_fits_a_page_width_at_the_configured_dpi():
    dpi = yaml.safe_load((REPOSITORY / "config" / "config.yaml").read_text())["plots"]["dpi"]
    table = study(4, datasets=("cifar10", "mnist"))
    results = figures.read_results_frame(table)
    boards = figures.boards_from_config(config_boards())
    layers = pd.DataFrame(
        [
            {"dataset": dataset, "model": model, "seed": 1, "scheme": scheme, "depth": depth, "snr_db": 30.0}
            for dataset, model, scheme in itertools.product(("a", "b", "c", "d"), MODELS, SCHEMES[3:])
            for depth in (0.0, 0.5, 1.0)
        ]
    )
    npu = pd.DataFrame(
        [
            {"dataset": row.dataset, "model": row.model, "seed": 1, "scheme": row.scheme, "board": board.label}
            | {"vela_status": "compiled", "inference_ms_estimate": 0.5}
            for row in results[results.scheme.isin(["int8", "int16x8", "int8_lut"])].itertuples()
            for board in boards.values()
            if board.npu
        ]
    )
    calibration = pd.DataFrame(
        [
            {"dataset_name": name, "model": model, "calibration_images": images, "accuracy_change_vs_fp32": -1.0}
            for name, model, images in itertools.product(set(results.dataset_name), MODELS, (1, 10, 100))
        ]
    )
    drawn = {
        **{name: draw(results) for name, draw in figures.RESULT_FIGURES.items()},
        "accuracy_vs_arena": figures.accuracy_vs_arena(results, boards),
        "npu_latency": figures.npu_latency(results, npu, boards),
        "calibration_sweep": figures.calibration_sweep(calibration),
        "tradeoff_cifar10": figures.tradeoff(results, fit_of(table), boards, "cifar10"),
        "layer_error, two datasets": figures.layer_error(layers[layers.dataset.isin(["a", "b"])]),
        "layer_error, four datasets": figures.layer_error(layers),
    }
    for name, figure in drawn.items():
        width, height = png_width_and_height(figure, dpi)
        # More datasets make the layer errors longer, never wider.
        tall = name == "layer_error, four datasets"
        assert width <= PAGE_PIXELS and (tall or height <= 2 * PAGE_PIXELS), (name, width, height)


@pytest.mark.parametrize("datasets", [1, 2, 3, 4, 7])
def test_layer_error_panels_are_at_most_three_a_row_and_each_pair_once(datasets):
    names = [f"d{index}" for index in range(datasets)]
    rows, columns, panels = figures.layer_panels(names, ["int8", "int4"])
    assert columns <= figures.MAX_PANEL_COLUMNS and rows * columns >= len(panels)
    assert sorted(panels) == sorted(itertools.product(names, ["int8", "int4"]))


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
