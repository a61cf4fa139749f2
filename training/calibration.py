"""Fitting the serving-side score calibration on pairs of held-out identities, and choosing its method.

Pairs come from identities seen neither in training nor in testing (the validation split): every genuine
pair and a sample of impostor pairs. Each candidate method (`CalibrationMethod`) is fit with the classes
weighted equally (its log-odds are then the log likelihood ratio) and scored by prior-weighted log-loss
on an identity-disjoint 2-fold split (pairs whose two identities fall in different folds are dropped, so
no identity is on both sides); the best is refit on all pairs. Quality measures (ECE and its bootstrap,
the reliability diagram) live in `training.calibration_quality`; the impostor model's fit in
`training.impostor_fit`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from twinstream.model.calibration import (
    BetaMap,
    CalibrationMethod,
    IsotonicMap,
    PlattMap,
    ScoreCalibration,
    ScoreMap,
)

MAX_KNOTS = 256
_EDGE = 1e-9  # keeps the beta features finite when fitting (d = 0 or 2 only for duplicates / antipodes)


@dataclass(frozen=True, slots=True)
class IdentityPairs:
    """Pair distances, whether each pair shares an identity, and the identity on each side."""

    distances: np.ndarray
    same: np.ndarray
    first: np.ndarray
    second: np.ndarray

    def select(self, keep: np.ndarray) -> IdentityPairs:
        """The pairs where ``keep`` is true."""
        return IdentityPairs(self.distances[keep], self.same[keep], self.first[keep], self.second[keep])

    @property
    def counts(self) -> tuple[int, int]:
        """(genuine, impostor) pair counts."""
        return int(self.same.sum()), int((~self.same).sum())


@dataclass(frozen=True, slots=True)
class CalibrationFit:
    """The chosen calibration with what chose it.

    Attributes:
        calibration: The chosen method refit on all pairs, stated for the fitting prior.
        log_loss: Held-out (2-fold by identity) prior-weighted log-loss of each candidate.
        genuine_pairs: Genuine pairs used for the final fit.
        impostor_pairs: Impostor pairs used for the final fit.
        identities: Identities the pairs came from.
    """

    calibration: ScoreCalibration
    log_loss: dict[CalibrationMethod, float]
    genuine_pairs: int
    impostor_pairs: int
    identities: int


def sample_identity_pairs(
    emb: np.ndarray,
    labels: np.ndarray,
    seed: int = 0,
    max_neg: int = 200_000,
    groups: np.ndarray | None = None,
) -> IdentityPairs:
    """All genuine pairs (i < j, same label) and up to ``max_neg`` random impostor pairs.

    With ``groups`` (a family per image, see `training.impostor_fit`), impostor pairs are drawn from
    different families only.
    """
    rng = np.random.default_rng(seed)
    pos_i, pos_j = [], []
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        a, b = np.triu_indices(len(idx), k=1)
        pos_i.append(idx[a])
        pos_j.append(idx[b])
    ni, nj = rng.integers(0, len(labels), size=(2, max_neg * 2))
    keep = labels[ni] != labels[nj] if groups is None else groups[ni] != groups[nj]
    i = np.concatenate([*pos_i, ni[keep][:max_neg]])
    j = np.concatenate([*pos_j, nj[keep][:max_neg]])
    dist = np.linalg.norm(emb[i].astype(np.float64) - emb[j].astype(np.float64), axis=1)
    return IdentityPairs(dist, labels[i] == labels[j], labels[i], labels[j])


def prior_weights(same: np.ndarray, prior: float = 0.5, weights: np.ndarray | None = None) -> np.ndarray:
    """Per-pair weights summing to ``prior`` over genuine and ``1 - prior`` over impostor pairs."""
    base = np.ones(len(same)) if weights is None else np.asarray(weights, dtype=np.float64)
    pos, neg = base[same].sum(), base[~same].sum()
    return np.where(same, prior * base / max(pos, 1e-300), (1.0 - prior) * base / max(neg, 1e-300))


def log_loss(probabilities: np.ndarray, same: np.ndarray, prior: float = 0.5) -> float:
    """Prior-weighted mean negative log-likelihood of the pairs' labels (nats)."""
    p = np.clip(probabilities, 1e-300, 1.0)
    q = np.clip(1.0 - probabilities, 1e-300, 1.0)
    return float(-np.sum(prior_weights(same, prior) * np.where(same, np.log(p), np.log(q))))


def _logistic(features: np.ndarray, same: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, float]:
    model = LogisticRegression(C=np.inf, solver="lbfgs", max_iter=1000, tol=1e-10)
    model.fit(features, same, sample_weight=w / w.mean())  # mean-one weights: lbfgs' tolerances are absolute
    return model.coef_[0], float(model.intercept_[0])


def fit_platt(distances: np.ndarray, same: np.ndarray, weights: np.ndarray) -> PlattMap:
    """Weighted logistic regression of "same" on distance."""
    (coef,), intercept = _logistic(distances[:, None], same, weights)
    return PlattMap(intercept=intercept, slope=max(-float(coef), 1e-6))


