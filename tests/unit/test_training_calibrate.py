"""Threshold at a target FAR, isotonic calibration and ECE."""

from __future__ import annotations

import numpy as np
import pytest

from training.calibrate import expected_calibration_error, fit_calibration, threshold_at_far
from training.evaluate import Pairs


def _pairs(seed: int = 0, n: int = 4000) -> Pairs:
    rng = np.random.default_rng(seed)
    pos = np.clip(rng.normal(0.6, 0.2, n), 0, 2)
    neg = np.clip(rng.normal(1.3, 0.2, n * 4), 0, 2)
    return Pairs(np.concatenate([pos, neg]), np.concatenate([np.ones(n, bool), np.zeros(n * 4, bool)]))


@pytest.mark.parametrize("target", [1e-1, 1e-2, 1e-3])
def test_threshold_keeps_the_false_accept_rate_at_or_below_target(target: float) -> None:
    pairs = _pairs()
    threshold = threshold_at_far(pairs, target)
    far = float(np.mean(pairs.distances[~pairs.same] <= threshold))
    assert far <= target
    assert far > target / 3  # and is not needlessly strict


def test_calibration_is_monotone_non_increasing_in_distance() -> None:
    cal = fit_calibration(_pairs())
    assert np.all(np.diff(cal.distances) >= 0)
    assert np.all(np.diff(cal.probabilities) <= 0)
    assert cal.probabilities[0] > 0.95 and cal.probabilities[-1] < 0.05


def test_calibrated_probabilities_have_low_ece_on_fresh_pairs_from_the_same_distributions() -> None:
    cal = fit_calibration(_pairs(seed=0))
    fresh = _pairs(seed=1)
    probs = np.interp(fresh.distances, cal.distances, cal.probabilities)
    assert expected_calibration_error(probs, fresh.same) < 0.03


def test_ece_of_overconfident_probabilities_is_large() -> None:
    pairs = _pairs()
    wrong = np.where(pairs.same, 0.0, 1.0)
    assert expected_calibration_error(wrong, pairs.same) > 0.9
