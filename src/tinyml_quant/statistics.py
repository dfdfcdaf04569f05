"""How sure each number is: Wilson intervals of accuracies, exact McNemar tests of paired changes, Holm's correction.

* An accuracy of ``k`` correct of ``n`` test images gets the Wilson score
  interval (95 %): unlike the normal approximation it stays inside [0, 1] and
  keeps its coverage near 0 and 1, where quantized MNIST models sit.
* A variant's change against its fp32 model is tested on the same test
  images: only the images the two classify differently carry information, ``b``
  right by fp32 alone and ``c`` right by the variant alone. The exact McNemar
  test is the two-sided binomial test of ``c`` among ``b + c`` at one half.
* A model is clearly above chance when the Wilson interval of its test
  accuracy lies wholly above ``1 / classes``, what guessing scores on
  balanced classes: a model that cannot be told from guessing is flagged, and
  none of its variants is recommended.
* Every variant of a study is one such test, so the p-values are corrected
  for their number by Holm's step-down method, which holds the family-wise
  error rate at ``alpha`` for any dependence between the tests.
"""

import math

import numpy as np
import pandas as pd

# The normal quantile of a two-sided 95 % interval.
Z_95 = 1.959963984540054
ALPHA = 0.05


def wilson_interval(correct, total, z=Z_95):
    """``(low, high)`` of the Wilson score interval of ``correct`` successes in ``total`` trials."""
    if total <= 0 or not 0 <= correct <= total:
        raise ValueError(f"a proportion needs 0 <= correct <= total and total > 0, got {correct} of {total}")
    share = correct / total
    denominator = 1 + z**2 / total
    centre = (share + z**2 / (2 * total)) / denominator
    half = z * math.sqrt(share * (1 - share) / total + z**2 / (4 * total**2)) / denominator
    # At 0 or all correct the bound is exactly 0 or 1; floating point leaves a residue of 1e-18.
    low = 0.0 if correct == 0 else centre - half
    high = 1.0 if correct == total else centre + half
    return low, high


def clearly_above_chance(correct, total, classes, z=Z_95):
    """Whether ``correct`` of ``total`` is clearly above chance: its Wilson lower bound above 1 / ``classes``."""
    if classes < 2:
        raise ValueError(f"chance needs at least 2 classes, got {classes}")
    return bool(wilson_interval(correct, total, z)[0] > 1 / classes)


# How the tables mark a model that is not clearly above chance.
AT_CHANCE = "at chance"


def is_at_chance(above_chance):
    """True only for a model judged and found not clearly above chance (False, not a missing judgement)."""
    return not pd.isna(above_chance) and not bool(above_chance)


def discordant_counts(reference_predictions, predictions, labels):
    """``(b, c)``: images only the reference classifies right, and images only the variant classifies right."""
    reference_right = np.asarray(reference_predictions) == np.asarray(labels)
    variant_right = np.asarray(predictions) == np.asarray(labels)
    return int(np.sum(reference_right & ~variant_right)), int(np.sum(~reference_right & variant_right))


def mcnemar_exact(b, c):
    """The two-sided p-value of the exact McNemar test of ``b`` against ``c`` discordant pairs."""
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts cannot be negative, got {b} and {c}")
    pairs = b + c
    if pairs == 0:
        return 1.0
    smaller = min(b, c)
    tail = sum(math.comb(pairs, k) for k in range(smaller + 1)) / 2**pairs
    return min(1.0, 2 * tail)


def holm(p_values, alpha=ALPHA):
    """``(adjusted p-values, rejected)`` of Holm's step-down correction, in the order given."""
    p_values = np.asarray(p_values, dtype=float)
    count = len(p_values)
    order = np.argsort(p_values, kind="stable")
    adjusted = np.empty(count)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, (count - rank) * p_values[index])
        adjusted[index] = min(1.0, running)
    return adjusted, adjusted <= alpha


def holm_columns(frame, p_column="mcnemar_p"):
    """``frame`` given ``holm_p`` and ``significant``: Holm's correction over its rows with a ``p_column``, one family.

    Every table's family goes through here, so that each is corrected at the one ``ALPHA``.
    """
    tested = frame[p_column].notna().to_numpy()
    if tested.any():
        adjusted, rejected = holm(frame.loc[tested, p_column].astype(float).to_numpy())
        frame.loc[tested, "holm_p"] = adjusted
        frame.loc[tested, "significant"] = rejected
    return frame