def fit_beta(distances: np.ndarray, same: np.ndarray, weights: np.ndarray) -> BetaMap:
    """Beta calibration of s = 1 - d/2: logistic on (ln s, -ln(1 - s)), refit without a negative term.

    As Kull et al. (2017) do: a negative coefficient would make the map non-monotone, so that feature is
    dropped (its coefficient fixed at 0) and the other refit.
    """
    s = np.clip(1.0 - distances / 2.0, _EDGE, 1.0 - _EDGE)
    features = np.column_stack([np.log(s), -np.log1p(-s)])
    (a, b), c = _logistic(features, same, weights)
    if a < 0 or b < 0:
        keep = 1 if a < 0 else 0
        (only,), c = _logistic(features[:, [keep]], same, weights)
        a, b = (0.0, max(float(only), 1e-6)) if keep == 1 else (max(float(only), 1e-6), 0.0)
    return BetaMap(a=float(a), b=float(b), c=c)


def fit_isotonic(distances: np.ndarray, same: np.ndarray, weights: np.ndarray) -> IsotonicMap:
    """Non-increasing isotonic regression (scikit-learn), thinned to `MAX_KNOTS`, blended to strictness."""
    iso = IsotonicRegression(increasing=False, y_min=0.0, y_max=1.0, out_of_bounds="clip")
    iso.fit(distances, same.astype(np.float64), sample_weight=weights)
    xs, ys = np.asarray(iso.X_thresholds_), np.asarray(iso.y_thresholds_)
    if len(xs) > MAX_KNOTS:  # keep both ends
        keep = np.unique(np.linspace(0, len(xs) - 1, MAX_KNOTS).round().astype(int))
        xs, ys = xs[keep], ys[keep]
    ys = np.minimum.accumulate(np.clip(ys, 0.0, 1.0))  # exact monotonicity after float rounding
    return IsotonicMap(tuple(float(x) for x in xs), tuple(float(y) for y in ys))


_FITTERS: dict[CalibrationMethod, Callable[[np.ndarray, np.ndarray, np.ndarray], ScoreMap]] = {
    CalibrationMethod.PLATT: fit_platt,
    CalibrationMethod.BETA: fit_beta,
    CalibrationMethod.ISOTONIC: fit_isotonic,
}


def fit_method(method: CalibrationMethod, pairs: IdentityPairs, prior: float = 0.5) -> ScoreCalibration:
    """One method fit on ``pairs``, stated for ``prior``.

    The fit always weights the classes equally: its log-odds are then the log likelihood ratio the maps
    hold, and ``prior`` enters only through Bayes' rule (`ScoreCalibration.at_prior`).
    """
    score_map = _FITTERS[method](pairs.distances, pairs.same, prior_weights(pairs.same, 0.5))
    return ScoreCalibration(score_map, prior)


def identity_folds(pairs: IdentityPairs, folds: int = 2, seed: int = 0) -> list[np.ndarray]:
    """Masks of the pairs whose identities all fall in fold k (identities assigned at random)."""
    ids = np.unique(np.concatenate([pairs.first, pairs.second]))
    fold_of = dict(zip(ids.tolist(), np.random.default_rng(seed).permutation(len(ids)) % folds, strict=True))
    lookup = np.vectorize(fold_of.__getitem__, otypes=[np.int64])
    f1, f2 = lookup(pairs.first), lookup(pairs.second)
    return [(f1 == k) & (f2 == k) for k in range(folds)]


def fit_score_calibration(
    pairs: IdentityPairs,
    prior: float = 0.5,
    methods: Sequence[CalibrationMethod] = tuple(CalibrationMethod),
    folds: int = 2,
    seed: int = 0,
) -> CalibrationFit:
    """Fit every candidate on all-but-one identity fold, score on the held-out fold, refit the best.

    Args:
        pairs: Pairs of held-out identities (genuine and sampled impostors).
        prior: The prior of "same identity" the probabilities are stated for (and the log-loss weighted to).
        methods: Candidates.
        folds: Identity-disjoint folds for the held-out log-loss.
        seed: Seeds the fold assignment.
    """
    genuine, impostor = pairs.counts
    identities = len(np.unique(np.concatenate([pairs.first, pairs.second])))
    if identities < 2 * folds:
        # Too few identities for identity-disjoint folds that each hold impostor pairs: no held-out
        # choice is possible, so take the parametric fit that needs the fewest pairs (logistic, Platt).
        return CalibrationFit(
            fit_method(CalibrationMethod.PLATT, pairs, prior), {}, genuine, impostor, identities
        )
    masks = identity_folds(pairs, folds, seed)
    losses: dict[CalibrationMethod, float] = {}
    for method in methods:
        per_fold = []
        for k, held in enumerate(masks):
            train = np.logical_or.reduce([m for j, m in enumerate(masks) if j != k])
            cal = fit_method(method, pairs.select(train), prior)
            test = pairs.select(held)
            per_fold.append(log_loss(cal.probability(test.distances), test.same, prior))
        losses[method] = float(np.mean(per_fold))
    best = min(losses, key=losses.__getitem__)
    return CalibrationFit(fit_method(best, pairs, prior), losses, genuine, impostor, identities)
