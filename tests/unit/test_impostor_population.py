"""Fitting the impostor model for another population: family-share weights, clustered tails, shrinkage."""

from __future__ import annotations

import numpy as np
import pytest

from training.impostor_fit import ProbeRow, TailFit, family_share, family_weights, model_from_sorted
from training.impostor_variants import VARIANTS, Families, Variant
from training.tail_exponent import HillEstimate, hill, shrunk_exponents

LEVELS = (0.01, 0.1, 0.5, 1.0)


def _power_law(rng: np.random.Generator, alpha: float, n: int, scale: float = 1.5) -> np.ndarray:
    return np.sort(scale * rng.random(n) ** (1 / alpha))


def test_family_share_is_the_chance_two_identities_share_a_family() -> None:
    assert family_share(np.array([0, 0, 1, 1])) == pytest.approx(2 * 2 / (4 * 3))
    assert family_share(np.arange(10)) == 0.0
    assert family_share(np.zeros(5)) == 1.0


def test_equal_weights_fit_the_same_model_as_no_weights() -> None:
    rng = np.random.default_rng(0)
    rows = [_power_law(rng, 8.0, 4000) for _ in range(5)]
    plain = model_from_sorted(rows, LEVELS)
    weighted = model_from_sorted([ProbeRow(r, np.full(len(r), 3.0)) for r in rows], LEVELS)
    np.testing.assert_allclose(weighted.quantiles, plain.quantiles)
    np.testing.assert_allclose(weighted.tail_exponents, plain.tail_exponents)


def test_family_share_weights_move_the_fit_to_the_stated_population() -> None:
    """Relatives lie close to the probe, strangers far; the fit weighted to share r matches a population
    that really has share r, where the unweighted fit describes the relatives-rich one it came from."""
    rng = np.random.default_rng(1)

    def row(relatives: int, strangers: int) -> tuple[np.ndarray, np.ndarray]:
        d = np.concatenate([0.8 * rng.random(relatives) ** (1 / 6), 0.5 + 1.5 * rng.random(strangers)])
        same = np.arange(len(d)) < relatives
        order = np.argsort(d)
        return d[order], same[order]

    rich_d, rich_same = row(5000, 5000)
    weighted = model_from_sorted([ProbeRow(rich_d, family_weights(rich_same, 0.1))], LEVELS)
    plain = model_from_sorted([rich_d], LEVELS)
    truth = model_from_sorted([row(2000, 18000)[0]], LEVELS)
    for far in (0.05, 0.01, 1e-3):
        t = truth.threshold_at_far(far)
        assert weighted.far_at(t) == pytest.approx(far, rel=0.2)
        assert plain.far_at(t) > 2 * far


def test_a_tail_made_of_one_identity_says_nothing_about_its_exponent() -> None:
    d = np.linspace(0.1, 1.0, 50)
    one = hill(d, 20, clusters=np.zeros(50, int))
    many = hill(d, 20, clusters=np.arange(50))
    assert one.log_variance == np.inf
    assert many.alpha == one.alpha and np.isfinite(many.log_variance)


def test_clustered_tail_points_count_as_fewer_observations() -> None:
    rng = np.random.default_rng(2)
    d = _power_law(rng, 10.0, 2000)
    k = 200
    alone = hill(d, k)
    # ten identities of 20 neighbouring distances each: their images are alike, so ten observations
    in_clusters = hill(d, k, clusters=np.arange(len(d)) // 20)
    assert alone.log_variance == pytest.approx(1 / k, rel=0.3)  # the iid Hill variance α²/k on the log scale
    assert in_clusters.log_variance > 3 / k


def test_shrinkage_pools_noise_and_keeps_real_spread() -> None:
    rng = np.random.default_rng(3)
    # every probe's true exponent is 8; noisy estimates: all shrink to about 8
    noisy = [HillEstimate(20.0, 20.0 / (8.0 * np.exp(rng.normal(0, 0.3))), 0.09) for _ in range(200)]
    assert np.ptp(np.log(shrunk_exponents(noisy))) < 0.2 * np.ptp(np.log([e.alpha for e in noisy]))
    # true exponents 4 and 16, precise estimates: kept
    precise = [HillEstimate(1000.0, 1000.0 / a, 1e-4) for a in (4.0, 16.0) * 50]
    np.testing.assert_allclose(shrunk_exponents(precise), [4.0, 16.0] * 50, rtol=0.01)
    # an uninformative probe takes the mean of the informative ones
    mixed = [*precise, HillEstimate(1.0, 1.0, np.inf)]
    assert shrunk_exponents(mixed)[-1] == pytest.approx(8.0, rel=0.05)


def test_shrunk_tails_keep_real_differences_between_probes_with_less_spread() -> None:
    rng = np.random.default_rng(4)
    true = np.array([6.0, 12.0] * 20)
    rows = [ProbeRow(_power_law(rng, a, 3000), None, np.arange(3000) // 3) for a in true]
    per = np.asarray(model_from_sorted(rows, LEVELS, TailFit.PER_PROBE).tail_exponents)
    shared = np.asarray(model_from_sorted(rows, LEVELS, TailFit.SHARED).tail_exponents)
    shrunk = np.asarray(model_from_sorted(rows, LEVELS, TailFit.SHRUNK).tail_exponents)
    assert np.ptp(shared) == 0
    assert np.std(np.log(shrunk)) < np.std(np.log(per))
    assert shrunk[true == 6].max() < shrunk[true == 12].min()


def test_variant_names_are_stable_and_unique() -> None:
    assert Variant().name == "mixture"
    assert Variant(TailFit.SHARED, families=Families.SHARE).name == "mixture-shared-tail/share"
    assert Variant(pooled=True).name == "pooled"
    assert len(VARIANTS) == 1 + len(TailFit) * len(Families)
