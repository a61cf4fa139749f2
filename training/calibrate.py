"""Decision threshold at a target false accept rate, and isotonic distance → probability calibration.

Both are fit on validation pairs (identities unseen in training, distinct from the test ones).
Probabilities are calibrated for a balanced prior (positives and negatives weighted equally), the
neutral choice for "is this the same identity?" questions; ECE is measured the same way on test pairs.
"""

from __future__ import annotations

import numpy as np
from sklearn.isotonic import IsotonicRegression

from training.evaluate import Pairs
from twinstream.model.artifact import Calibration

MAX_POINTS = 256


def threshold_at_far(pairs: Pairs, target_far: float) -> float:
    """The largest distance threshold whose false accept rate on ``pairs`` is <= ``target_far``.

    A pair is accepted ("same identity") when its distance is <= the threshold.
    """
    neg = np.sort(pairs.distances[~pairs.same])
    if len(neg) == 0:
        raise ValueError("threshold_at_far needs negative pairs")
    allowed = int(np.floor(target_far * len(neg)))  # false accepts we may make
    if allowed >= len(neg):
        return float(neg[-1])
    # accept everything strictly closer than the (allowed+1)-th closest negative
    return float(np.nextafter(neg[allowed], -np.inf))


def _balanced_weights(same: np.ndarray) -> np.ndarray:
    n_pos, n_neg = int(same.sum()), int((~same).sum())
    return np.where(same, 0.5 / max(n_pos, 1), 0.5 / max(n_neg, 1))


def fit_calibration(pairs: Pairs) -> Calibration:
    """Isotonic (non-increasing) regression of "same identity" on distance, balanced prior."""
    iso = IsotonicRegression(increasing=False, y_min=0.0, y_max=1.0, out_of_bounds="clip")
    iso.fit(pairs.distances, pairs.same.astype(np.float64), sample_weight=_balanced_weights(pairs.same))
    xs, ys = np.asarray(iso.X_thresholds_), np.asarray(iso.y_thresholds_)
    if len(xs) > MAX_POINTS:  # thin the step function; keep both ends
        keep = np.unique(np.linspace(0, len(xs) - 1, MAX_POINTS).round().astype(int))
        xs, ys = xs[keep], ys[keep]
    ys = np.minimum.accumulate(np.clip(ys, 0.0, 1.0))  # exact monotonicity after float rounding
    return Calibration(tuple(float(x) for x in xs), tuple(float(y) for y in ys))


def expected_calibration_error(probabilities: np.ndarray, same: np.ndarray, bins: int = 15) -> float:
    """ECE with equal-width bins and balanced class weights (the prior the calibration assumes)."""
    w = _balanced_weights(same)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(probabilities, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        sel = which == b
        if not sel.any():
            continue
        wb = w[sel].sum()
        conf = np.average(probabilities[sel], weights=w[sel])
        acc = np.average(same[sel].astype(np.float64), weights=w[sel])
        ece += wb / w.sum() * abs(conf - acc)
    return float(ece)
