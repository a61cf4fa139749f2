"""Decisions under a tenant's operating point: one rule, MATCH ⇔ probability ≥ p*, the point on the result."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.matching.matcher import Matcher, size_bucket
from services.matching.ports import Hit
from tests.support.fakes import make_manifest
from twinstream.contracts import (
    POLICY_MAX,
    POLICY_MIN,
    Decision,
    ImageRequest,
    Op,
    PolicyKind,
    RejectReason,
    TenantPolicy,
)

MATCHER = Matcher(make_manifest(version="v1"))
POLICY = TenantPolicy(verify_far=1e-2, identify_fpir=1e-2)


def _req(op: Op, subject: str = "s", top_k: int = 5) -> ImageRequest:
    return ImageRequest(request_id="r", op=op, tenant="t", subject=subject, top_k=top_k)


def _unit(angle: float) -> np.ndarray:
    return np.array([math.cos(angle), math.sin(angle)], dtype=np.float32)


def test_verify_decides_at_the_tenant_far_and_says_so() -> None:
    point = MATCHER.verify_policy(POLICY, images=2)  # the best of two images must stay under the FAR
    close = MATCHER.verified(_req(Op.VERIFY), _unit(0.1), np.stack([_unit(0.0), _unit(2.0)]), POLICY)
    assert close.decision == Decision.MATCH
    assert close.distance == pytest.approx(2 * math.sin(0.05), rel=1e-5)  # the best of the subject's images
    assert close.policy is not None and close.policy.kind == PolicyKind.FAR and close.policy.target == 1e-2
    assert close.policy.threshold == pytest.approx(point.threshold)
    assert close.probability is not None and close.probability >= close.policy.min_probability
    far = MATCHER.verified(_req(Op.VERIFY), _unit(0.0), np.stack([_unit(1.2)]), POLICY)
    assert far.decision == Decision.NO_MATCH and far.probability is not None
    assert far.probability < far.policy.min_probability  # type: ignore[union-attr]


def test_a_stricter_far_moves_the_threshold_down() -> None:
    loose, strict = MATCHER.verify_policy(TenantPolicy(verify_far=0.1)), MATCHER.verify_policy(POLICY)
    assert strict.threshold < loose.threshold and strict.min_probability > loose.min_probability


def test_verify_against_unenrolled_subject_is_rejected_unknown_subject() -> None:
    result = MATCHER.verified(_req(Op.VERIFY), _unit(0.0), None, POLICY)
    assert result.decision == Decision.REJECTED and result.error_reason == RejectReason.UNKNOWN_SUBJECT


def test_identify_names_the_nearest_subject_at_the_tenant_fpir_for_its_gallery_size() -> None:
    hits = [Hit("b", 0.7), Hit("a", 0.2), Hit("c", 0.9)]
    (result,) = MATCHER.identified_many([_req(Op.IDENTIFY, "", top_k=2)], [hits], {"t": POLICY}, {"t": 3})
    assert result.decision == Decision.MATCH and result.subject == "a"
    assert [c.subject for c in result.candidates] == ["a", "b"]
    assert (
        result.policy is not None
        and result.policy.kind == PolicyKind.FPIR
        and result.policy.gallery_size == 3
    )


def test_the_identify_threshold_tightens_as_the_gallery_grows() -> None:
    thresholds = [MATCHER.identify_policy(POLICY, n).threshold for n in (10, 100, 1_000, 100_000)]
    assert thresholds == sorted(thresholds, reverse=True) and thresholds[0] > thresholds[-1]


def test_identify_is_unknown_when_nobody_is_close_enough_and_on_an_empty_gallery() -> None:
    (far,) = MATCHER.identified_many([_req(Op.IDENTIFY, "")], [[Hit("a", 0.9)]], {"t": POLICY}, {"t": 50})
    assert far.decision == Decision.UNKNOWN and far.subject == "" and far.candidates[0].subject == "a"
    (empty,) = MATCHER.identified_many([_req(Op.IDENTIFY, "")], [[]], {"t": POLICY}, {"t": 0})
    assert empty.decision == Decision.UNKNOWN and empty.candidates == ()


def test_enroll_and_delete_decisions() -> None:
    assert MATCHER.enrolled(_req(Op.ENROLL), True).decision == Decision.ENROLLED
    assert MATCHER.enrolled(_req(Op.ENROLL), False).decision == Decision.DUPLICATE
    assert MATCHER.deleted(_req(Op.DELETE)).decision == Decision.DELETED


def test_gallery_sizes_round_up_to_a_small_grid() -> None:
    assert [size_bucket(n) for n in (0, 1, 25)] == [1, 1, 25]
    assert all(n <= size_bucket(n) <= 1.05 * n for n in (26, 99, 1_000, 123_456))


rates = st.floats(min_value=POLICY_MIN, max_value=POLICY_MAX)


@settings(max_examples=100, deadline=None)
@given(
    distance=st.floats(min_value=0.0, max_value=2.0),
    far=rates,
    fpir=rates,
    gallery=st.integers(min_value=1, max_value=200_000),
    images=st.integers(min_value=1, max_value=20),
)
def test_no_decision_ever_disagrees_with_its_probability(
    distance: float, far: float, fpir: float, gallery: int, images: int
) -> None:
    policy = TenantPolicy(verify_far=far, identify_fpir=fpir)
    # A verify whose best distance is ``distance``: the subject's images at that distance and farther.
    query = _unit(0.0)
    angle = 2 * math.asin(min(1.0, distance / 2))
    enrolled = np.stack([_unit(angle)] + [_unit(min(math.pi, angle + 0.5))] * (images - 1))
    verified = MATCHER.verified(_req(Op.VERIFY), query, enrolled, policy)
    (identified,) = MATCHER.identified_many(
        [_req(Op.IDENTIFY, "")], [[Hit("x", distance)]], {"t": policy}, {"t": gallery}
    )
    for result, no in ((verified, Decision.NO_MATCH), (identified, Decision.UNKNOWN)):
        assert result.policy is not None and result.probability is not None
        matched = result.probability >= result.policy.min_probability
        if result.decision == Decision.MATCH:
            assert matched or math.isclose(result.probability, result.policy.min_probability, rel_tol=1e-12)
        else:
            assert result.decision == no and result.probability <= result.policy.min_probability


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=2.0), min_size=2, max_size=50), st.integers(1, 10_000))
def test_probability_is_monotone_in_distance_over_the_whole_range(
    distances: list[float], gallery: int
) -> None:
    ordered = np.sort(np.asarray(distances))
    p1 = MATCHER.manifest.calibration.probability(ordered)
    assert np.all(np.diff(p1) <= 0)
    hits = [[Hit("x", float(d))] for d in ordered]
    results = MATCHER.identified_many(
        [_req(Op.IDENTIFY, "")] * len(hits), hits, {"t": POLICY}, {"t": gallery}
    )
    probabilities = [float(r.probability or 0.0) for r in results]
    assert all(a >= b for a, b in itertools.pairwise(probabilities))
