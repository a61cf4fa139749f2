"""Open-set trials count false positives and misses the way FPIR and FNIR are defined."""

from __future__ import annotations

import numpy as np
import pytest

from training.open_set_eval import Embedded, open_set_trials
from twinstream.model.calibration import PlattMap, ScoreCalibration


def _orthogonal_identities(identities: int = 8, per: int = 3) -> Embedded:
    """Every image of identity i is the unit vector e_i: 0 apart within, sqrt(2) apart across."""
    labels = np.repeat(np.arange(identities), per)
    return Embedded(np.eye(identities)[labels], labels, labels)


@pytest.mark.parametrize(("threshold", "fpir", "fnir"), [(0.5, 0.0, 0.0), (1.5, 1.0, 0.0)])
def test_fpir_counts_strangers_within_the_threshold_and_fnir_counts_enrolled_people_missed(
    threshold: float, fpir: float, fnir: float
) -> None:
    trials = open_set_trials(
        _orthogonal_identities(), 3, 4, {"t": threshold}, ScoreCalibration(PlattMap(5, 10))
    )
    summary = trials.tallies["t"].summary()
    assert summary["fpir"] == fpir
    assert summary["fnir"] == fnir
    assert summary["nonmated_probes"] == 4 * 5 * 3  # 5 identities not enrolled, 3 images each, 4 galleries
    assert summary["mated_probes"] == 4 * 3 * 2  # the 2 images of each enrolled identity not used to enrol


def test_a_threshold_below_every_genuine_distance_misses_every_enrolled_person() -> None:
    data = _orthogonal_identities()
    jittered = Embedded(
        data.emb + 0.01 * np.random.default_rng(0).normal(size=data.emb.shape), data.labels, data.groups
    )
    trials = open_set_trials(jittered, 3, 2, {"t": 1e-6}, ScoreCalibration(PlattMap(5, 10)))
    assert trials.tallies["t"].summary()["fnir"] == 1.0
    assert trials.top_is_person == pytest.approx(0.5)  # all mated tops right, weighted 1:1 with strangers
