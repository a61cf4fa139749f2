"""The clients a lifecycle command needs (Redis, Milvus, the log, Kafka admin), built once from settings.

The composition root of ``twinstream models`` and ``twinstream erase`` (and of tests): one place that
builds and closes them, so the modules that use them take ready clients.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property

import redis
from kafka import KafkaAdminClient, KafkaConsumer
from pymilvus import MilvusClient

from services.gallery.client import connect_with
from services.lifecycle.enrolment_log import (
    EnrolmentLogReader,
    KafkaEnrolmentLog,
    build_log_consumer,
    build_log_producer,
)
from services.lifecycle.offsets import LogOffsets, build_admin
from services.lifecycle.registry import ModelRegistry, RegistryKeys
from services.results.redis_client import redis_client
from twinstream.config import Settings


@dataclass
class LifecycleClients:
    """Connected clients; the log writer is made on first use (only erasure writes)."""

    settings: Settings
    redis: redis.Redis
    milvus: MilvusClient
    admin: KafkaAdminClient
    consumer: KafkaConsumer

    @cached_property
    def reader(self) -> EnrolmentLogReader:
        return EnrolmentLogReader(self.consumer, self.settings.kafka.enrolments_topic)

    @cached_property
    def offsets(self) -> LogOffsets:
        return LogOffsets(self.admin, self.reader)

    @cached_property
    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.redis, RegistryKeys.for_settings(self.settings))

    @cached_property
    def log(self) -> KafkaEnrolmentLog:
        return KafkaEnrolmentLog(
            build_log_producer(self.settings.kafka), self.settings.kafka.enrolments_topic
        )

    def close(self) -> None:
        if "log" in self.__dict__:
            self.log.close()
        self.consumer.close(autocommit=False)
        self.admin.close()
        self.milvus.close()
        self.redis.close()


@contextmanager
def lifecycle_clients(settings: Settings) -> Iterator[LifecycleClients]:
    """Build every client from ``settings``; close them on exit."""
    clients = LifecycleClients(
        settings,
        redis_client(settings.redis),
        connect_with(settings.milvus),
        build_admin(settings.kafka),
        build_log_consumer(settings.kafka, client_id="twinstream-lifecycle"),
    )
    try:
        yield clients
    finally:
        clients.close()
