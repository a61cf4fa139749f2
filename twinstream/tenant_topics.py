"""The names that bind a tenant to Kafka: its topics, its SCRAM user and its consumer-group prefix.

In topic binding (``kafka.tenant_binding = topic``) every tenant has its own images topic
``<images_topic>.<tenant>``, which only its principal may write, and its own results topic
``<results_topic>.<tenant>``, which only its principal may read; the ingest group consumes every images
topic by pattern, so the tenant of a record is its topic's. In header binding there is one shared
images and one shared results topic, and the tenant comes from each record's ``tenant`` header.

Tenant names follow the one rule of `twinstream.names` (letters, digits, ``_`` and ``-``, no dots), so a
tenant's topic, user and group prefix never start with another tenant's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from twinstream.config import KafkaSettings, TenantBinding
from twinstream.names import TENANT_PATTERN

_TENANT = TENANT_PATTERN
TOPIC_TENANT_RE = re.compile(_TENANT)
#: A tenant's SCRAM user is this prefix plus the tenant: never the name of the admin or ingest user.
TENANT_USER_PREFIX = "tenant."


class InvalidTenantError(ValueError):
    """A tenant name that cannot be bound to topics, users and groups."""


def check_topic_tenant(tenant: str) -> str:
    """``tenant`` if it can name topics, users and groups unambiguously; else InvalidTenantError."""
    if not TOPIC_TENANT_RE.fullmatch(tenant):
        raise InvalidTenantError(
            f"tenant {tenant[:64]!r} must match {TOPIC_TENANT_RE.pattern} when tenants are bound to topics"
        )
    return tenant


def tenant_user(tenant: str) -> str:
    """The SCRAM user (principal ``User:<this>``) that produces for ``tenant``."""
    return TENANT_USER_PREFIX + check_topic_tenant(tenant)


def tenant_group_prefix(tenant: str) -> str:
    """Consumer groups ``tenant``'s principal may use start with this (e.g. ``tenant.acme.results``)."""
    return f"{tenant_user(tenant)}."


@dataclass(frozen=True, slots=True)
class TopicTenancy:
    """Topic binding: per-tenant images and results topics derived from the two base names."""

    images_topic: str
    results_topic: str

    @classmethod
    def from_settings(cls, kafka: KafkaSettings) -> TopicTenancy | None:
        """The binding ``kafka`` configures, or None in header binding (the shared topics)."""
        if kafka.tenant_binding is not TenantBinding.TOPIC:
            return None
        return cls(kafka.images_topic, kafka.results_topic)

    def images_topic_of(self, tenant: str) -> str:
        return f"{self.images_topic}.{check_topic_tenant(tenant)}"

    def results_topic_of(self, tenant: str) -> str:
        return f"{self.results_topic}.{check_topic_tenant(tenant)}"

    @property
    def images_pattern(self) -> str:
        """The regular expression the ingest group subscribes with: every tenant's images topic."""
        return rf"^{re.escape(self.images_topic)}\.({_TENANT})$"

    def tenant_of(self, topic: str) -> str | None:
        """The tenant whose images topic ``topic`` is, or None when it is no tenant's images topic."""
        found = re.match(self.images_pattern, topic)
        return found.group(1) if found else None


def shared_topics(kafka: KafkaSettings) -> tuple[str, ...]:
    """Topics every deployment has: the DLQ, and in header binding the shared images and results topics."""
    if kafka.tenant_binding is TenantBinding.TOPIC:
        return (kafka.dlq_topic,)
    return (kafka.images_topic, kafka.results_topic, kafka.dlq_topic)


def images_topic_for(kafka: KafkaSettings, tenant: str) -> str:
    """Where a producer for ``tenant`` publishes: its own topic in topic binding, else the shared one."""
    tenancy = TopicTenancy.from_settings(kafka)
    return tenancy.images_topic_of(tenant) if tenancy else kafka.images_topic


def results_topic_for(kafka: KafkaSettings, tenant: str) -> str:
    """Where ``tenant``'s results are: its own topic in topic binding, else the shared one."""
    tenancy = TopicTenancy.from_settings(kafka)
    return tenancy.results_topic_of(tenant) if tenancy else kafka.results_topic
