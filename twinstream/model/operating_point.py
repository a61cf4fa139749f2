"""Operating points: a policy's target (FAR for verify, FPIR and gallery size for identify) → (t, p*).

Verify: ``t`` is the distance where the impostor CDF equals the target FAR; ``p* = p1(t)``; MATCH ⇔
``p1(d) >= p*``, which is ``d <= t`` because ``p1`` is strictly decreasing.

Identify (open set, N enrolled vectors): ``t_N`` is the distance where a probe of someone not enrolled
falls within ``t_N`` of any of the N with probability FPIR (`ImpostorModel.threshold_at_fpir`). The
probability that the top candidate (distance ``d``) is the person is ``p_N(d)`` with

    logit p_N(d) = llr(d) - ln N + logit π,

π the stated prior read as "the probe is enrolled". Derivation: hypotheses H_k "the probe is enrolled
entry k" (prior π/N each) and H_0 "not enrolled" (1 - π); with independent comparisons every impostor
density cancels, and P(H_k | d_1..d_N) / P(H_0 | ...) = (π / (1 - π)) · LR(d_k) / N with LR = e^llr. For
the top candidate this is the formula above; it leaves out the alternative "enrolled, but as another
candidate" (odds Σ_{j≠k} LR(d_j) / N, negligible unless a second candidate is also close), which keeps
``p_N`` a function of the top distance alone and so strictly decreasing in it; MATCH ⇔ ``p_N(d) >= p*``
with ``p* = p_N(t_N)`` is again ``d <= t_N``.

Decide on log-odds (`Cutoff.matches`): it is the same rule as ``p >= p*`` but does not saturate
where float64 rounds p to 1.0 (log-odds above ~37).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from twinstream.model.calibration import ScoreCalibration, sigmoid
from twinstream.model.impostor import ImpostorModel


@dataclass(frozen=True, slots=True)
class Cutoff:
    """A decision rule: the distance threshold and the probability (and log-odds) it corresponds to."""

    threshold: float
    p_star: float
    log_odds_star: float

    def matches(self, log_odds: np.ndarray | float) -> np.ndarray:
        """MATCH where the calibrated log-odds reach the operating point's (⇔ p >= p*)."""
        return np.asarray(log_odds, dtype=np.float64) >= self.log_odds_star


def _point(threshold: float, log_odds: float) -> Cutoff:
    return Cutoff(threshold, float(sigmoid(np.asarray(log_odds))), log_odds)


def identify_log_odds(cal: ScoreCalibration, distances: np.ndarray | float, n: int) -> np.ndarray:
    """Log-odds that the candidate at each distance is the person, in a gallery of ``n`` vectors."""
    if n < 1:
        raise ValueError(f"gallery size must be >= 1, got {n}")
    return cal.log_odds(distances) - math.log(n)


def identify_probability(cal: ScoreCalibration, distances: np.ndarray | float, n: int) -> np.ndarray:
    """p_N: probability that the candidate at each distance is the person (see the module docstring)."""
    return sigmoid(identify_log_odds(cal, distances, n))


def verify_point(cal: ScoreCalibration, imp: ImpostorModel, far: float) -> Cutoff:
    """1:1 at a target false accept rate: ``t`` with impostor CDF ``far`` and ``p* = p1(t)``."""
    t = imp.threshold_at_far(far)
    return _point(t, float(cal.log_odds(t)))


def identify_point(cal: ScoreCalibration, imp: ImpostorModel, fpir: float, n: int) -> Cutoff:
    """1:N open set at a target FPIR for ``n`` enrolled vectors: ``t_N`` and ``p* = p_N(t_N)``."""
    t = imp.threshold_at_fpir(fpir, n)
    return _point(t, float(identify_log_odds(cal, t, n)))
