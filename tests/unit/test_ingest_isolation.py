"""A poison record is split off its batch, answered processing-failed and dead-lettered; neighbours go on.

Kafka is replaced by small fakes here (the same behaviour against the real broker is in
tests/integration/test_ingest_poison.py); what is checked is the worker's own logic.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

from kafka.record.default_records import DefaultRecordBatchBuilder

from services.ingest.worker import IngestWorker
from twinstream.codec import H_DEAD_LETTER_TRIMMED, DeadLetter, DeadLetterInfo, KafkaRecord, read_dead_letter
from twinstream.config import Settings
from twinstream.contracts import Decision, ImageRequest, MatchResult, RejectReason, SourceRef


class Pipeline:
    """Answers ENROLLED, but raises for any batch holding a poison request id."""

    def __init__(self, poison: set[str]) -> None:
        self.poison, self.batches = poison, []  # type: ignore[var-annotated]

    def process(self, requests: Sequence[ImageRequest]) -> list[MatchResult]:
        self.batches.append(len(requests))
        bad = [r.request_id for r in requests if r.request_id in self.poison]
        if bad:
            raise ValueError(f"cannot process {bad[0]}")
        return [MatchResult(r.request_id, r.op, Decision.ENROLLED, r.tenant, r.subject) for r in requests]


class Consumer:
    def __init__(self, count: int) -> None:
        self.committed: list[dict[Any, Any]] = []
        self._batch = {
            "tp": [
                SimpleNamespace(topic="img", partition=0, offset=i, value=b"png", key=None, timestamp=1,
                                headers=[("op", b"enroll"), ("subject", b"s"), ("request-id", b"r%d" % i)])
                for i in range(count)
            ]
        }  # fmt: skip

    def poll(self, **_: Any) -> dict[str, list[Any]]:
        batch, self._batch = self._batch, {}
        return batch

    def commit(self, offsets: dict[Any, Any], **_: Any) -> None:
        self.committed.append(offsets)

    def assignment(self) -> set[Any]:
        return set()


class Publisher:
    def __init__(self) -> None:
        self.results: list[MatchResult] = []
        self.dead: list[DeadLetter] = []

    def publish(self, results: Sequence[MatchResult], dead: Sequence[DeadLetter]) -> None:
        self.results += results
        self.dead += dead


class Probe:
    def __init__(self, healthy: bool) -> None:
        self.healthy = healthy

    def dependencies_healthy(self) -> bool:
        return self.healthy


def fast_settings() -> Settings:
    return Settings(ingest={"retry_initial_s": 0.001, "retry_max_s": 0.002, "max_record_attempts": 3})


def test_a_poison_record_is_isolated_and_dead_lettered_and_its_neighbours_answered() -> None:
    consumer, publisher, pipeline = Consumer(16), Publisher(), Pipeline({"r5", "r11"})
    worker = IngestWorker(consumer, publisher, pipeline, fast_settings(), probe=Probe(healthy=True))  # type: ignore[arg-type]
    assert worker.run_once() == 16
    assert [r.request_id for r in publisher.results] == [f"r{i}" for i in range(16)]
    failed = {r.request_id: r for r in publisher.results if r.decision == Decision.REJECTED}
    assert set(failed) == {"r5", "r11"}
    assert failed["r5"].error_reason == RejectReason.PROCESSING_FAILED
    assert failed["r5"].error_detail == "ValueError: cannot process r5"
    assert (failed["r5"].subject, failed["r5"].source) == ("s", SourceRef("img", 0, 5, 1))
    assert [(d.info.request_id, d.info.reason) for d in publisher.dead] == [
        ("r5", RejectReason.PROCESSING_FAILED),
        ("r11", RejectReason.PROCESSING_FAILED),
    ]
    assert [o.offset for o in consumer.committed[0].values()] == [16]
    # 3 attempts at the batch, then halves: each poison record costs at most 2 calls per halving
    # (its half and the healthy one) and 2 more attempts once alone.
    assert pipeline.batches[:3] == [16, 16, 16] and len(pipeline.batches) <= 3 + 2 * (2 * 4 + 2)


def test_a_failure_while_a_dependency_is_down_is_retried_and_never_dead_lettered() -> None:
    consumer, publisher, pipeline = Consumer(4), Publisher(), Pipeline({"r2"})
    worker = IngestWorker(consumer, publisher, pipeline, fast_settings(), probe=Probe(healthy=False))  # type: ignore[arg-type]

    def stop_after_ten(_: str) -> None:
        if len(pipeline.batches) >= 10:
            worker.request_stop()

    worker._observer = SimpleNamespace(on_retry=stop_after_ten)  # type: ignore[assignment]
    assert worker.run_once() == 0  # abandoned uncommitted when asked to stop
    assert pipeline.batches == [4] * 10  # never split: an outage is not the records' fault
    assert publisher.results == [] and publisher.dead == [] and consumer.committed == []


def batch_bytes(key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> int:
    """The size of a one-record batch as kafka-python builds it (what the broker checks)."""
    builder = DefaultRecordBatchBuilder(2, 0, False, -1, -1, -1, batch_size=1 << 30)
    builder.append(0, timestamp=1_700_000_000_000, key=key, value=value, headers=headers)
    return len(builder.build())


def dead_letter(
    value: bytes, headers: tuple[tuple[str, bytes | None], ...] = (("op", b"identify"),)
) -> DeadLetter:
    record = KafkaRecord("img", 0, 9, value, headers, key=b"k1", timestamp_ms=1)
    info = DeadLetterInfo("r9", RejectReason.UNDECODABLE_IMAGE, "x" * 900, record.source, 2, "ingest-0")
    return DeadLetter(record, info)


def test_a_dead_letter_that_fits_is_copied_whole() -> None:
    copy = dead_letter(b"v" * 1000).fitted(64 * 1024)
    assert copy.value == b"v" * 1000 and copy.key == b"k1"
    assert all(name != H_DEAD_LETTER_TRIMMED for name, _ in copy.headers)


def test_a_dead_letter_just_under_the_limit_is_trimmed_to_fit_and_says_its_original_size() -> None:
    limit = 64 * 1024
    copy = dead_letter(b"v" * (limit - 200)).fitted(limit)
    assert batch_bytes(copy.key, copy.value, copy.headers) <= limit
    assert limit - 4096 < len(copy.value) < limit - 200  # what the dead-letter headers take
    assert dict(copy.headers)[H_DEAD_LETTER_TRIMMED] == str(limit - 200).encode()
    assert dict(copy.headers)["op"] == b"identify"
    assert read_dead_letter(copy.headers).request_id == "r9"


def test_original_headers_too_big_to_fit_are_dropped_but_the_dead_letter_ones_kept() -> None:
    limit = 16 * 1024
    copy = dead_letter(b"v" * 100, (("huge", b"h" * limit),)).fitted(limit)
    assert batch_bytes(copy.key, copy.value, copy.headers) <= limit
    names = [name for name, _ in copy.headers]
    assert "huge" not in names and H_DEAD_LETTER_TRIMMED in names
    assert read_dead_letter(copy.headers).reason == RejectReason.UNDECODABLE_IMAGE


def test_a_stub_copy_keeps_only_the_dead_letter_headers() -> None:
    copy = dead_letter(b"v" * 5000).fitted(0)
    assert copy.value == b""
    assert dict(copy.headers)[H_DEAD_LETTER_TRIMMED] == b"5000"
