"""Intervals, paired tests and the correction for many tests, against published values and SciPy's own tests."""

import numpy as np
import pytest
from scipy import stats

from tinyml_quant.statistics import discordant_counts, holm, mcnemar_exact, wilson_interval


@pytest.mark.parametrize(
    "correct, total, low, high",
    [
        # Newcombe (1998), "Two-sided confidence intervals for the single proportion", table I (method 3).
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_intervals_are_newcombes(correct, total, low, high):
    assert wilson_interval(correct, total) == pytest.approx((low, high), abs=5e-5)


def test_a_wilson_interval_stays_within_zero_and_one_and_narrows_with_more_images():
    assert wilson_interval(10_000, 10_000)[1] == 1.0 and wilson_interval(0, 100)[0] == 0.0
    narrow, wide = wilson_interval(7700, 10_000), wilson_interval(77, 100)
    assert wide[0] < narrow[0] < 0.77 < narrow[1] < wide[1]
    with pytest.raises(ValueError, match="0 <= correct <= total"):
        wilson_interval(5, 0)


@pytest.mark.parametrize("b, c", [(0, 0), (1, 0), (5, 12), (40, 41), (3, 30), (200, 150)])
def test_the_exact_mcnemar_test_is_the_binomial_test_of_the_discordant_pairs(b, c):
    expected = 1.0 if b + c == 0 else stats.binomtest(c, b + c, 0.5).pvalue
    assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-9)


def test_discordant_counts_are_the_images_only_one_classifier_gets_right():
    labels = np.array([0, 1, 2, 3, 4, 5])
    reference = np.array([0, 1, 2, 0, 0, 5])  # right on 0, 1, 2, 5
    variant = np.array([0, 9, 2, 3, 0, 9])  # right on 0, 2, 3
    assert discordant_counts(reference, variant, labels) == (2, 1)


def test_holm_steps_down_and_keeps_the_order_given():
    # Sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1: 0.02, 0.03, 0.06, then the running maximum 0.06.
    adjusted, rejected = holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, 0.02])
    assert rejected.tolist() == [True, False, False, True]
    assert holm([0.9, 0.8])[0].tolist() == [1.0, 1.0]  # capped at one
