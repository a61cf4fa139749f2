"""Properties of the score calibration, the impostor model and the operating points built on them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from training.calibration import IdentityPairs, fit_score_calibration, sample_identity_pairs
from training.calibration_quality import ece_with_interval, expected_calibration_error
from training.impostor_fit import TailFit, model_from_sorted
from twinstream.model.calibration import BetaMap, IsotonicMap, PlattMap, ScoreCalibration
from twinstream.model.impostor import ImpostorModel
from twinstream.model.operating_point import identify_log_odds, identify_point, verify_point


def reals(low: float, high: float) -> st.SearchStrategy[float]:
    """Finite floats in [low, high]."""
    return st.floats(low, high, allow_nan=False, allow_infinity=False)


priors = reals(0.01, 0.99)


@st.composite
def isotonic_maps(draw: st.DrawFn) -> IsotonicMap:
    n = draw(st.integers(1, 12))
    xs = sorted(draw(st.lists(reals(0.0, 2.0), min_size=n, max_size=n)))
    ys = sorted(draw(st.lists(reals(0.0, 1.0), min_size=n, max_size=n)), reverse=True)
    return IsotonicMap(tuple(xs), tuple(ys))


@st.composite
def beta_maps(draw: st.DrawFn) -> BetaMap:
    a, b = draw(reals(0.0, 40.0)), draw(reals(0.0, 40.0))
    assume(a + b >= 0.01)
    return BetaMap(a, b, draw(reals(-20.0, 20.0)))


platt_maps = st.builds(PlattMap, reals(-50.0, 50.0), reals(1e-3, 100.0))
calibrations = st.builds(ScoreCalibration, st.one_of(platt_maps, beta_maps(), isotonic_maps()), priors)


@st.composite
def impostor_models(draw: st.DrawFn) -> ImpostorModel:
    probes = draw(st.integers(1, 12))
    levels = (0.01, 0.05, 0.2, 1.0)
    rows = []
    for _ in range(probes):
        steps: np.ndarray = np.asarray(draw(st.lists(reals(0.05, 1.0), min_size=5, max_size=5)))
        rows.append(tuple(float(x) for x in 1.95 * np.cumsum(steps)[1:] / steps.sum()))
    alphas = tuple(draw(st.lists(reals(0.5, 60.0), min_size=probes, max_size=probes)))
    return ImpostorModel(levels, tuple(rows), alphas, comparisons=1000)


def _grid(extra: list[float]) -> np.ndarray:
    """The whole range [0, 2], both ends included, densely, plus random points."""
    return np.unique(np.concatenate([np.linspace(0.0, 2.0, 4001), np.asarray(extra)]))


distance_lists = st.lists(reals(0.0, 2.0), max_size=50)


@settings(deadline=None)  # shared cores: a slow example is load, not a bug
@given(cal=calibrations, extra=distance_lists, n=st.integers(1, 1_000_000))
def test_probabilities_decrease_strictly_over_the_whole_range_for_every_method(
    cal: ScoreCalibration, extra: list[float], n: int
) -> None:
    d = _grid(extra)
    gaps = np.diff(d) > 1e-6
    for log_odds in (cal.log_odds(d), identify_log_odds(cal, d, n)):  # p1 and p_N
        left, right = log_odds[:-1], log_odds[1:]  # not np.diff: inf - inf is nan at the ends
        assert np.all(right <= left)
        assert np.all((right < left)[gaps])
    assert np.all(np.diff(cal.probability(d)) <= 0)
    p = cal.probability(d)
    assert np.all((p >= 0) & (p <= 1))


@settings(deadline=None)
@given(cal=calibrations, prior=priors)
def test_restating_the_prior_shifts_log_odds_by_the_prior_odds(cal: ScoreCalibration, prior: float) -> None:
    d = np.linspace(0.01, 1.99, 50)
    shift = np.log(prior / (1 - prior)) - np.log(cal.prior / (1 - cal.prior))
    np.testing.assert_allclose(cal.at_prior(prior).log_odds(d), cal.log_odds(d) + shift, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(
    cal=calibrations,
    imp=impostor_models(),
    target=reals(1e-4, 0.2),
    n=st.integers(1, 100_000),
    distances=st.lists(reals(0.0, 2.0), min_size=1, max_size=60),
)
def test_decision_by_probability_agrees_with_decision_by_distance(
    cal: ScoreCalibration, imp: ImpostorModel, target: float, n: int, distances: list[float]
) -> None:
    d = np.asarray(distances)
    for op, log_odds in (
        (verify_point(cal, imp, target), cal.log_odds(d)),
        (identify_point(cal, imp, target, n), identify_log_odds(cal, d, n)),
    ):
        clear = np.abs(d - op.threshold) > 1e-9  # ties within a float's width may go either way
        np.testing.assert_array_equal(op.matches(log_odds)[clear], (d <= op.threshold)[clear])
        if 1e-6 < op.p_star < 1 - 1e-6:  # p >= p* itself, where float64 does not round p to 0 or 1
            wide = np.abs(d - op.threshold) > 1e-4
            np.testing.assert_array_equal(
                (1 / (1 + np.exp(-log_odds)) >= op.p_star)[wide], (d <= op.threshold)[wide]
            )


@settings(deadline=None)
@given(cal=calibrations)
def test_score_calibration_round_trips_through_manifest_json(cal: ScoreCalibration) -> None:
    again = ScoreCalibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert again == cal
    assert again.method == cal.method


@settings(deadline=None)
@given(imp=impostor_models())
def test_impostor_model_round_trips_through_manifest_json(imp: ImpostorModel) -> None:
    assert ImpostorModel.from_dict(json.loads(json.dumps(imp.to_dict()))) == imp


@settings(max_examples=40, deadline=None)
@given(
    imp=impostor_models(),
    fpir=reals(1e-4, 0.5),
    more=reals(1.01, 10.0),
    n=st.integers(1, 100_000),
    factor=st.integers(2, 1000),
)
def test_threshold_at_fpir_falls_with_gallery_size_and_rises_with_the_target(
    imp: ImpostorModel, fpir: float, more: float, n: int, factor: int
) -> None:
    t = imp.threshold_at_fpir(fpir, n)
    assert imp.threshold_at_fpir(fpir, n * factor) <= t
    assert imp.threshold_at_fpir(min(fpir * more, 0.99), n) >= t
    assert imp.fpir_at(t, n) <= fpir
    if 0 < t < 2:  # the threshold is where the curve crosses the target, not short of it
        assert imp.fpir_at(t * (1 + 1e-9) + 1e-12, n) > fpir - 1e-9


def test_fitted_tail_extrapolates_a_power_law_to_rates_no_sample_reaches() -> None:
    rng = np.random.default_rng(0)
    alpha = 12.0  # F(t) = (t / 1.5)^12 for t <= 1.5
    rows = [np.sort(1.5 * rng.random(20_000) ** (1 / alpha)) for _ in range(50)]
    imp = model_from_sorted(rows, levels=(0.01, 0.1, 0.5, 1.0), tail=TailFit.SHARED)
    for far in (1e-3, 1e-5, 1e-7):
        assert abs(imp.threshold_at_far(far) / (1.5 * far ** (1 / alpha)) - 1) < 0.03


def test_mixture_over_probes_is_not_the_pooled_independence_formula() -> None:
    # one "generic" probe close to many identities, nine ordinary ones
    levels = (0.01, 0.5, 1.0)
    generic, ordinary = (0.2, 0.5, 1.0), (0.6, 1.0, 1.5)
    imp = ImpostorModel(levels, (generic, *[ordinary] * 9), (10.0,) * 10)
    t = 0.3  # generic probe: F = 0.01 · ... between levels; ordinary: deep in the tail
    f = imp.probe_cdfs(t)
    pooled_f = float(f.mean())
    n = 10_000
    assert abs(imp.fpir_at(t, n) - np.mean(1 - (1 - f) ** n)) < 1e-12
    assert imp.fpir_at(t, n) < 0.2 < 1 - (1 - pooled_f) ** n  # pooled says nearly every probe matches


def _calibrated_source(seed: int, n: int = 40_000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.random(n)
    return p, rng.random(n) < p  # labels drawn at the stated probabilities; balanced on average


def test_ece_of_a_perfectly_calibrated_source_is_small_and_of_a_miscalibrated_one_large() -> None:
    p, y = _calibrated_source(0)
    assert expected_calibration_error(p, y) < 0.01
    overconfident = np.clip(0.5 + 1.8 * (p - 0.5), 0, 1)
    assert expected_calibration_error(overconfident, y) > 0.08  # ~0.11 expected


def _clusters(
    seed: int, identities: int = 120, per: int = 8, noise: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(identities, 16))
    labels = np.repeat(np.arange(identities), per)
    emb = centres[labels] / 4 + noise * rng.normal(size=(len(labels), 16)) / 4
    return emb / np.linalg.norm(emb, axis=1, keepdims=True), labels


def test_calibration_fit_on_some_identities_is_calibrated_on_others_with_an_identity_bootstrap() -> None:
    emb, labels = _clusters(0)
    fit = fit_score_calibration(sample_identity_pairs(emb, labels, 0, max_neg=20_000))
    assert set(fit.log_loss) == {"isotonic", "platt", "beta"}
    assert fit.log_loss[fit.calibration.method] == min(fit.log_loss.values())
    emb2, labels2 = _clusters(1)
    fresh = sample_identity_pairs(emb2, labels2, 1, max_neg=20_000)
    estimate = ece_with_interval(fit.calibration.probability(fresh.distances), fresh, resamples=40)
    assert estimate.value < 0.03
    assert 0 <= estimate.low <= estimate.high < 0.06
    wrong = ece_with_interval(np.where(fresh.same, 0.3, 0.7), fresh, resamples=40)
    assert wrong.low > 0.5


def _bootstrap_by_definition(
    p: np.ndarray, pairs: IdentityPairs, prior: float, resamples: int, seed: int
) -> list[float]:
    """The identity bootstrap draw by draw: identity c gets multiplicity m_c; a genuine pair of c
    counts m_c times, an impostor pair of a and b m_a · m_b times; a draw without both kinds skips."""
    rng = np.random.default_rng(seed)
    ids, inverse = np.unique(np.concatenate([pairs.first, pairs.second]), return_inverse=True)
    first, second = inverse[: len(pairs.first)], inverse[len(pairs.first) :]
    draws = []
    for _ in range(resamples):
        m = rng.multinomial(len(ids), np.full(len(ids), 1.0 / len(ids))).astype(float)
        w = np.where(pairs.same, m[first], m[first] * m[second])
        if w[pairs.same].sum() > 0 and w[~pairs.same].sum() > 0:
            draws.append(expected_calibration_error(p, pairs.same, prior=prior, weights=w))
    return draws


@pytest.mark.parametrize(("identities", "per", "prior"), [(3, 2, 0.5), (10, 10, 0.3), (60, 4, 0.5)])
def test_the_grouped_identity_bootstrap_equals_the_draw_by_draw_definition(
    identities: int, per: int, prior: float
) -> None:
    emb, labels = _clusters(identities, identities=identities, per=per, noise=1.0)
    pairs = sample_identity_pairs(emb, labels, 0, max_neg=5_000)
    p = 1.0 / (1.0 + np.exp(8.0 * (pairs.distances - 0.6)))
    estimate = ece_with_interval(p, pairs, prior, resamples=60, seed=3)
    draws = _bootstrap_by_definition(p, pairs, prior, 60, seed=3)
    assert estimate.resamples == len(draws)
    assert estimate.value == pytest.approx(expected_calibration_error(p, pairs.same, prior=prior))
    assert [estimate.low, estimate.high] == pytest.approx(list(np.quantile(draws, [0.025, 0.975])), abs=1e-12)


@pytest.mark.parametrize(
    "raw",
    [
        {"method": "nope", "parameters": {}},
        {"method": "platt", "parameters": {"intercept": 1.0}},
        {"method": "platt", "parameters": {"intercept": 1.0, "slope": -2.0}},  # increasing in d
        {"method": "beta", "parameters": {"a": 0.0, "b": 0.0, "c": 1.0}},  # flat
        {"method": "isotonic", "parameters": {"distances": [0.1, 0.2], "probabilities": [0.2, 0.9]}},
        {"method": "platt", "parameters": {"intercept": 1.0, "slope": 2.0}, "prior": 1.0},
    ],
)
def test_malformed_or_non_monotone_calibrations_are_refused(raw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ScoreCalibration.from_dict(raw)


@pytest.mark.parametrize(
    "raw",
    [
        {"levels": [0.01, 0.5], "quantiles": [[0.3, 0.9]], "tail_exponents": [8.0]},  # last level not 1
        {"levels": [0.01, 1.0], "quantiles": [[0.9, 0.3]], "tail_exponents": [8.0]},  # decreasing
        {"levels": [0.01, 1.0], "quantiles": [[0.3, 0.9]], "tail_exponents": [0.0]},
        {"levels": [0.01, 1.0], "quantiles": [[0.3, 0.9]]},
    ],
)
def test_malformed_impostor_models_are_refused(raw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ImpostorModel.from_dict(raw)
