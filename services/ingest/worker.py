"""The ingest worker loop: poll → one batched pipeline call → publish results and dead letters → commit.

At least once: offsets are committed only after the results, the dead letters and the result-store
writes are acknowledged. A failing dependency (Serve, Milvus, Kafka, Redis) is retried with back-off and
never turns a healthy record into a dead letter; a stop request during a retry abandons the batch
uncommitted, so another worker replays it (effects are idempotent downstream).

A batch that fails while its dependencies answer (`services.ingest.failures`) is retried
``ingest.max_record_attempts`` times, then split in halves until the records that fail are alone; each
is answered REJECTED ``processing-failed`` and dead-lettered, its neighbours are answered as usual, and
the partition moves on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from kafka import ConsumerRebalanceListener, KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka.errors import CommitFailedError, KafkaError

from services.ingest.batch import BatchOutcome, failed_outcome, merge_outcomes, run_batch
from services.ingest.failures import DependencyProbe, FailureKind, classify
from services.ingest.observer import NullObserver, StageObserver, WorkerObserver
from services.ingest.retry import (
    Backoff,
    RecordFailedError,
    StopRequestedError,
    retry_classified,
    retry_until_stopped,
)
from services.results.kafka_publisher import ResultPublisher
from twinstream.codec import KafkaRecord
from twinstream.config import Settings
from twinstream.contracts import MatchResult
from twinstream.images.face_finder import FaceFinders
from twinstream.ports import MatchPipeline, ResultSink, stores_results
from twinstream.tenant_topics import TopicTenancy

log = logging.getLogger(__name__)
T = TypeVar("T")
_LAG_EVERY_S = 2.0
_MAX_DETAIL = 300


def to_record(message: Any) -> KafkaRecord:
    """A kafka-python ``ConsumerRecord`` as a client-free `KafkaRecord`."""
    return KafkaRecord(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        value=message.value,
        headers=tuple((name, value) for name, value in (message.headers or ())),
        key=message.key,
        timestamp_ms=int(message.timestamp or 0),
    )


class _Rebalances(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, consumer: KafkaConsumer, observer: WorkerObserver, name: str) -> None:
        self._consumer, self._observer, self._name = consumer, observer, name

    def on_partitions_revoked(self, revoked: Any) -> None:
        log.info("%s: partitions revoked: %s", self._name, sorted(p.partition for p in revoked))

    def on_partitions_assigned(self, assigned: Any) -> None:
        log.info("%s: partitions assigned: %s", self._name, sorted(p.partition for p in assigned))
        self._observer.on_rebalance(len(self._consumer.assignment()))


class IngestWorker:
    """One consumer in the ingest group; `run` until `request_stop` (signal-safe) is called."""

    def __init__(
        self,
        consumer: KafkaConsumer,
        publisher: ResultPublisher,
        pipeline: MatchPipeline,
        settings: Settings,
        *,
        sink: ResultSink | None = None,
        observer: WorkerObserver | None = None,
        probe: DependencyProbe | None = None,
        name: str = "ingest-0",
    ) -> None:
        self._consumer = consumer
        self._publisher = publisher
        self._pipeline = pipeline
        self._settings = settings
        self._sink = sink
        self._observer = observer or NullObserver()
        self._probe = probe
        self.name = name
        self._stop = threading.Event()
        self._faces = FaceFinders(settings.faces)  # face models: dlib's finder, loaded on first use
        self._backoff = Backoff(settings.ingest.retry_initial_s, settings.ingest.retry_max_s)
        self._last_lag = 0.0
        self._tenancy = TopicTenancy.from_settings(settings.kafka)

    def request_stop(self) -> None:
        """Ask the loop to stop after the current batch (safe to call from a signal handler)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        """Subscribe and process batches until stopped, then flush, close and leave the group.

        With tenants bound to topics the group subscribes by pattern to every tenant's images topic
        (new tenants are picked up at the next metadata refresh); otherwise to the shared topic.
        """
        listener = _Rebalances(self._consumer, self._observer, self.name)
        if self._tenancy is not None:
            topic = self._tenancy.images_pattern
            self._consumer.subscribe(pattern=topic, listener=listener)
        else:
            topic = self._settings.kafka.images_topic
            self._consumer.subscribe([topic], listener=listener)
        log.info("%s: consuming %s in group %s", self.name, topic, self._settings.ingest.group_id)
        try:
            while not self._stop.is_set():
                self.run_once()
        finally:
            self.close()

    def run_once(self) -> int:
        """Poll one batch and take it all the way to a commit; returns the number of records handled."""
        started = time.monotonic()
        polled = self._consumer.poll(
            timeout_ms=self._settings.ingest.poll_timeout_ms,
            max_records=self._settings.ingest.max_poll_records,
        )
        records = [to_record(message) for messages in polled.values() for message in messages]
        if records:
            if isinstance(self._observer, StageObserver):
                self._observer.on_stage("poll", time.monotonic() - started)
            started = time.monotonic()
            try:
                self._handle(records)
            except StopRequestedError:
                log.warning("%s: stopping mid-retry; %d records left uncommitted", self.name, len(records))
                return 0
            self._observer.on_batch(len(records), time.monotonic() - started)
        self._maybe_report_lag()
        return len(records)

    def _handle(self, records: Sequence[KafkaRecord]) -> None:
        started = time.monotonic()
        outcome = self._isolating(records, self._settings.ingest.max_record_attempts)
        self._stage_done("pipeline", started)
        self._retry(
            "publish", (KafkaError,), lambda: self._publisher.publish(outcome.results, outcome.dead_letters)
        )
        if self._sink is not None:
            # The Serve pipeline already stored what it answered: write each result once.
            stored = outcome.refused_here if stores_results(self._pipeline) else outcome.results
            if stored:
                self._store(self._sink, stored)
        self._retry("commit", (KafkaError,), lambda: self._commit(_next_offsets(records)))
        acked = time.time()
        for record in records:
            if record.timestamp_ms > 0:
                self._observer.on_acknowledged(acked - record.timestamp_ms / 1000)
        for result in outcome.results:
            self._observer.on_result(result.op, result.decision)
        for dead in outcome.dead_letters:
            self._observer.on_dlq(dead.info.reason)

    def _isolating(self, records: Sequence[KafkaRecord], attempts: int) -> BatchOutcome:
        """The batch's outcome; records that fail with their dependencies up are split off and dead-lettered.

        A failing batch is halved until the failing records are alone: healthy neighbours are answered
        and a lone failing record gets ``processing-failed``. Sub-batches get one attempt (the whole
        batch already failed ``attempts`` times), a lone record ``max_record_attempts`` again.
        """
        try:
            return self._classified("pipeline", attempts, lambda: self._run_batch(records))
        except RecordFailedError as failed:
            if len(records) == 1:
                return self._dead_letter(records[0], failed)
            half = len(records) // 2
            log.warning("%s: isolating failing records in a batch of %d", self.name, len(records))
            parts = (records[:half], records[half:])
            lone = self._settings.ingest.max_record_attempts
            return merge_outcomes([self._isolating(part, lone if len(part) == 1 else 1) for part in parts])

    def _dead_letter(self, record: KafkaRecord, failed: RecordFailedError) -> BatchOutcome:
        cause = failed.cause
        detail = f"{type(cause).__name__}: {cause}"[:_MAX_DETAIL]
        log.error("%s: %s cannot be processed (%s); dead-lettering it", self.name, record.source, detail)
        return failed_outcome(
            record, detail, self._settings.limits, worker=self.name, now_ms=int(time.time() * 1000)
        )

    def _store(self, sink: ResultSink, results: Sequence[MatchResult]) -> None:
        """Write to the result store; an outage is waited out, a write that keeps failing is skipped."""
        started = time.monotonic()
        try:
            attempts = self._settings.ingest.max_record_attempts
            self._classified("sink", attempts, lambda: sink.put_many(results))
        except RecordFailedError as failed:
            # The results are published already: a missing store copy is better than a blocked partition.
            log.error("%s: %d results not stored: %s", self.name, len(results), failed)
        self._stage_done("sink", started)

    def _classified(self, stage: str, attempts: int, action: Callable[[], T]) -> T:
        return retry_classified(
            action,
            classify=lambda exc: classify(exc, self._probe),
            max_record_attempts=attempts,
            backoff=self._backoff,
            stop=self._stop,
            on_retry=lambda kind: self._on_retry(stage, kind),
            what=f"{self.name} {stage}",
        )

    def _on_retry(self, stage: str, kind: FailureKind) -> None:
        # The retries metric counts dependency outages; record failures show as dead letters instead.
        if kind is FailureKind.OUTAGE:
            self._observer.on_retry(stage)

    def _stage_done(self, stage: str, started: float) -> None:
        if isinstance(self._observer, StageObserver):
            self._observer.on_stage(stage, time.monotonic() - started)

    def _run_batch(self, records: Sequence[KafkaRecord]) -> BatchOutcome:
        return run_batch(
            records,
            self._pipeline,
            self._settings.limits,
            worker=self.name,
            now_ms=int(time.time() * 1000),
            tenancy=self._tenancy,
            faces=self._faces,
        )

    def _retry(self, stage: str, errors: tuple[type[BaseException], ...], action: Callable[[], T]) -> T:
        started = time.monotonic()
        out = retry_until_stopped(
            action,
            retry_on=errors,
            backoff=self._backoff,
            stop=self._stop,
            on_retry=lambda: self._observer.on_retry(stage),
            what=f"{self.name} {stage}",
        )
        self._stage_done(stage, started)
        return out

    def _commit(self, offsets: Mapping[TopicPartition, OffsetAndMetadata]) -> None:
        try:
            self._consumer.commit(offsets=dict(offsets), timeout_ms=30_000)
        except CommitFailedError as exc:
            # The group rebalanced while this batch ran: the new owner replays it (at least once).
            log.warning("%s: commit refused after a rebalance (%s); records will be replayed", self.name, exc)
            self._observer.on_commit_failed()

    def _maybe_report_lag(self) -> None:
        now = time.monotonic()
        if now - self._last_lag < _LAG_EVERY_S:
            return
        self._last_lag = now
        for tp, lag in self.lag().items():
            self._observer.on_lag(tp.topic, tp.partition, lag)

    def lag(self) -> dict[TopicPartition, int]:
        """High watermark minus position for each assigned partition whose high watermark is known."""
        lags: dict[TopicPartition, int] = {}
        for tp in self._consumer.assignment():
            high = self._consumer.highwater(tp)
            if high is None:
                continue
            try:
                lags[tp] = max(0, high - self._consumer.position(tp, timeout_ms=1000))
            except KafkaError:
                continue
        return lags

    def close(self) -> None:
        """Flush the producer, close the consumer (leaving the group); no offsets are auto-committed."""
        try:
            self._publisher.close()
        finally:
            self._consumer.close(autocommit=False)
        log.info("%s: closed", self.name)


def _next_offsets(records: Sequence[KafkaRecord]) -> dict[TopicPartition, OffsetAndMetadata]:
    """The offset to commit per partition: one past the last record handled."""
    offsets: dict[TopicPartition, OffsetAndMetadata] = {}
    for record in records:
        tp = TopicPartition(record.topic, record.partition)
        if tp not in offsets or offsets[tp].offset <= record.offset:
            offsets[tp] = OffsetAndMetadata(record.offset + 1, "", -1)
    return offsets
