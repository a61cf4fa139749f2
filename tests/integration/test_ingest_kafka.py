"""Kafka mechanics of the ingest worker against a real broker and Redis, with a test-double pipeline.

The pipeline here is a test double (it decodes with `twinstream.images.decode` and answers
ENROLLED), used only to exercise commits, retries, shutdown and status; the stream tests
(test_stream_*.py) use the real Serve app.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from kafka import KafkaAdminClient

from services.ingest.clients import build_admin
from services.ingest.results_reader import build_reader
from services.ingest.status import GroupStatus, group_status
from tests.support.streams import (
    by_request,
    collect_dead_letters,
    collect_results,
    dead_letter_records,
    digit_png,
    producer_for,
    start_worker_process,
    stream_settings,
    worker_thread,
)
from tests.support.waiting import wait_until
from twinstream.codec import H_DEAD_LETTER_TRIMMED, read_dead_letter
from twinstream.config import LimitsSettings, Settings
from twinstream.contracts import Decision, ImageRequest, InputError, MatchResult, RejectReason
from twinstream.images.decode import decode_image

pytestmark = pytest.mark.integration


class DecodingEchoPipeline:
    """Test double: decodes each image like the real pipeline and answers ENROLLED (or REJECTED)."""

    def __init__(self, limits: LimitsSettings, delay_s: float = 0.0) -> None:
        self.limits, self.delay_s = limits, delay_s
        self.down = threading.Event()
        self.calls = 0

    def process(self, requests: Sequence[ImageRequest]) -> list[MatchResult]:
        self.calls += 1
        if self.down.is_set():
            raise ConnectionError("pipeline is down (test double)")
        time.sleep(self.delay_s)
        out = []
        for r in requests:
            try:
                decode_image(r.image, self.limits, r.content_type)
                out.append(
                    MatchResult(r.request_id, r.op, Decision.ENROLLED, r.tenant, r.subject, source=r.source)
                )
            except InputError as exc:
                out.append(MatchResult.rejected(r.request_id, exc.as_rejection(), op=r.op, source=r.source))
        return out


class PoisonPipeline(DecodingEchoPipeline):
    """Test double: raises a plain error (not a dependency failure) for any batch holding a poison id."""

    def __init__(self, limits: LimitsSettings, poison: set[str]) -> None:
        super().__init__(limits)
        self.poison = poison

    def process(self, requests: Sequence[ImageRequest]) -> list[MatchResult]:
        bad = sorted(r.request_id for r in requests if r.request_id in self.poison)
        if bad:
            self.calls += 1
            raise ValueError(f"cannot process {bad[0]}")
        return super().process(requests)


def slow_echo_pipeline(settings: Settings) -> DecodingEchoPipeline:
    """Factory for worker subprocesses (``--pipeline-factory``): a slow double, so batches are in flight."""
    return DecodingEchoPipeline(settings.limits, delay_s=0.3)


def publish(settings: Settings, count: int, start: int = 0) -> None:
    producer = producer_for(settings)
    for i in range(start, start + count):
        headers = [("op", b"enroll"), ("subject", f"s{i % 5}".encode()), ("request-id", f"r{i}".encode())]
        producer.send(settings.kafka.images_topic, digit_png(i % 50), headers=headers)
    producer.flush()
    producer.close()


def committed_total(settings: Settings) -> int:
    admin: KafkaAdminClient = build_admin(settings.kafka)
    reader = build_reader(settings.kafka)
    try:
        status = group_status(admin, reader, settings.ingest.group_id, settings.kafka.images_topic)
    finally:
        admin.close()
        reader.close()
    return sum(p.committed or 0 for p in status.partitions)


def test_dependency_outage_is_retried_without_commit_or_dead_letter(
    stack_settings: Settings, kafka_bootstrap: str, unique_name: str
) -> None:
    settings = stream_settings(stack_settings, unique_name)
    pipeline = DecodingEchoPipeline(settings.limits)
    pipeline.down.set()
    publish(settings, 20)
    with worker_thread(settings, pipeline):
        wait_until(lambda: pipeline.calls >= 3, 30, "the worker's third attempt at the batch")
        assert committed_total(settings) == 0
        assert collect_results(settings, 0, timeout_s=0) == []
        pipeline.down.clear()
        results = collect_results(settings, 20)
    assert sorted(r.request_id for r in results) == sorted(f"r{i}" for i in range(20))
    assert all(r.decision == Decision.ENROLLED for r in results)
    assert collect_dead_letters(settings) == []
    assert committed_total(settings) == 20


def test_ingest_status_shows_members_assignments_committed_offsets_and_lag(
    stack_settings: Settings, kafka_bootstrap: str, unique_name: str
) -> None:
    settings = stream_settings(stack_settings, unique_name)
    publish(settings, 12)
    admin, reader = build_admin(settings.kafka), build_reader(settings.kafka)
    try:
        before = group_status(admin, reader, settings.ingest.group_id, settings.kafka.images_topic)
        assert before.members == () and before.total_lag == 12
        assert all(p.committed is None for p in before.partitions)
        with worker_thread(settings, DecodingEchoPipeline(settings.limits)) as worker:
            assert len(collect_results(settings, 12)) == 12

            # Results are published before the offsets are committed: wait for the commit to land.
            def settled() -> GroupStatus | None:
                status = group_status(admin, reader, settings.ingest.group_id, settings.kafka.images_topic)
                return status if status.members and status.total_lag == 0 else None

            during = wait_until(settled, 30, "the group to show the worker and all 12 offsets committed")
            assert len(during.members) == 1
            assert during.members[0].partitions == (0, 1, 2, 3)
            assert during.members[0].client_id == worker.name  # type: ignore[attr-defined]
            assert during.total_lag == 0
            assert sum(p.committed or 0 for p in during.partitions) == 12
        after = group_status(admin, reader, settings.ingest.group_id, settings.kafka.images_topic)
        assert after.members == ()
    finally:
        admin.close()
        reader.close()


def test_sigterm_finishes_the_batch_commits_and_leaves_the_group(
    stack_settings: Settings, kafka_bootstrap: str, redis_url: str, unique_name: str, tmp_path: Path
) -> None:
    settings = stream_settings(stack_settings, unique_name, max_poll_records=8)
    publish(settings, 200)
    worker = start_worker_process(settings, 0, tmp_path, f"{__name__}:slow_echo_pipeline")
    try:
        assert collect_results(settings, 16, timeout_s=60), worker.log.read_text()[-2000:]
        started = time.monotonic()
        assert worker.stop() == 0, worker.log.read_text()[-3000:]
        assert time.monotonic() - started < 20
    finally:
        if worker.proc.poll() is None:
            worker.kill()
    results = collect_results(settings, 0, timeout_s=0)
    assert 0 < len(results) < 200
    # Everything published was committed and nothing committed was left unanswered.
    assert committed_total(settings) == len({r.request_id for r in results})
    assert "closed" in worker.log.read_text()


#: The per-test topics' max.message.bytes in the size tests (small, so the records stay small).
SMALL_LIMIT = 64 * 1024


def test_a_record_whose_dead_letter_copy_is_over_the_topic_limit_is_dead_lettered_trimmed_and_passed(
    stack_settings: Settings, kafka_bootstrap: str, unique_name: str
) -> None:
    """An undecodable record just under the limit: its DLQ copy (three headers more) would be refused by
    the broker on every retry; it is cut to fit instead, and the partition moves on."""
    base = stack_settings.model_copy(deep=True)
    base.kafka = base.kafka.model_copy(update={"max_message_bytes": SMALL_LIMIT})
    settings = stream_settings(base, unique_name, partitions=1)
    big = b"\x00" * (SMALL_LIMIT - 300)
    producer = producer_for(settings)
    headers = [("op", b"identify"), ("request-id", b"big")]
    producer.send(settings.kafka.images_topic, big, headers=headers).get(timeout=30)  # the broker took it
    producer.close()
    publish(settings, 5)  # healthy records behind it on the same partition
    with worker_thread(settings, DecodingEchoPipeline(settings.limits)):
        wait_until(
            lambda: committed_total(settings) == 6, 60,
            "the offsets to be committed past the record whose DLQ copy is too large",
            describe=lambda: f"{committed_total(settings)} committed",
        )  # fmt: skip
    results = by_request(collect_results(settings, 6))
    assert results["big"][0].error_reason == RejectReason.UNDECODABLE_IMAGE
    assert all(results[f"r{i}"][0].decision == Decision.ENROLLED for i in range(5))
    (dead,) = dead_letter_records(settings)
    assert read_dead_letter(dead.headers).request_id == "big"
    assert dict(dead.headers)[H_DEAD_LETTER_TRIMMED] == str(len(big)).encode()
    assert 0 < len(dead.value) < len(big) and big.startswith(dead.value)


def test_a_record_the_pipeline_cannot_process_is_dead_lettered_as_processing_failed_and_neighbours_answered(
    stack_settings: Settings, kafka_bootstrap: str, unique_name: str
) -> None:
    settings = stream_settings(stack_settings, unique_name, partitions=1, max_record_attempts=2)
    publish(settings, 9)
    pipeline = PoisonPipeline(settings.limits, poison={"r4"})
    with worker_thread(settings, pipeline):
        wait_until(
            lambda: committed_total(settings) == 9, 60, "the offsets to be committed past the poison record",
            describe=lambda: f"{committed_total(settings)} committed after {pipeline.calls} pipeline calls",
        )  # fmt: skip
        publish(settings, 3, start=9)
        wait_until(lambda: committed_total(settings) == 12, 60, "the records published after it")
    results = by_request(collect_results(settings, 12))
    assert sorted(results) == sorted(f"r{i}" for i in range(12))
    (poison,) = results["r4"]
    assert (poison.decision, poison.error_reason) == (Decision.REJECTED, RejectReason.PROCESSING_FAILED)
    assert poison.error_detail == "ValueError: cannot process r4" and poison.subject == "s4"
    assert all(answers[0].decision == Decision.ENROLLED for rid, answers in results.items() if rid != "r4")
    dead = collect_dead_letters(settings)
    assert [(info.request_id, info.reason) for _, info in dead] == [("r4", RejectReason.PROCESSING_FAILED)]
    assert dead[0][0] == digit_png(4)  # the original record, for a replay once the pipeline is fixed
