"""Per-comparison probability of "same identity" given a distance, at a stated prior (serving side).

Every method is a strictly decreasing log likelihood ratio ``llr(d) = log g(d) / f(d)`` (genuine over
impostor distance densities) on the distance range [0, 2] of L2-normalised embeddings. The probability
at a prior ``π`` is Bayes' rule on odds: ``logit p(d) = llr(d) + logit π``. Methods are fit with the two
classes weighted equally (the balanced prior, ``π = 0.5``), where the fitted log-odds *are* the llr, so
restating a calibration for another prior never needs a refit (``at_prior``).

numpy only: serving loads this from the manifest without scikit-learn or torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

import numpy as np

#: Mixing weight of the fixed strictly decreasing curve in an isotonic map (see `IsotonicMap`).
ISOTONIC_BLEND = 1e-3
#: Slope of that curve, ``sigmoid(k · (1 - d))``: gentle, so it moves no probability by more than the blend.
_BLEND_SLOPE = 4.0
MAX_DISTANCE = 2.0


class CalibrationMethod(StrEnum):
    """How distances map to log likelihood ratios."""

    ISOTONIC = "isotonic"
    PLATT = "platt"
    BETA = "beta"


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function without overflow for large |x| (exact 0 / 1 only at ±inf)."""
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def logit(p: np.ndarray | float) -> np.ndarray:
    """log(p / (1 - p)); ±inf at 1 / 0."""
    p = np.asarray(p, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.log(p) - np.log1p(-p)


def _distances(d: np.ndarray | float) -> np.ndarray:
    """Distances as float64, clipped into [0, 2] (float noise can step just past either end)."""
    return np.clip(np.asarray(d, dtype=np.float64), 0.0, MAX_DISTANCE)


@dataclass(frozen=True, slots=True)
class PlattMap:
    """Logistic on distance: ``llr(d) = intercept - slope · d`` with ``slope > 0``."""

    intercept: float
    slope: float

    def __post_init__(self) -> None:
        if not (self.slope > 0 and math.isfinite(self.slope) and math.isfinite(self.intercept)):
            raise ValueError(f"platt needs a finite positive slope, got {self.slope}")

    def llr(self, d: np.ndarray) -> np.ndarray:
        return self.intercept - self.slope * d


@dataclass(frozen=True, slots=True)
class BetaMap:
    """Beta calibration (Kull et al. 2017) of the similarity ``s = 1 - d/2`` in [0, 1].

    ``llr = c + a · ln s - b · ln(1 - s)`` with ``a, b >= 0`` and ``a + b > 0``: strictly increasing in
    ``s``, so strictly decreasing in ``d``; it reaches +inf at d = 0 when ``b > 0`` and -inf at d = 2 when
    ``a > 0``.
    """

    a: float
    b: float
    c: float

    def __post_init__(self) -> None:
        if not (self.a >= 0 and self.b >= 0 and self.a + self.b > 0 and math.isfinite(self.c)):
            raise ValueError(f"beta needs a, b >= 0 with a + b > 0, got a={self.a}, b={self.b}")
        if not (math.isfinite(self.a) and math.isfinite(self.b)):
            raise ValueError("beta parameters must be finite")

    def llr(self, d: np.ndarray) -> np.ndarray:
        s = 1.0 - d / MAX_DISTANCE
        with np.errstate(divide="ignore"):
            # a zero coefficient contributes nothing, not 0 · (-inf) = nan, at the range's ends
            up = self.a * np.log(s) if self.a > 0 else 0.0
            down = self.b * np.log1p(-s) if self.b > 0 else 0.0
        return np.asarray(self.c + up - down, dtype=np.float64)


@dataclass(frozen=True, slots=True)
class IsotonicMap:
    """Isotonic (non-increasing) balanced probabilities at knots, made strictly decreasing by a blend.

    Between knots the isotonic probabilities are interpolated linearly and outside them held constant, as
    scikit-learn does; that leaves flat stretches, where two distances get the same probability and a
    decision by probability could not tell them apart. Mixing in ``blend`` of the fixed strictly
    decreasing ``sigmoid(4 · (1 - d))`` makes the map strictly decreasing on all of [0, 2] and keeps it
    inside (0, 1) (finite llr), while moving no probability by more than ``blend``.
    """

    distances: tuple[float, ...]
    probabilities: tuple[float, ...]
    blend: float = ISOTONIC_BLEND

    def __post_init__(self) -> None:
        d, p = np.asarray(self.distances), np.asarray(self.probabilities)
        if len(d) == 0 or len(d) != len(p):
            raise ValueError("isotonic map needs as many distances as probabilities, at least one")
        if np.any(np.diff(d) < 0) or np.any(np.diff(p) > 0) or np.any((p < 0) | (p > 1)):
            raise ValueError("isotonic knots need increasing distances and non-increasing probabilities")
        if not 0 < self.blend < 1:
            raise ValueError(f"isotonic blend must lie in (0, 1), got {self.blend}")

    def balanced_probability(self, d: np.ndarray) -> np.ndarray:
        steps = np.interp(d, self.distances, self.probabilities)
        return (1.0 - self.blend) * steps + self.blend * sigmoid(_BLEND_SLOPE * (1.0 - d))

    def llr(self, d: np.ndarray) -> np.ndarray:
        return logit(self.balanced_probability(d))


ScoreMap = PlattMap | BetaMap | IsotonicMap
_METHOD_OF: dict[type, CalibrationMethod] = {
    PlattMap: CalibrationMethod.PLATT,
    BetaMap: CalibrationMethod.BETA,
    IsotonicMap: CalibrationMethod.ISOTONIC,
}


def _map_from_dict(method: CalibrationMethod, raw: dict[str, Any]) -> ScoreMap:
    if method is CalibrationMethod.PLATT:
        return PlattMap(float(raw["intercept"]), float(raw["slope"]))
    if method is CalibrationMethod.BETA:
        return BetaMap(float(raw["a"]), float(raw["b"]), float(raw["c"]))
    return IsotonicMap(
        tuple(float(x) for x in raw["distances"]),
        tuple(float(x) for x in raw["probabilities"]),
        float(raw.get("blend", ISOTONIC_BLEND)),
    )


def _map_to_dict(score_map: ScoreMap) -> dict[str, Any]:
    if isinstance(score_map, PlattMap):
        return {"intercept": score_map.intercept, "slope": score_map.slope}
    if isinstance(score_map, BetaMap):
        return {"a": score_map.a, "b": score_map.b, "c": score_map.c}
    return {
        "distances": list(score_map.distances),
        "probabilities": list(score_map.probabilities),
        "blend": score_map.blend,
    }


@dataclass(frozen=True, slots=True)
class ScoreCalibration:
    """Distance → calibrated P(same identity | d) for the stated ``prior`` of "same identity".

    Attributes:
        map: The fitted strictly decreasing log likelihood ratio (fit at the balanced prior).
        prior: The prior probability of "same identity" the probabilities are stated for.
    """

    map: ScoreMap
    prior: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.prior < 1:
            raise ValueError(f"prior must lie in (0, 1), got {self.prior}")

    @property
    def method(self) -> CalibrationMethod:
        return _METHOD_OF[type(self.map)]

    def llr(self, distances: np.ndarray | float) -> np.ndarray:
        """Log likelihood ratio log g(d)/f(d); strictly decreasing on [0, 2], may be ±inf at the ends."""
        return self.map.llr(_distances(distances))

    def log_odds(self, distances: np.ndarray | float) -> np.ndarray:
        """Posterior log-odds of "same identity" at the stated prior (decide on these: no saturation)."""
        return self.llr(distances) + float(logit(self.prior))

    def probability(self, distances: np.ndarray | float) -> np.ndarray:
        """Calibrated probability that each distance is between two images of one identity."""
        return sigmoid(self.log_odds(distances))

    def at_prior(self, prior: float) -> ScoreCalibration:
        """The same calibration stated for another prior (Bayes' rule on odds; no refit)."""
        return replace(self, prior=prior)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the manifest."""
        return {"method": str(self.method), "prior": self.prior, "parameters": _map_to_dict(self.map)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ScoreCalibration:
        """Parse `to_dict`'s form.

        Raises:
            ValueError: Unknown method, missing or invalid parameters (KeyError/TypeError re-raised so).
        """
        try:
            method = CalibrationMethod(raw["method"])
            return cls(_map_from_dict(method, dict(raw["parameters"])), float(raw.get("prior", 0.5)))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed score calibration: {exc!r}") from exc
