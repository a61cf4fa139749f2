"""The enrolment log on Kafka: the writer the pipeline calls, and the reader that replays it.

The log is a compacted topic (``kafka.enrolments_topic``): key = the image id, value = the image and its
owner (`twinstream.codec.enrolments`), a null value (tombstone) for a deleted image. Compaction keeps the
latest record per key, so the log's size follows the gallery's, and a tombstone (then, after
``delete.retention.ms``, nothing) is all that is left of a deleted image. Reading it from the start and
keeping the latest value per key gives every image enrolled now: what a new model version's gallery is
built from (`services.lifecycle.reindex`).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
from kafka.errors import KafkaError

from services.kafka_clients import new_consumer, new_producer
from services.matching.ports import LoggedEnrolment
from twinstream.codec.enrolments import (
    ENROLMENT_CONTENT_TYPE,
    EnrolmentDecodeError,
    EnrolmentValue,
    decode_enrolment,
    encode_enrolment,
)
from twinstream.config import KafkaSettings

log = logging.getLogger(__name__)
_HEADERS = [("content-type", ENROLMENT_CONTENT_TYPE.encode())]
#: Per-partition fetch size: a few images per fetch; a larger single record is still returned (KIP-74).
_PARTITION_FETCH_BYTES = 4 * 1024 * 1024


T = TypeVar("T")


def retrying(call: Callable[[], T], attempts: int = 20, wait_s: float = 0.5) -> T:
    """``call()``, again on a retriable broker error (a fresh broker has no group coordinator yet)."""
    for attempt in range(attempts):
        try:
            return call()
        except KafkaError as exc:
            if not exc.retriable or attempt == attempts - 1:
                raise
            time.sleep(wait_s)
    raise AssertionError("unreachable")


class EnrolmentLogError(RuntimeError):
    """The broker did not acknowledge every record of an append or tombstone (retry the batch)."""


def build_log_producer(kafka: KafkaSettings, *, client_id: str = "twinstream-enrolments") -> KafkaProducer:
    """A producer for the log: acks from every in-sync replica, idempotent, sized for images."""
    return new_producer(
        kafka,
        client_id=client_id,
        acks="all",
        linger_ms=2,
        batch_size=kafka.producer_batch_bytes,
        max_request_size=kafka.max_message_bytes,
    )


def build_log_consumer(
    kafka: KafkaSettings, *, group_id: str | None = None, client_id: str = "twinstream-enrolments-reader"
) -> KafkaConsumer:
    """A consumer for reading the log by assignment (never a group member; ``group_id`` only to commit)."""
    return new_consumer(
        kafka,
        client_id=client_id,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=_PARTITION_FETCH_BYTES,
        fetch_max_bytes=max(50 * 1024 * 1024, kafka.max_message_bytes + 1024 * 1024),
    )


class KafkaEnrolmentLog:
    """`services.matching.ports.EnrolmentLog` on a Kafka topic.

    Args:
        producer: From `build_log_producer` (built by the process's composition root).
        topic: The log's topic.
        timeout_s: Longest wait for the broker's acknowledgements of one call.
    """

    def __init__(self, producer: KafkaProducer, topic: str, *, timeout_s: float = 30.0) -> None:
        self._producer = producer
        self.topic = topic
        self._timeout_s = timeout_s

    def append(self, entries: Sequence[LoggedEnrolment]) -> None:
        """Record enrolments; returns when every record is acknowledged (raises `EnrolmentLogError`)."""
        self._send((entry.image_id, encode_enrolment(_value(entry))) for entry in entries)

    def tombstone(self, image_ids: Sequence[str]) -> None:
        """Record deletions (null values); returns when acknowledged (raises `EnrolmentLogError`)."""
        self._send((image_id, None) for image_id in dict.fromkeys(image_ids))

    def _send(self, records: Iterable[tuple[str, bytes | None]]) -> None:
        futures = [
            self._producer.send(
                self.topic, key=key.encode(), value=value, headers=_HEADERS if value is not None else []
            )
            for key, value in records
        ]
        if not futures:
            return
        self._producer.flush(timeout=self._timeout_s)
        try:
            for future in futures:
                future.get(timeout=self._timeout_s)
        except KafkaError as exc:
            raise EnrolmentLogError(
                f"the enrolment log did not take {len(futures)} record(s): {exc}"
            ) from exc

    def close(self) -> None:
        """Flush and close the producer."""
        self._producer.close(timeout=self._timeout_s)


def _value(entry: LoggedEnrolment) -> EnrolmentValue:
    return EnrolmentValue(
        entry.tenant, entry.subject, entry.image, entry.content_type, entry.enrolled_at_ms, entry.request_id
    )


@dataclass(frozen=True, slots=True)
class LogEvent:
    """One record of the log: an enrolment, or a tombstone (``enrolment`` None) for ``image_id``."""

    partition: int
    offset: int
    image_id: str
    enrolment: LoggedEnrolment | None


@dataclass(frozen=True, slots=True)
class LogBatch:
    """What one poll read, and where each partition stands after it (the offsets to commit).

    Attributes:
        events: Records in log order per partition.
        positions: Next offset to read per partition (after compaction gaps, too).
        caught_up: Every partition has reached the end the reader last looked up.
        malformed: Records skipped because their value is not an enrolment (logged).
    """

    events: tuple[LogEvent, ...]
    positions: dict[int, int]
    caught_up: bool
    malformed: int = 0


class EnrolmentLogReader:
    """Reads the log by assignment from given offsets, a poll at a time.

    Args:
        consumer: From `build_log_consumer` (not subscribed to anything).
        topic: The log's topic.
    """

    def __init__(self, consumer: KafkaConsumer, topic: str) -> None:
        self._consumer = consumer
        self.topic = topic
        found = consumer.partitions_for_topic(topic)
        if not found:
            raise EnrolmentLogError(f"the enrolment log topic {topic!r} does not exist")
        self.partitions = [TopicPartition(topic, p) for p in sorted(found)]

    def end_offsets(self) -> dict[int, int]:
        """The current end (high watermark) of every partition."""
        return {tp.partition: int(end) for tp, end in self._consumer.end_offsets(self.partitions).items()}

    def beginning_offsets(self) -> dict[int, int]:
        """The first offset still in the log of every partition."""
        return {tp.partition: int(o) for tp, o in self._consumer.beginning_offsets(self.partitions).items()}

    def committed_offsets(self) -> dict[int, int]:
        """The consumer group's committed offsets (partitions without one are absent)."""
        found = {}
        for tp in self.partitions:
            offset = retrying(functools.partial(self._consumer.committed, tp))
            if offset is not None and offset >= 0:
                found[tp.partition] = int(offset)
        return found

    def commit(self, positions: Mapping[int, int]) -> None:
        """Commit ``positions`` for the consumer's group (raises `kafka.errors.KafkaError`)."""
        offsets = {TopicPartition(self.topic, p): OffsetAndMetadata(o, "", -1) for p, o in positions.items()}
        retrying(lambda: self._consumer.commit(offsets=offsets))

    def batches(
        self,
        start: Mapping[int, int] | None = None,
        *,
        follow: bool = False,
        stop: threading.Event | None = None,
        max_records: int = 256,
        poll_ms: int = 500,
    ) -> Iterator[LogBatch]:
        """Yield the log a poll at a time from ``start`` (the beginning where a partition has none).

        Without ``follow`` it ends at the end offsets looked up when it starts; with ``follow`` it keeps
        reading until ``stop`` is set, yielding an empty, ``caught_up`` batch when idle at the end.
        """
        stop = stop or threading.Event()
        consumer = self._consumer
        consumer.assign(self.partitions)
        beginning = self.beginning_offsets()
        for tp in self.partitions:
            consumer.seek(tp, max(beginning[tp.partition], (start or {}).get(tp.partition, 0)))
        until = self.end_offsets()
        while not stop.is_set():
            positions = {tp.partition: int(consumer.position(tp)) for tp in self.partitions}
            caught_up = all(positions[p] >= until[p] for p in positions)
            if caught_up and not follow:
                return
            polled = consumer.poll(timeout_ms=poll_ms, max_records=max_records)
            events, malformed = _events(message for messages in polled.values() for message in messages)
            positions = {tp.partition: int(consumer.position(tp)) for tp in self.partitions}
            if not events and follow:
                until = self.end_offsets()  # idle: look again where the end is
            caught_up = all(positions[p] >= until[p] for p in positions)
            if events or malformed or follow:
                yield LogBatch(tuple(events), positions, caught_up, malformed)


def _events(messages: Iterable[Any]) -> tuple[list[LogEvent], int]:
    """Log events from kafka-python records; values that are not enrolments are skipped and counted."""
    events: list[LogEvent] = []
    malformed = 0
    for message in messages:
        key, partition, offset = message.key, int(message.partition), int(message.offset)
        if not key:
            malformed += 1
            log.warning("enrolment log record %d@%d has no key; skipped", offset, partition)
            continue
        image_id = key.decode()
        value = message.value
        if value is None:
            events.append(LogEvent(partition, offset, image_id, None))
            continue
        try:
            v = decode_enrolment(value)
        except EnrolmentDecodeError as exc:
            malformed += 1
            log.warning("enrolment log record %d@%d skipped: %s", offset, partition, exc)
            continue
        enrolment = LoggedEnrolment(
            image_id, v.tenant, v.subject, v.image, v.content_type, v.enrolled_at_ms, v.request_id
        )
        events.append(LogEvent(partition, offset, image_id, enrolment))
    return events, malformed


def fold(events: Iterable[LogEvent]) -> dict[str, LoggedEnrolment | None]:
    """The last event per image id, in log order: an enrolment, or None where the last is a tombstone."""
    latest: dict[str, LoggedEnrolment | None] = {}
    for event in events:
        latest.pop(event.image_id, None)  # keep dict order = order of each key's last event
        latest[event.image_id] = event.enrolment
    return latest


def compacted_state(
    reader: EnrolmentLogReader, start: Mapping[int, int] | None = None
) -> dict[str, LoggedEnrolment]:
    """Every live enrolment in the log now (latest value per image id; tombstones remove)."""
    state: dict[str, LoggedEnrolment] = {}
    for batch in reader.batches(start):
        for image_id, enrolment in fold(batch.events).items():
            if enrolment is None:
                state.pop(image_id, None)
            else:
                state[image_id] = enrolment
    return state


def records_of(reader: EnrolmentLogReader, image_ids: Iterable[str]) -> int:
    """How many records (enrolments or tombstones) with these keys the log still holds."""
    wanted = set(image_ids)
    return sum(1 for batch in reader.batches() for event in batch.events if event.image_id in wanted)
