"""How well calibrated probabilities are: ECE at the stated prior, its identity bootstrap, a diagram.

ECE uses equal-width probability bins and weights the pairs to the prior the probabilities are stated
for (balanced by default). Its confidence interval resamples
*identities*, not pairs: the pairs of one identity share its images and its quirks, so they are
correlated, and a pair bootstrap would give intervals that are too narrow. Each bootstrap draw gives
identity ``c`` a multiplicity ``m_c`` (multinomial); a genuine pair of ``c`` counts ``m_c`` times and an
impostor pair of ``a`` and ``b`` counts ``m_a · m_b`` times (the two-way "pigeonhole" bootstrap).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from training.calibration import IdentityPairs, prior_weights

ECE_BINS = 15


@dataclass(frozen=True, slots=True)
class EceEstimate:
    """ECE on all pairs and a percentile bootstrap interval over identities."""

    value: float
    low: float
    high: float
    level: float
    resamples: int


def _bin_index(probabilities: np.ndarray, bins: int) -> np.ndarray:
    edges = np.linspace(0.0, 1.0, bins + 1)
    return np.clip(np.digitize(probabilities, edges[1:-1]), 0, bins - 1)


def weighted_ece(
    probabilities: np.ndarray, outcomes: np.ndarray, weights: np.ndarray, bins: int = ECE_BINS
) -> float:
    """ECE with equal-width bins: Σ_bins |Σ w·p - Σ w·y| / Σ w."""
    which = _bin_index(probabilities, bins)
    conf = np.bincount(which, weights * probabilities, bins)
    acc = np.bincount(which, weights * outcomes, bins)
    return float(np.sum(np.abs(conf - acc)) / max(float(weights.sum()), 1e-300))


def expected_calibration_error(
    probabilities: np.ndarray,
    same: np.ndarray,
    bins: int = ECE_BINS,
    prior: float = 0.5,
    weights: np.ndarray | None = None,
) -> float:
    """ECE with equal-width bins, classes weighted to ``prior`` (times optional per-pair ``weights``)."""
    return weighted_ece(probabilities, same, prior_weights(same, prior, weights), bins)


def _identity_index(pairs: IdentityPairs) -> tuple[int, np.ndarray, np.ndarray]:
    ids, inverse = np.unique(np.concatenate([pairs.first, pairs.second]), return_inverse=True)
    return len(ids), inverse[: len(pairs.first)], inverse[len(pairs.first) :]


def ece_with_interval(
    probabilities: np.ndarray,
    pairs: IdentityPairs,
    prior: float = 0.5,
    resamples: int = 200,
    level: float = 0.95,
    seed: int = 0,
    bins: int = ECE_BINS,
) -> EceEstimate:
    """ECE of ``probabilities`` for ``pairs`` and its identity-bootstrap percentile interval.

    Pairs that share their two identities, their kind (genuine or impostor) and their probability bin
    weigh the same in every draw, so each such group is summed once and a draw costs one pass over
    the groups (tens to thousands) rather than over the pairs (hundreds of thousands). A draw skips
    when it leaves no genuine or no impostor weight.
    """
    rng = np.random.default_rng(seed)
    value = expected_calibration_error(probabilities, pairs.same, bins, prior)
    n, first, second = _identity_index(pairs)
    keys = ((first.astype(np.int64) * n + second) * 2 + pairs.same) * bins + _bin_index(probabilities, bins)
    keys, group = np.unique(keys, return_inverse=True)
    gap = np.bincount(group, probabilities - pairs.same, len(keys))  # Σ (p - y): the bins' |conf - acc|
    count = np.bincount(group, minlength=len(keys)).astype(np.float64)
    genuine = (keys // bins) % 2 == 1
    in_bin = np.zeros((len(keys), bins))
    in_bin[np.arange(len(keys)), keys % bins] = 1.0
    a, b = np.divmod(keys // (2 * bins), n)
    draws: list[float] = []
    per_chunk = max(1, _CHUNK_CELLS // len(keys))
    for start in range(0, resamples, per_chunk):
        m = rng.multinomial(n, np.full(n, 1.0 / n), size=min(per_chunk, resamples - start)).astype(float)
        w = np.where(genuine, m[:, a], m[:, a] * m[:, b])  # m_c genuine, m_a · m_b impostor
        mass = w * count
        pos, neg = mass[:, genuine].sum(1), mass[:, ~genuine].sum(1)
        ok = (pos > 0) & (neg > 0)
        to_prior = np.where(genuine, prior / pos[ok, None], (1.0 - prior) / neg[ok, None])
        draws.extend(np.abs((w[ok] * to_prior * gap) @ in_bin).sum(1).tolist())
    low, high = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return EceEstimate(value, float(low), float(high), level, len(draws))


#: Draws × pair groups held at once by `ece_with_interval` (16 MB per float64 array).
_CHUNK_CELLS = 2_000_000


def reliability_png(
    probabilities: np.ndarray, same: np.ndarray, title: str, prior: float = 0.5, bins: int = ECE_BINS
) -> bytes:
    """Reliability diagram (prior-weighted fraction genuine against mean probability per bin) as PNG."""
    w = prior_weights(same, prior)
    which = _bin_index(probabilities, bins)
    mass = np.bincount(which, w, bins)
    used = mass > 0
    conf = np.bincount(which, w * probabilities, bins)[used] / mass[used]
    acc = np.bincount(which, w * same, bins)[used] / mass[used]
    ece = expected_calibration_error(probabilities, same, bins, prior)
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(4.5, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    top.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect")
    top.plot(conf, acc, marker="o", label=f"ECE {ece:.4f}")
    top.set_ylabel(f"fraction genuine (prior {prior:g})")
    top.set_title(title)
    top.legend(loc="upper left")
    top.grid(alpha=0.3)
    centres = (np.arange(bins) + 0.5) / bins
    bottom.bar(centres, mass / mass.sum(), width=1.0 / bins, color="tab:blue", alpha=0.6)
    bottom.set_yscale("log")
    bottom.set_xlabel("calibrated probability")
    bottom.set_ylabel("weight")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()
