"""Effects on one subject follow record order: the pipeline's rounds against a sequential replay."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from services.matching.matcher import Matcher
from services.matching.pipeline import MatchingPipeline
from services.matching.rounds import schedule
from tests.support.fakes import InMemoryGallery, quadrant_embedding, quadrant_png, tiny_manifest
from twinstream.config import LimitsSettings
from twinstream.contracts import Decision, ImageRequest, MatchResult, Op

SUBJECTS = ("alice", "bob")
IMAGES = (quadrant_png(0), quadrant_png(3))


def _request(i: int, op: Op, subject: str, image: bytes) -> ImageRequest:
    return ImageRequest(f"r{i}", op, b"" if op is Op.DELETE else image, "t", subject)


def test_delete_enrol_verify_of_one_subject_in_one_poll_leaves_her_enrolled_and_verified() -> None:
    requests = [
        _request(0, Op.ENROLL, "alice", IMAGES[0]),
        _request(1, Op.DELETE, "alice", b""),
        _request(2, Op.ENROLL, "alice", IMAGES[1]),
        _request(3, Op.VERIFY, "alice", IMAGES[1]),
    ]
    gallery = InMemoryGallery()
    decisions = [r.decision for r in _run(requests, gallery)]
    assert decisions == [Decision.ENROLLED, Decision.DELETED, Decision.ENROLLED, Decision.MATCH]
    assert gallery.subjects("t") == {"alice": 1}


def test_requests_on_different_subjects_share_one_round() -> None:
    requests = [_request(i, Op.ENROLL, f"s{i}", IMAGES[0]) for i in range(5)]
    requests += [_request(9, Op.IDENTIFY, "", IMAGES[1])]
    assert schedule(requests) == [0, 0, 0, 0, 0, 1]  # identify sees the tenant's enrolments
    assert schedule([*requests[:5], _request(7, Op.VERIFY, "s9", IMAGES[0])]) == [0] * 6


ops = st.sampled_from([Op.ENROLL, Op.DELETE, Op.VERIFY, Op.IDENTIFY])
steps = st.lists(st.tuples(ops, st.sampled_from(SUBJECTS), st.sampled_from(IMAGES)), min_size=1, max_size=12)


@settings(max_examples=50, deadline=None)
@given(steps)
def test_a_batch_answers_exactly_as_a_sequential_replay_of_its_records(
    batch: list[tuple[Op, str, bytes]],
) -> None:
    requests = [_request(i, op, subject, image) for i, (op, subject, image) in enumerate(batch)]
    together = InMemoryGallery()
    batched = _run(requests, together)
    alone = InMemoryGallery()
    replayed = [_run([request], alone)[0] for request in requests]
    assert [_outcome(r) for r in batched] == [_outcome(r) for r in replayed]
    assert together.rows == alone.rows


def _outcome(result: MatchResult) -> tuple[object, ...]:
    return (result.decision, result.subject, result.error_reason, [c.subject for c in result.candidates])


def _run(requests: Sequence[ImageRequest], gallery: InMemoryGallery) -> list[MatchResult]:
    async def embed(batch: np.ndarray) -> np.ndarray:
        return quadrant_embedding(batch)

    pipeline = MatchingPipeline(embed, gallery, Matcher(tiny_manifest()), LimitsSettings())
    return asyncio.run(pipeline.process(requests))
