"""Kafka clients for the ingest side, built from settings: the group consumer and the admin client."""

from __future__ import annotations

from kafka import KafkaAdminClient, KafkaConsumer

from services.kafka_clients import new_admin, new_consumer
from twinstream.config import IngestSettings, KafkaSettings

#: Per-partition fetch size: a few images per fetch; a larger single record is still returned (KIP-74).
_PARTITION_FETCH_BYTES = 4 * 1024 * 1024


def build_consumer(kafka: KafkaSettings, ingest: IngestSettings, *, client_id: str) -> KafkaConsumer:
    """A group consumer with manual commits, sized so a slow batch never trips a rebalance.

    ``max_poll_interval_ms`` bounds one poll→commit cycle (pipeline retries included) and comes from
    settings; heartbeats run on kafka-python's background thread, so a long batch keeps the session.
    """
    return new_consumer(
        kafka,
        group_id=ingest.group_id,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=ingest.max_poll_records,
        max_poll_interval_ms=ingest.max_poll_interval_ms,
        session_timeout_ms=ingest.session_timeout_ms,
        heartbeat_interval_ms=max(100, ingest.session_timeout_ms // 3),
        max_partition_fetch_bytes=_PARTITION_FETCH_BYTES,
        fetch_max_bytes=max(50 * 1024 * 1024, kafka.max_message_bytes + 1024 * 1024),
    )


def build_admin(kafka: KafkaSettings, *, client_id: str = "twinstream-admin") -> KafkaAdminClient:
    return new_admin(kafka, client_id=client_id)
