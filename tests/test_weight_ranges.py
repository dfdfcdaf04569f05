"""int4's weight ranges side by side: synthetic predictions whose tests and verdict are known beforehand."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from test_reporting import TRAINED, gathered, study_records

from tinyml_quant.weight_ranges import (
    LOSES,
    NO_DIFFERENCE,
    NOT_COMPARED,
    WINS,
    algorithm_counts,
    comparisons,
    model_outcome,
    ranges_markdown,
    run_ranges,
    verdict,
)

IMAGES = 200
TRUTH = np.arange(IMAGES) % 4
# Which test images each kind of variant gets wrong: int4 (min/max) the first 40; a twin that wins gets none
# wrong (40 images only it gets right), one that ties the same 40 (no discordant image), one that loses 80.
WRONG = {"int4": range(40), WINS: range(0), NO_DIFFERENCE: range(40), LOSES: range(80)}


def wrong_on(images):
    predicted = TRUTH.copy()
    predicted[list(images)] = (predicted[list(images)] + 1) % 4
    return predicted


def study(outcomes, dataset="toy"):
    """A results table and predictions: per ``(model, seed)`` int4 and each twin ({scheme: kind}) as ``WRONG``.

    A kind of None is a twin the quantizer could not make.
    """
    rows, predictions = [], {}
    for (model, seed), twins in outcomes.items():
        for scheme, kind in {"int4": "int4", **twins}.items():
            key = (dataset, model, seed, scheme)
            row = {"dataset": dataset, "dataset_name": "toy (test)", "model": model, "seed": seed, "scheme": scheme}
            if kind is None:
                rows.append(row | {"status": "not converted", "reason": "ValueError: no", "accuracy": np.nan})
                continue
            predictions[key] = wrong_on(WRONG[kind])
            accuracy = float(np.mean(predictions[key] == TRUTH))
            rows.append(row | {"status": "converted", "reason": None, "accuracy": accuracy, "above_chance": True})
    return pd.DataFrame(rows), predictions, {dataset: TRUTH}


def compared(outcomes, algorithm="min_max"):
    table, predictions, labels = study(outcomes)
    return comparisons(table, predictions, labels, algorithm)


def test_each_twin_is_tested_against_int4_on_the_images_only_one_gets_right():
    frame = compared({("a", 1): {"int4_octav": WINS, "int4_mse": LOSES}}).set_index("algorithm")
    assert frame.loc["octav", ["baseline_only_right", "algorithm_only_right"]].tolist() == [0, 40]
    assert frame.loc["mse", ["baseline_only_right", "algorithm_only_right"]].tolist() == [40, 0]
    assert frame.loc["octav", "accuracy_change_points"] == pytest.approx(20.0)  # 80 % to 100 %
    assert frame.loc["mse", "accuracy_change_points"] == pytest.approx(-20.0)
    assert frame.outcome.tolist() == [WINS, LOSES] and frame.significant.tolist() == [True, True]


def test_the_p_value_is_scipys_binomial_test_of_the_discordant_images_and_holm_corrects_it():
    """int4 wrong on 0-9, the twin on 5-16: 5 images only the twin gets right, 7 only int4 gets right."""
    table, predictions, labels = study({("a", 1): {"int4_octav": NO_DIFFERENCE, "int4_mse": WINS}})
    predictions[("toy", "a", 1, "int4")] = wrong_on(range(10))
    predictions[("toy", "a", 1, "int4_octav")] = wrong_on(range(5, 17))
    frame = comparisons(table, predictions, labels).set_index("algorithm")
    assert frame.loc["octav", ["baseline_only_right", "algorithm_only_right"]].tolist() == [7, 5]
    octav = stats.binomtest(5, 12, 0.5).pvalue
    mse = stats.binomtest(10, 10, 0.5).pvalue  # int4 wrong on 10 images, mse on none
    assert frame.mcnemar_p.tolist() == pytest.approx([octav, mse])
    # Holm over two tests: the smaller doubled, the larger as it is (not below the first).
    assert frame.holm_p.tolist() == pytest.approx([octav, 2 * mse])
    assert frame.outcome.tolist() == [NO_DIFFERENCE, WINS]


def test_rows_are_joined_by_key_not_by_position():
    outcomes = {
        ("a", 1): {"int4_octav": WINS},
        ("b", 1): {"int4_octav": LOSES},
        ("c", 2): {"int4_octav": NO_DIFFERENCE},
    }
    table, predictions, labels = study(outcomes)
    expected = comparisons(table, predictions, labels)
    shuffled = table.sample(frac=1, random_state=3).reset_index(drop=True)
    reordered = dict(reversed(list(predictions.items())))
    pd.testing.assert_frame_equal(comparisons(shuffled, reordered, labels), expected)
    assert expected.set_index("model").outcome.to_dict() == {"a": WINS, "b": LOSES, "c": NO_DIFFERENCE}


@pytest.mark.parametrize(
    ("seeds", "expected"),
    [
        ([WINS], WINS),
        ([WINS, NO_DIFFERENCE], NO_DIFFERENCE),  # exactly half is not more than half
        ([WINS, WINS, NO_DIFFERENCE], WINS),
        ([LOSES, LOSES, WINS], LOSES),
        ([WINS, LOSES], NO_DIFFERENCE),
        ([NOT_COMPARED, NOT_COMPARED], NOT_COMPARED),
        ([WINS, NOT_COMPARED, NOT_COMPARED], NO_DIFFERENCE),
    ],
)
def test_a_model_wins_or_loses_on_more_than_half_of_its_seeds(seeds, expected):
    assert model_outcome(seeds) == expected


def models_won(wins, models):
    """``models`` models, one seed each; OCTAV wins significantly on the first ``wins``, ties on the rest."""
    return {(f"m{index}", 1): {"int4_octav": WINS if index < wins else NO_DIFFERENCE} for index in range(models)}


def test_an_algorithm_winning_on_exactly_half_of_the_models_leaves_min_max():
    counts = algorithm_counts(compared(models_won(2, 4)))
    assert counts.set_index("algorithm").loc["octav", [WINS, "models", "majority"]].tolist() == [2, 4, False]
    chosen, sentence = verdict(counts)
    assert chosen == "min_max" and "min/max stays" in sentence and "OCTAV 2" in sentence


def test_an_algorithm_winning_on_more_than_half_of_the_models_is_the_verdict():
    counts = algorithm_counts(compared(models_won(3, 4)))
    chosen, sentence = verdict(counts)
    assert chosen == "octav" and "on 3 of the 4 models" in sentence


def test_seeds_are_judged_per_model_so_a_model_with_more_seeds_does_not_weigh_more():
    """OCTAV wins on all three seeds of model a and ties on b and c: one model of three, not three of five."""
    outcomes = {("a", seed): {"int4_octav": WINS} for seed in (1, 2, 3)}
    outcomes |= {(model, 1): {"int4_octav": NO_DIFFERENCE} for model in ("b", "c")}
    frame = compared(outcomes)
    assert frame.set_index(["model", "seed"]).model_outcome.to_dict() == {
        ("a", 1): WINS,
        ("a", 2): WINS,
        ("a", 3): WINS,
        ("b", 1): NO_DIFFERENCE,
        ("c", 1): NO_DIFFERENCE,
    }
    counts = algorithm_counts(frame)
    assert counts[[WINS, "models", "majority"]].values.tolist() == [[1, 3, False]]


def test_a_twin_the_quantizer_could_not_make_is_not_compared_but_still_counts_as_a_model():
    frame = compared({("a", 1): {"int4_octav": None}, ("b", 1): {"int4_octav": WINS}})
    failed = frame.set_index("model").loc["a"]
    assert failed.outcome == NOT_COMPARED and failed.reason == "int4_octav not converted (ValueError: no)"
    assert pd.isna(failed.mcnemar_p) and pd.isna(failed.accuracy_change_points)
    counts = algorithm_counts(frame).iloc[0]
    assert (counts.models, counts[WINS], counts[NOT_COMPARED], counts.majority) == (2, 1, 1, False)


def test_where_both_algorithms_win_on_most_models_the_one_with_more_wins_is_the_verdict():
    outcomes = {(f"m{index}", 1): {"int4_octav": WINS, "int4_mse": WINS if index < 3 else LOSES} for index in range(4)}
    chosen, sentence = verdict(algorithm_counts(compared(outcomes)))
    assert chosen == "octav" and "4 of the 4 models" in sentence and "MSE 3" in sentence


def test_the_section_says_plainly_when_the_studys_setting_disagrees_with_its_verdict():
    frame = compared(models_won(3, 4))
    counts = algorithm_counts(frame)
    markdown = ranges_markdown(frame, counts, *verdict(counts), "min_max")
    assert "**The study's setting disagrees with its own verdict:**" in markdown
    assert "`conversion.int4.weight_algorithm` is `min_max`, the verdict says `octav`" in markdown
    agreeing = compared(models_won(2, 4))
    counts = algorithm_counts(agreeing)
    markdown = ranges_markdown(agreeing, counts, *verdict(counts), "min_max")
    assert "The study's setting agrees with its verdict" in markdown and "disagrees" not in markdown


def test_with_int4_made_by_octav_only_mse_is_compared_and_min_max_is_said_to_be_missing(tmp_path):
    table, predictions, labels = study({("a", 1): {"int4_octav": NO_DIFFERENCE, "int4_mse": WINS}})
    markdown = run_ranges(table, predictions, labels, "octav", tmp_path / "ranges.csv")
    written = pd.read_csv(tmp_path / "ranges.csv")
    assert written.algorithm.tolist() == ["mse"] and written.baseline_algorithm.tolist() == ["octav"]
    assert "min/max is in no variant of this study" in markdown and "MSE should become" in markdown


def test_the_results_gather_writes_the_csv_and_the_section_with_its_verdict(tmp_path):
    """Through run_gather: int4 wrong on 40 images, int4_octav on none, int4_mse on the same 40."""

    def predictions(model, scheme, labels):
        wrong = {"fp32": 0, "int4": 40, "int4_octav": 0, "int4_mse": 40}[scheme]
        predicted = labels.copy()
        predicted[:wrong] = (predicted[:wrong] + 1) % 3
        return predicted

    schemes = ("fp32", "int4", "int4_octav", "int4_mse")
    paths = study_records(tmp_path, {"custom": TRAINED}, schemes, predictions=predictions)
    _, markdown = gathered(tmp_path, paths)
    written = pd.read_csv(tmp_path / "int4_ranges_csv.out").set_index("algorithm")
    assert written.outcome.to_dict() == {"octav": WINS, "mse": NO_DIFFERENCE}
    assert written.loc["octav", ["baseline_only_right", "algorithm_only_right"]].tolist() == [0, 40]
    section = markdown[markdown.index("## int4 weight ranges: min/max, OCTAV, MSE") :].split("\n## ")[0]
    verdict_line = "**Verdict:** OCTAV should become int4's weight algorithm: it wins significantly against min/max"
    assert f"{verdict_line} on 1 of the 1 models" in section
    assert "disagrees with its own verdict" in section  # the default config says min_max
