"""Impostor distances: thresholds at a target FAR, or at a target FPIR for a gallery of N (serving side).

The model is a mixture over held-out probes. Probe ``p`` has its own impostor CDF ``F_p`` (the chance a
random other identity's image lies within ``t`` of it): some probes are "generic" and close to many
identities, most are not, so one pooled CDF put through ``1 - (1 - F(t))^N`` is badly off for large N
(the pooled tail is dominated by the generic probes, whose false positives saturate at one per probe).
Given the probe, the N gallery entries are independent draws of other identities, so

    FPIR(t, N) = mean_p [1 - (1 - F_p(t))^N]      and      FAR(t) = FPIR(t, 1) = mean_p F_p(t).

Each ``F_p`` is stored as its distances at shared CDF ``levels`` (interpolated log-log between them) and,
below the lowest level, a fitted power-law tail ``F_p(t) = levels[0] · (t / t_p0)^α_p``. A power law is
the generic lower tail of a distance bounded below by 0 (``F ∝ t^k`` near 0, with ``k`` the local
dimension of the embedding cloud around the probe); it is what reaches the per-comparison rates of
large galleries (~1e-7 at N = 100,000, FPIR 1 %), far below anything a validation set can count.

numpy only: serving loads this from the manifest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_DISTANCE = 2.0
_BISECTION_STEPS = 64  # halves [0, 2] to below one float64 ulp at 1.0


@dataclass(frozen=True, slots=True)
class ImpostorModel:
    """Per-probe impostor CDFs of held-out probes; a pooled model is the one-probe case.

    Attributes:
        levels: Increasing CDF levels shared by all probes, the last one 1.0 (the largest distance).
        quantiles: Per probe, its impostor distances at ``levels`` (strictly increasing per probe).
        tail_exponents: Per probe, the power-law exponent ``α_p > 0`` below ``quantiles[p][0]``.
        comparisons: How many impostor distances each probe's CDF was measured from (provenance).
    """

    levels: tuple[float, ...]
    quantiles: tuple[tuple[float, ...], ...]
    tail_exponents: tuple[float, ...]
    comparisons: int = 0

    def __post_init__(self) -> None:
        lv, q, a = np.asarray(self.levels), np.asarray(self.quantiles), np.asarray(self.tail_exponents)
        if lv.ndim != 1 or len(lv) < 2 or lv[0] <= 0 or lv[-1] != 1.0 or np.any(np.diff(lv) <= 0):
            raise ValueError("levels must increase from above 0 to exactly 1.0")
        if q.ndim != 2 or q.shape != (len(a), len(lv)) or len(a) == 0:
            raise ValueError("quantiles need one row of len(levels) distances per probe")
        if np.any(q <= 0) or np.any(np.diff(q, axis=1) <= 0) or not np.all(np.isfinite(q)):
            raise ValueError("each probe's quantiles must be positive and strictly increasing")
        if np.any(~(a > 0)) or not np.all(np.isfinite(a)):
            raise ValueError("tail exponents must be finite and positive")

    @property
    def probes(self) -> int:
        return len(self.tail_exponents)

    def _arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # Not cached on the frozen slots object; the matcher should cache thresholds (see operating_point)
        return np.asarray(self.levels), np.asarray(self.quantiles), np.asarray(self.tail_exponents)

    def probe_cdfs(self, threshold: float) -> np.ndarray:
        """Every probe's impostor CDF at ``threshold``: shape (probes,)."""
        levels, q, alpha = self._arrays()
        t = min(max(float(threshold), 0.0), MAX_DISTANCE)
        if t <= 0.0:
            return np.zeros(len(alpha))
        log_t, log_q, log_lv = math.log(t), np.log(q), np.log(levels)
        # log-log linear between the stored levels: the power law again, locally
        k = np.clip(np.sum(log_q <= log_t, axis=1), 1, len(levels) - 1)  # segment index per probe
        rows = np.arange(len(alpha))
        x0, x1 = log_q[rows, k - 1], log_q[rows, k]
        inside = log_lv[k - 1] + (log_lv[k] - log_lv[k - 1]) * (log_t - x0) / (x1 - x0)
        tail = log_lv[0] + alpha * (log_t - log_q[:, 0])
        log_f = np.where(log_t < log_q[:, 0], tail, np.minimum(inside, 0.0))
        return np.where(log_t >= log_q[:, -1], 1.0, np.exp(log_f))

    def fpir_at(self, threshold: float, n: int) -> float:
        """Chance a probe of someone not enrolled has any of ``n`` comparisons at or below ``threshold``."""
        if n < 1:
            raise ValueError(f"gallery size must be >= 1, got {n}")
        f = self.probe_cdfs(threshold)
        with np.errstate(divide="ignore"):
            miss_all = np.exp(n * np.log1p(-f))  # (1 - F)^n without losing tiny F to rounding
        return float(np.mean(1.0 - miss_all))

    def far_at(self, threshold: float) -> float:
        """Per-comparison false accept rate at ``threshold`` (mean of the probes' CDFs)."""
        return self.fpir_at(threshold, 1)

    def threshold_at_fpir(self, fpir: float, n: int) -> float:
        """The largest distance threshold whose FPIR for a gallery of ``n`` is at most ``fpir``.

        Bisection on a fixed grid of [0, 2]: ``fpir_at`` is non-decreasing in the threshold and in ``n``,
        so the result is non-increasing in ``n`` and non-decreasing in ``fpir``, exactly.
        """
        if not 0 < fpir < 1:
            raise ValueError(f"target FPIR must lie in (0, 1), got {fpir}")
        lo, hi = 0.0, MAX_DISTANCE
        if self.fpir_at(hi, n) <= fpir:
            return hi
        for _ in range(_BISECTION_STEPS):
            mid = 0.5 * (lo + hi)
            if mid in (lo, hi):
                break
            if self.fpir_at(mid, n) <= fpir:
                lo = mid
            else:
                hi = mid
        return lo

    def threshold_at_far(self, far: float) -> float:
        """The largest distance threshold whose per-comparison false accept rate is at most ``far``."""
        return self.threshold_at_fpir(far, 1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the manifest."""
        return {
            "levels": list(self.levels),
            "quantiles": [list(row) for row in self.quantiles],
            "tail_exponents": list(self.tail_exponents),
            "comparisons": self.comparisons,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ImpostorModel:
        """Parse `to_dict`'s form.

        Raises:
            ValueError: Missing or invalid fields.
        """
        try:
            return cls(
                levels=tuple(float(x) for x in raw["levels"]),
                quantiles=tuple(tuple(float(x) for x in row) for row in raw["quantiles"]),
                tail_exponents=tuple(float(x) for x in raw["tail_exponents"]),
                comparisons=int(raw.get("comparisons", 0)),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed impostor model: {exc!r}") from exc
