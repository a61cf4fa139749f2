"""Decisions at the manifest's threshold: MATCH/NO_MATCH for verify, MATCH/UNKNOWN for open-set identify."""

from __future__ import annotations

import numpy as np
import pytest

from services.matching.matcher import Matcher
from services.matching.ports import Hit
from twinstream.contracts import Decision, ImageRequest, Op, RejectReason
from twinstream.images.preprocess import InputSpec
from twinstream.model.artifact import Calibration, Manifest

MANIFEST = Manifest(
    version="v1",
    architecture="conv4",
    input=InputSpec(height=28, width=28, channels=1, invert=False, mean=0.5, std=0.5),
    embedding_dim=2,
    threshold=0.5,
    target_far=0.01,
    calibration=Calibration((0.0, 0.5, 1.0), (1.0, 0.5, 0.0)),
    metrics={},
    dataset="digits",
    loss="triplet",
    miner="semihard",
    created_at="now",
)
MATCHER = Matcher(MANIFEST)


def _req(op: Op, subject: str = "s", top_k: int = 5) -> ImageRequest:
    return ImageRequest(request_id="r", op=op, tenant="t", subject=subject, top_k=top_k)


def test_verify_uses_best_distance_over_enrolled_images() -> None:
    enrolled = np.array([[0.0, 1.0], [1.0, 0.0]], dtype=np.float32)
    result = MATCHER.verified(_req(Op.VERIFY), np.array([0.95, 0.3], dtype=np.float32), enrolled)
    assert result.decision == Decision.MATCH
    assert result.distance == pytest.approx(np.hypot(0.05, 0.3), rel=1e-5)
    assert result.probability == pytest.approx(1.0 - np.hypot(0.05, 0.3), rel=1e-5)
    assert result.threshold == 0.5
    assert result.model_version == "v1"


def test_verify_beyond_threshold_is_no_match() -> None:
    result = MATCHER.verified(_req(Op.VERIFY), np.array([0.0, 1.0]), np.array([[1.0, 0.0]]))
    assert result.decision == Decision.NO_MATCH
    assert result.probability == 0.0


def test_verify_against_unenrolled_subject_is_rejected_unknown_subject() -> None:
    result = MATCHER.verified(_req(Op.VERIFY), np.array([0.0, 1.0]), None)
    assert result.decision == Decision.REJECTED
    assert result.error_reason == RejectReason.UNKNOWN_SUBJECT


def test_identify_names_nearest_subject_within_threshold() -> None:
    hits = [Hit("b", 0.7), Hit("a", 0.2), Hit("c", 0.9)]
    result = MATCHER.identified(_req(Op.IDENTIFY, subject="", top_k=2), hits)
    assert result.decision == Decision.MATCH
    assert result.subject == "a"
    assert [c.subject for c in result.candidates] == ["a", "b"]


def test_identify_is_unknown_when_nobody_is_close_enough() -> None:
    result = MATCHER.identified(_req(Op.IDENTIFY, subject=""), [Hit("a", 0.51)])
    assert result.decision == Decision.UNKNOWN
    assert result.subject == ""
    assert result.candidates[0].subject == "a"


def test_identify_on_empty_gallery_is_unknown() -> None:
    result = MATCHER.identified(_req(Op.IDENTIFY, subject=""), [])
    assert result.decision == Decision.UNKNOWN
    assert result.candidates == ()


def test_enroll_and_delete_decisions() -> None:
    assert MATCHER.enrolled(_req(Op.ENROLL), True).decision == Decision.ENROLLED
    assert MATCHER.enrolled(_req(Op.ENROLL), False).decision == Decision.DUPLICATE
    assert MATCHER.deleted(_req(Op.DELETE)).decision == Decision.DELETED


def test_identified_many_answers_each_request_as_identified_would() -> None:
    requests = [
        _req(Op.IDENTIFY, subject="", top_k=2),
        _req(Op.IDENTIFY, subject="", top_k=5),
        _req(Op.IDENTIFY, subject="", top_k=1),
    ]
    hits = [[Hit("b", 0.7), Hit("a", 0.2), Hit("c", 0.9)], [], [Hit("z", 0.8), Hit("y", 0.6)]]
    batch = MATCHER.identified_many(requests, hits)
    assert batch == [MATCHER.identified(r, h) for r, h in zip(requests, hits, strict=True)]
    assert [r.decision for r in batch] == [Decision.MATCH, Decision.UNKNOWN, Decision.UNKNOWN]
    assert [c.subject for c in batch[0].candidates] == ["a", "b"]
    assert batch[0].candidates[1].probability == pytest.approx(0.3)  # 1 - 0.7 on the calibration line
    assert [c.subject for c in batch[2].candidates] == ["y"]
