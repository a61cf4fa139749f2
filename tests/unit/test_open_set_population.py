"""Choosing an impostor-model variant inside validation, and the look-alike diagnostic of a population."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.impostor_variants import VARIANTS, CrossFit, SplitBy, select_on_validation
from training.look_alikes import look_alikes
from training.open_set_eval import Embedded
from twinstream.model.calibration import PlattMap, ScoreCalibration


def _population(families: int, per_family: int, images: int, seed: int = 0) -> Embedded:
    """Identities scattered on the unit sphere in 16-d; images jittered around their identity."""
    rng = np.random.default_rng(seed)
    ids = families * per_family
    centres = rng.normal(size=(ids, 16))
    labels = np.repeat(np.arange(ids), images)
    emb = centres[labels] + 0.35 * rng.normal(size=(len(labels), 16))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return Embedded(emb, labels, labels // per_family)


def test_cross_fit_by_families_scores_every_variant_and_chooses_the_closest_to_the_target() -> None:
    val = _population(families=8, per_family=50, images=10)
    names = ["pooled", "mixture", "mixture-shared-tail/share", "mixture-shrunk-tail"]
    cal = ScoreCalibration(PlattMap(5.0, 10.0))
    result = select_on_validation(val, names, cal, 0.01, 60, 0, CrossFit(SplitBy.FAMILIES, 2, 3, 2))
    assert set(result["mean_abs_log_ratio"]) == set(names)
    assert result["chosen"] == min(result["mean_abs_log_ratio"], key=result["mean_abs_log_ratio"].get)
    assert all(s["fit_identities"] == 150 for s in result["splits"])  # 3 families of 50 identities fitted
    sizes = 3  # N = 10, 100, 125 (half the 250 measured identities)
    assert all(len(v) == 2 * sizes for v in result["fpir_per_split_and_gallery_size"].values())


def test_a_variant_that_cannot_be_fit_on_a_split_cannot_be_chosen() -> None:
    val = _population(families=6, per_family=3, images=4)  # 3 identities fitted: too few impostors
    result = select_on_validation(
        val, ["mixture", "pooled"], ScoreCalibration(PlattMap(5.0, 10.0)), 0.01, 20, 0, CrossFit(draws=1)
    )
    assert all(math.isinf(s) for s in result["mean_abs_log_ratio"].values())
    assert set(VARIANTS) >= set(result["mean_abs_log_ratio"])


def test_look_alikes_find_the_family_pair_whose_identities_coincide() -> None:
    base = _population(families=4, per_family=10, images=3, seed=1)
    emb = base.emb.copy()
    # family 3's identities are copies of family 2's (a script and its sibling)
    emb[base.groups == 3] = emb[base.groups == 2] + 1e-3
    data = Embedded(emb, base.labels, base.groups)
    found = look_alikes(data, ["a", "b", "c", "d"], 0.5)
    assert found.top_family_pairs[0][:2] == ("c", "d")
    assert found.top_family_pairs[0][2] > 0.9
    assert found.family_pairs == 6
    assert found.near_rate == pytest.approx(
        found.near_per_image * len(data.labels) / (len(data.labels) * (len(data.labels) - 3))
    )
