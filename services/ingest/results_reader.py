"""Read `MatchResult`s back from the results topic: everything so far, or follow new ones.

Any client can write to the results topic, so a record that is not a result is skipped and reported
(`SkippedRecord`), never allowed to end the read.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError
from kafka import KafkaConsumer, TopicPartition

from services.kafka_clients import new_consumer
from twinstream.codec import decode_result
from twinstream.config import KafkaSettings
from twinstream.contracts import MatchResult

log = logging.getLogger(__name__)
#: What `decode_result` raises on bytes that are not a result: bad JSON or protobuf (``ValueError``,
#: ``DecodeError``), a document of another shape (``KeyError``, ``TypeError``, ``AttributeError``).
#: tests/unit/test_results_reader.py fuzzes `decode_result` to keep this list complete.
UNDECODABLE_RESULT_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    KeyError,
    TypeError,
    AttributeError,
    DecodeError,
)


@dataclass(frozen=True, slots=True)
class ResultRecord:
    """A result with where it sits on the results topic and when it was written."""

    result: MatchResult
    partition: int
    offset: int
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class SkippedRecord:
    """A record on the results topic that is not a result, and why it could not be read."""

    partition: int
    offset: int
    reason: str


def log_skipped(record: SkippedRecord) -> None:
    """The default report of a skipped record: a warning in the log."""
    log.warning(
        "skipped an undecodable record at partition %d offset %d: %s",
        record.partition,
        record.offset,
        record.reason,
    )


def build_reader(kafka: KafkaSettings) -> KafkaConsumer:
    """A group-less consumer (reading results never moves anyone's offsets)."""
    return new_consumer(kafka, client_id="twinstream-results-reader", group_id=None, enable_auto_commit=False)


def read_results(
    consumer: KafkaConsumer,
    topic: str,
    *,
    follow: bool = False,
    request_ids: Collection[str] = (),
    stop: threading.Event | None = None,
    poll_ms: int = 500,
    on_skipped: Callable[[SkippedRecord], None] = log_skipped,
) -> Iterator[ResultRecord]:
    """Yield results from the beginning of ``topic``; stop at the current end unless ``follow``.

    Args:
        consumer: From `build_reader`.
        topic: The results topic.
        follow: Keep waiting for new results until ``stop`` is set.
        request_ids: Only these request ids (all when empty).
        stop: Ends a follow.
        poll_ms: Longest wait of one poll.
        on_skipped: Told about every record that is not a result (it is skipped).
    """
    stop = stop or threading.Event()
    tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    ends = consumer.end_offsets(tps)
    wanted = set(request_ids)
    while not stop.is_set():
        if not follow and all(consumer.position(tp) >= ends[tp] for tp in tps):
            return
        for messages in consumer.poll(timeout_ms=poll_ms).values():
            for message in messages:
                result = _decoded(message, on_skipped)
                if result is not None and (not wanted or result.request_id in wanted):
                    yield ResultRecord(result, message.partition, message.offset, int(message.timestamp or 0))


def _decoded(message: Any, on_skipped: Callable[[SkippedRecord], None]) -> MatchResult | None:
    """The result a consumed record holds, or None (a tombstone, or reported to ``on_skipped``)."""
    if message.value is None:
        return None
    try:
        return decode_result(message.value, message.headers or ())
    except UNDECODABLE_RESULT_ERRORS as exc:
        on_skipped(SkippedRecord(message.partition, message.offset, f"{type(exc).__name__}: {exc}"[:200]))
        return None
