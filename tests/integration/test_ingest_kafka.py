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
from services.ingest.status import group_status
from tests.support.streams import (
    collect_dead_letters,
    collect_results,
    digit_png,
    producer_for,
    start_worker_process,
    stream_settings,
    worker_thread,
)
from twinstream.config import LimitsSettings, Settings
from twinstream.contracts import Decision, ImageRequest, InputError, MatchResult
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
        deadline = time.monotonic() + 30
        while pipeline.calls < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert pipeline.calls >= 3, "the worker should keep retrying the batch"
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
            time.sleep(0.5)
            during = group_status(admin, reader, settings.ingest.group_id, settings.kafka.images_topic)
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
