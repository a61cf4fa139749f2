"""Topic creation and the produce/consume round trip that proves a broker really answers."""

from __future__ import annotations

import contextlib
import uuid

from kafka import TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import TopicAlreadyExistsError

from services.kafka_clients import new_admin, new_consumer, new_producer
from twinstream.config import KafkaSettings, Settings


def ensure_topics(settings: Settings, topics: dict[str, int]) -> None:
    """Create each missing topic with its partition count and configs; align existing topics' configs.

    Configs come from `KafkaSettings.configs_of` (images and DLQ retention, also for each tenant's
    images topic; the enrolment log's compaction), else ``max.message.bytes`` only. An existing topic
    keeps its partitions and has those configs set again (an incremental alter: other configs stay), so a
    changed retention setting reaches a running stack on its next ``stack up``.
    """
    k = settings.kafka
    admin = new_admin(k, client_id="twinstream-stack")
    try:
        existing = set(admin.list_topics())
        configs = {name: k.configs_of(name) for name in topics}
        wanted = [
            NewTopic(name, num_partitions=partitions, replication_factor=1, topic_configs=configs[name])
            for name, partitions in topics.items()
            if name not in existing
        ]
        if wanted:
            # A concurrent creator winning leaves the topic existing, as wanted.
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(wanted, timeout_ms=30_000, wait_for_metadata=True)
        present = [name for name in topics if name in existing]
        if present:
            admin.alter_configs(
                [ConfigResource(ConfigResourceType.TOPIC, name, configs=configs[name]) for name in present],
                incremental=True,
            )
    finally:
        admin.close()


def round_trip(kafka: KafkaSettings, topic: str, timeout_ms: int = 10_000) -> bool:
    """Produce one record with headers and read it back from its offset (as ``kafka``'s principal)."""
    token = uuid.uuid4().hex.encode()
    producer = new_producer(kafka, client_id="twinstream-stack", bootstrap_timeout_ms=timeout_ms)
    try:
        meta = producer.send(topic, value=token, headers=[("probe", b"1")], partition=0).get(
            timeout_ms / 1000
        )
    finally:
        producer.close(timeout=5)
    consumer = new_consumer(
        kafka, client_id="twinstream-stack", enable_auto_commit=False, bootstrap_timeout_ms=timeout_ms
    )
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek(tp, meta.offset)
        for records in consumer.poll(timeout_ms=timeout_ms, max_records=1).values():
            return any(r.value == token for r in records)
        return False
    finally:
        consumer.close()
