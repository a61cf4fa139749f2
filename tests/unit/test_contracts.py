"""The contract dataclasses cross the Ray boundary by the batch: pickling must keep every field."""

from __future__ import annotations

import dataclasses
import pickle

import pytest
import ray.cloudpickle

from twinstream.contracts import (
    Candidate,
    Decision,
    ImageRequest,
    MatchResult,
    Op,
    Rejection,
    RejectReason,
    SourceRef,
    Timings,
)

RESULT = MatchResult(
    "r1", Op.IDENTIFY, Decision.MATCH, tenant="t", subject="s", distance=0.2, probability=0.9, threshold=0.5,
    candidates=(Candidate("s", 0.2, 0.9), Candidate("u", 0.7, 0.1)), model_version="v1",
    source=SourceRef("images", 3, 41, 1700), timings=Timings(0.001, 0.002, 0.003, 0.01),
)  # fmt: skip
REQUEST = ImageRequest(
    "q1", Op.ENROLL, b"\x89PNG", "t", "s", 3, "image/png", 17, SourceRef("images", 0, 5, 9)
)
REJECTED = MatchResult.rejected("r2", Rejection(RejectReason.TOO_LARGE, "big"), op=Op.VERIFY, subject="s")


@pytest.mark.parametrize("dumps", [pickle.dumps, ray.cloudpickle.dumps], ids=["pickle", "ray-cloudpickle"])
@pytest.mark.parametrize("value", [RESULT, REQUEST, REJECTED, Timings(), SourceRef("x", 1, 2)])
def test_contract_values_survive_pickling_field_for_field(dumps, value) -> None:  # type: ignore[no-untyped-def]
    back = pickle.loads(dumps(value))
    assert back == value
    assert type(back) is type(value)
    assert dataclasses.astuple(back) == dataclasses.astuple(value)


def test_with_timings_equals_replace() -> None:
    timings = Timings(0.5, 0.25, 0.125, 1.0)
    assert RESULT.with_timings(timings) == dataclasses.replace(RESULT, timings=timings)
    assert REJECTED.with_timings(timings).error_reason == RejectReason.TOO_LARGE


def test_without_image_keeps_everything_else() -> None:
    assert REQUEST.without_image() == dataclasses.replace(REQUEST, image=b"")
