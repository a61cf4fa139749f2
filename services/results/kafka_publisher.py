"""Publish results to ``twinstream.results`` and dead letters to ``twinstream.dlq``, and wait for the acks.

With tenants bound to topics each result goes to its tenant's own results topic
(``twinstream.results.<tenant>``), which only that tenant's principal may read.

`publish` returns only when the broker has acknowledged every record (``acks=all``, idempotent
producer), so the worker may commit its offsets afterwards; any failure raises ``KafkaError`` and the
worker retries the batch (a replay republishes identical results under the same keys).

A DLQ copy is cut to fit the topic's size limit (`DeadLetter.fitted`): a record just under the limit
plus the dead-letter headers would be refused by the broker on every retry and block its partition.
Should the broker still refuse one as too large (a DLQ topic configured below ``max_message_bytes``),
a copy without the value is sent instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Protocol

from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError, MessageSizeTooLargeError, RecordListTooLargeError

from services.kafka_clients import new_producer
from services.results.partitioner import partitions_for_keys
from twinstream.codec import H_CONTENT_TYPE, DeadLetter, encode_results
from twinstream.config import KafkaSettings
from twinstream.contracts import MatchResult
from twinstream.tenant_topics import TopicTenancy

#: Room for headers and record framing on top of the largest value we copy to the DLQ.
_REQUEST_HEADROOM = 64 * 1024
#: What the broker answers when a record (batch) is over the topic's max.message.bytes.
_TOO_LARGE = (MessageSizeTooLargeError, RecordListTooLargeError)


class ResultPublisher(Protocol):
    """What the ingest worker needs from a results/DLQ producer."""

    def publish(self, results: Sequence[MatchResult], dead_letters: Sequence[DeadLetter]) -> None: ...

    def close(self) -> None: ...


def build_producer(kafka: KafkaSettings, *, client_id: str = "twinstream-results") -> KafkaProducer:
    """A producer sized for image-sized DLQ copies, with acks from all replicas and idempotence."""
    return new_producer(
        kafka,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        # A batch must fit the topic's limit too (records are only cut to fit one at a time).
        batch_size=min(kafka.producer_batch_bytes, kafka.max_message_bytes),
        max_request_size=kafka.max_message_bytes + _REQUEST_HEADROOM,
    )


class KafkaResultPublisher:
    """Sends each batch's results (key = request id) and dead letters, then blocks until acknowledged."""

    def __init__(
        self,
        producer: KafkaProducer,
        *,
        results_topic: str,
        dlq_topic: str,
        results_format: Literal["json", "protobuf"] = "json",
        ack_timeout_s: float = 60.0,
        tenancy: TopicTenancy | None = None,
        dlq_max_bytes: int = 25 * 1024 * 1024,
    ) -> None:
        self._producer = producer
        self._results_topic = results_topic
        self._dlq_topic = dlq_topic
        self._format = results_format
        self._ack_timeout_s = ack_timeout_s
        self._tenancy = tenancy
        self._dlq_max_bytes = dlq_max_bytes

    @classmethod
    def from_settings(cls, kafka: KafkaSettings, producer: KafkaProducer) -> KafkaResultPublisher:
        return cls(
            producer,
            results_topic=kafka.results_topic,
            dlq_topic=kafka.dlq_topic,
            results_format=kafka.results_format,
            tenancy=TopicTenancy.from_settings(kafka),
            dlq_max_bytes=kafka.max_message_bytes,
        )

    def publish(self, results: Sequence[MatchResult], dead_letters: Sequence[DeadLetter]) -> None:
        """Send everything, flush, and raise if any record was not acknowledged.

        Raises:
            KafkaError: If a send failed or timed out (nothing may be committed then).
        """
        dlq = [(dead, self._send_dead_letter(dead, self._dlq_max_bytes)) for dead in dead_letters]
        futures = self._send_results(results)
        self._producer.flush(timeout=self._ack_timeout_s)
        # A copy the broker still refuses as too large (its DLQ topic allows less than max_message_bytes)
        # goes again without its value: the headers still say what it was and where to find it.
        copies = [self._send_dead_letter(dead, 0) if _too_large(sent) else sent for dead, sent in dlq]
        if any(_too_large(sent) for _, sent in dlq):
            self._producer.flush(timeout=self._ack_timeout_s)
        for future in [*copies, *futures]:
            if not future.is_done:
                raise KafkaTimeoutError(f"no acknowledgement within {self._ack_timeout_s}s")
            future.get(timeout=0)  # raises the send's KafkaError, if any

    def _send_results(self, results: Sequence[MatchResult]) -> list[Any]:
        values, content_type = encode_results(results, self._format)
        headers = [(H_CONTENT_TYPE, content_type.encode())]
        keys = [result.request_id.encode("utf-8") for result in results]
        topics = self._topics(results)
        partitions = self._partitions(keys, topics)
        return [
            self._producer.send(topic, key=key, value=value, headers=headers, partition=partition)
            for key, value, topic, partition in zip(keys, values, topics, partitions, strict=True)
        ]

    def _topics(self, results: Sequence[MatchResult]) -> list[str]:
        """Each result's topic: the shared one, or its tenant's when tenants are bound to topics."""
        if self._tenancy is None:
            return [self._results_topic] * len(results)
        return [self._tenancy.results_topic_of(result.tenant) for result in results]

    def _partitions(self, keys: Sequence[bytes], topics: Sequence[str]) -> list[int]:
        """The default partitioner's choice, one topic's keys at once (kafka-python's hashes in Python)."""
        rows_of: dict[str, list[int]] = {}
        for row, topic in enumerate(topics):
            rows_of.setdefault(topic, []).append(row)
        partitions = [0] * len(keys)
        for topic, rows in rows_of.items():
            chosen = partitions_for_keys([keys[row] for row in rows], self._producer.partitions_for(topic))
            for row, partition in zip(rows, chosen, strict=True):
                partitions[row] = partition
        return partitions

    def _send_dead_letter(self, dead: DeadLetter, max_bytes: int) -> Any:
        copy = dead.fitted(max_bytes)
        return self._producer.send(self._dlq_topic, key=copy.key, value=copy.value, headers=copy.headers)

    def close(self, timeout_s: float = 10.0) -> None:
        self._producer.close(timeout=timeout_s)


def _too_large(future: Any) -> bool:
    return bool(future.is_done and isinstance(future.exception, _TOO_LARGE))


__all__ = ["KafkaError", "KafkaResultPublisher", "ResultPublisher", "build_producer"]
