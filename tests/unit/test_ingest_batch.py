"""One poll's batch: decoding, a single pipeline call, results in record order, dead letters."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from services.ingest.batch import PipelineContractError, run_batch
from twinstream.codec import KafkaRecord
from twinstream.config import LimitsSettings
from twinstream.contracts import Decision, ImageRequest, MatchResult, Rejection, RejectReason

LIMITS = LimitsSettings()


class ScriptedPipeline:
    """Test double: answers ENROLLED, or REJECTED with the reason named by the image bytes."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def process(self, requests: Sequence[ImageRequest]) -> list[MatchResult]:
        self.calls.append([r.request_id for r in requests])
        out = []
        for r in requests:
            if r.image.startswith(b"reject:"):
                reason = RejectReason(r.image.decode().split(":", 1)[1])
                out.append(MatchResult.rejected(r.request_id, Rejection(reason, "scripted"), op=r.op))
            else:
                out.append(MatchResult(r.request_id, r.op, Decision.ENROLLED, subject=r.subject))
        return out


def rec(offset: int, value: bytes | None, **headers: str) -> KafkaRecord:
    return KafkaRecord("img", 0, offset, value, tuple((k, v.encode()) for k, v in headers.items()))


def test_valid_records_go_to_the_pipeline_in_one_call_and_results_keep_record_order() -> None:
    pipeline = ScriptedPipeline()
    records = [
        rec(0, b"img", op="enroll", subject="a"),
        rec(1, b"img", op="nonsense"),
        rec(2, b"img", op="enroll", subject="b"),
    ]
    out = run_batch(records, pipeline, LIMITS, worker="w", now_ms=1)
    assert pipeline.calls == [["img-0-0", "img-0-2"]]
    assert [r.request_id for r in out.results] == ["img-0-0", "img-0-1", "img-0-2"]
    assert [r.decision for r in out.results] == [Decision.ENROLLED, Decision.REJECTED, Decision.ENROLLED]
    assert [(d.record.offset, d.info.reason) for d in out.dead_letters] == [(1, RejectReason.UNKNOWN_OP)]
    assert [r.request_id for r in out.refused_here] == ["img-0-1"]  # made here, not by the pipeline


def test_rejections_returned_by_the_pipeline_are_dead_lettered_with_the_original_record() -> None:
    records = [rec(5, b"reject:undecodable-image", op="identify", x_custom="1")]
    out = run_batch(records, ScriptedPipeline(), LIMITS, worker="w-7", now_ms=99)
    (dead,) = out.dead_letters
    assert dead.record is records[0]
    assert (dead.info.reason, dead.info.worker, dead.info.failed_at_ms) == (
        RejectReason.UNDECODABLE_IMAGE,
        "w-7",
        99,
    )
    assert ("error-reason", b"undecodable-image") in dead.kafka_headers()


def test_verify_against_an_unknown_subject_is_an_answer_not_a_dead_letter() -> None:
    out = run_batch(
        [rec(0, b"reject:unknown-subject", op="verify", subject="z")],
        ScriptedPipeline(),
        LIMITS,
        worker="w",
        now_ms=0,
    )
    assert out.results[0].decision == Decision.REJECTED
    assert out.dead_letters == ()


def test_a_batch_of_only_poison_never_calls_the_pipeline() -> None:
    pipeline = ScriptedPipeline()
    out = run_batch(
        [rec(0, None, op="identify"), rec(1, b"x", op="verify")], pipeline, LIMITS, worker="w", now_ms=0
    )
    assert pipeline.calls == []
    assert {d.info.reason for d in out.dead_letters} == {
        RejectReason.EMPTY_IMAGE,
        RejectReason.MISSING_SUBJECT,
    }


def test_a_pipeline_answering_the_wrong_number_of_results_is_an_error() -> None:
    class Short(ScriptedPipeline):
        def process(self, requests: Sequence[ImageRequest]) -> list[MatchResult]:
            return super().process(requests)[:-1]

    with pytest.raises(PipelineContractError):
        run_batch(
            [rec(0, b"i", op="identify"), rec(1, b"i", op="identify")], Short(), LIMITS, worker="w", now_ms=0
        )


def test_pipeline_failures_propagate_so_the_worker_can_retry() -> None:
    class Down:
        def process(self, requests: Sequence[ImageRequest]) -> list[MatchResult]:
            raise ConnectionError("milvus is down")

    with pytest.raises(ConnectionError):
        run_batch([rec(0, b"i", op="identify")], Down(), LIMITS, worker="w", now_ms=0)
