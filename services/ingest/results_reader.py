"""Read `MatchResult`s back from the results topic: everything so far, or follow new ones."""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterator
from dataclasses import dataclass

from kafka import KafkaConsumer, TopicPartition

from services.kafka_clients import new_consumer
from twinstream.codec import decode_result
from twinstream.config import KafkaSettings
from twinstream.contracts import MatchResult


@dataclass(frozen=True, slots=True)
class ResultRecord:
    """A result with where it sits on the results topic and when it was written."""

    result: MatchResult
    partition: int
    offset: int
    timestamp_ms: int


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
) -> Iterator[ResultRecord]:
    """Yield results from the beginning of ``topic``; stop at the current end unless ``follow``.

    Args:
        consumer: From `build_reader`.
        topic: The results topic.
        follow: Keep waiting for new results until ``stop`` is set.
        request_ids: Only these request ids (all when empty).
        stop: Ends a follow.
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
                if message.value is None:
                    continue
                result = decode_result(message.value, message.headers or ())
                if not wanted or result.request_id in wanted:
                    yield ResultRecord(result, message.partition, message.offset, int(message.timestamp or 0))
