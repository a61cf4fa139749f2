"""Power-law tail exponents of impostor distances: Hill estimates, their noise, and their shrinkage.

Below a threshold ``u`` a power-law CDF ``F(t) = F(u) · (t/u)^α`` makes ``ln(u / d)`` exponential with
rate ``α``, so the (weighted) maximum-likelihood estimate from the tail points is the Hill estimate
``α̂ = Σ w_i / Σ w_i ln(u / d_i)``.

Its noise is not ``α²/k`` for ``k`` images: the images of one impostor identity sit together (the
distances from a probe to one identity's 20 drawings are correlated), so a probe's tail of ``k``
images from a couple of identities carries about a couple of observations. The variance used here is
the cluster-robust (sandwich) variance of that ratio estimator, identities as clusters:
``Var(α̂) ≈ C/(C-1) · Σ_c (W_c - α̂ S_c)² / S²`` (``W_c``, ``S_c`` the cluster's sums of ``w`` and
``w ln(u/d)``, ``C`` clusters). With every image its own cluster and equal weights it is ``α̂²/k``;
with one identity in the tail it is unbounded (nothing says how that probe's tail goes on).

`shrunk_exponents` pools many probes' exponents as a random-effects meta-analysis (DerSimonian and
Laird 1986): the spread of the ``ln α̂_p`` beyond their noise is the between-probe variance ``τ²``, and
each ``ln α̂_p`` moves toward the precision-weighted mean by ``v_p / (τ² + v_p)``. Long, many-identity
tails keep their own exponent; a tail of one or two identities takes the pooled one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_TINY = 1e-6  # exact duplicates (d = 0) would make ln(u / d) infinite


@dataclass(frozen=True, slots=True)
class HillEstimate:
    """One probe's tail: its sums (for pooling) and the noise of its own exponent.

    Attributes:
        mass: Σ w over the tail points (the count when unweighted).
        log_sum: Σ w ln(u / d) over them.
        log_variance: Var(ln α̂) (cluster-robust); ``inf`` when fewer than two identities are in the tail.
    """

    mass: float
    log_sum: float
    log_variance: float

    @property
    def alpha(self) -> float:
        return self.mass / self.log_sum


def hill(
    sorted_d: np.ndarray, k: int, weights: np.ndarray | None = None, clusters: np.ndarray | None = None
) -> HillEstimate:
    """Hill estimate from the ``k`` smallest of ``sorted_d`` (``u`` the next one).

    Args:
        sorted_d: Distances, ascending.
        k: Tail points (at least one).
        weights: Per distance (``None``: equal).
        clusters: Per distance, the identity it belongs to (``None``: every distance its own).
    """
    w: np.ndarray = np.ones(k) if weights is None else np.asarray(weights[:k], dtype=np.float64)
    x: np.ndarray = w * np.log(sorted_d[k] / np.maximum(sorted_d[:k], _TINY))
    mass, log_sum = float(w.sum()), float(x.sum())
    alpha = mass / log_sum
    if clusters is None:
        w_c: np.ndarray = w
        s_c: np.ndarray = x
    else:
        _, which = np.unique(clusters[:k], return_inverse=True)
        w_c, s_c = np.bincount(which, w), np.bincount(which, x)
    c = len(w_c)
    if c < 2:
        return HillEstimate(mass, log_sum, np.inf)
    var_alpha = c / (c - 1) * float(np.sum((w_c - alpha * s_c) ** 2)) / log_sum**2
    return HillEstimate(mass, log_sum, var_alpha / alpha**2)


def pooled_exponent(estimates: Sequence[HillEstimate]) -> float:
    """One exponent for all probes: the Hill estimate of their tails together."""
    return sum(e.mass for e in estimates) / sum(e.log_sum for e in estimates)


def shrunk_exponents(estimates: Sequence[HillEstimate]) -> np.ndarray:
    """Each probe's exponent shrunk toward the precision-weighted mean (DerSimonian–Laird ``τ²``)."""
    log_a = np.log([e.alpha for e in estimates])
    v = np.asarray([e.log_variance for e in estimates])
    w = np.where(np.isfinite(v), 1.0 / np.maximum(v, 1e-12), 0.0)
    if np.count_nonzero(w) < 2:
        return np.full(len(log_a), pooled_exponent(estimates))
    mean_fixed = float(np.sum(w * log_a) / w.sum())
    q = float(np.sum(w * (log_a - mean_fixed) ** 2))
    tau2 = max(0.0, (q - (np.count_nonzero(w) - 1)) / (w.sum() - np.sum(w * w) / w.sum()))
    finite_v = np.where(np.isfinite(v), np.maximum(v, 1e-12), np.inf)
    mean = float(np.sum(log_a / (tau2 + finite_v)) / np.sum(1.0 / (tau2 + finite_v)))
    keep = tau2 / (tau2 + finite_v)  # 0 where the noise is unbounded
    return np.exp(mean + keep * (log_a - mean))
