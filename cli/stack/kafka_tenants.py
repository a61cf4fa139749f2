"""Kafka principals and what they may do: each tenant's SCRAM user, topics and ACLs, and the ingest user's.

`twinstream tenants add | remove | ingest-user` call these with an admin (super user) login, against the
local stack or any cluster that runs SASL/SCRAM with an ACL authorizer (docs/security.md):

- a tenant's user ``tenant.<T>`` may WRITE ``<images_topic>.<T>``, READ ``<results_topic>.<T>`` and use
  consumer groups named ``tenant.<T>.*`` — nothing else, and never the dead letters;
- the ingest user may READ every tenant's images topic (by prefix) with the ingest group, WRITE every
  results topic (by prefix) and the DLQ. Only the admin reads the DLQ.
"""

from __future__ import annotations

from dataclasses import dataclass

from kafka.admin import (
    ACL,
    ACLFilter,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    ResourcePattern,
    ResourcePatternFilter,
    ResourceType,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

from cli.stack.kafka_admin import ensure_topics
from services.kafka_clients import new_admin
from twinstream.config import KafkaSecurity, KafkaSettings, Settings, TenantBinding
from twinstream.tenant_topics import TopicTenancy, shared_topics, tenant_group_prefix, tenant_user

#: SCRAM iterations for the users we create (Kafka's minimum for SHA-512 is 4096).
SCRAM_ITERATIONS = 8192
_LITERAL, _PREFIXED = ACLResourcePatternType.LITERAL, ACLResourcePatternType.PREFIXED


class ProvisioningError(RuntimeError):
    """The brokers refused to create a user, topic or ACL (the message says which and why)."""


@dataclass(frozen=True, slots=True)
class Grant:
    """One ALLOW rule for a principal: an operation on a named (or prefixed) topic or group."""

    operation: ACLOperation
    resource: ResourceType
    name: str
    pattern: ACLResourcePatternType = _LITERAL

    def acl(self, user: str) -> ACL:
        pattern = ResourcePattern(self.resource, self.name, self.pattern)
        return ACL(f"User:{user}", "*", self.operation, ACLPermissionType.ALLOW, pattern)

    def __str__(self) -> str:
        star = "*" if self.pattern is _PREFIXED else ""
        return f"{self.operation.name} {self.resource.name.lower()} {self.name}{star}"


@dataclass(frozen=True, slots=True)
class Principal:
    """A user we provisioned and its grants (what the CLI prints; never the password)."""

    user: str
    grants: tuple[Grant, ...]
    topics: tuple[str, ...] = ()


def tenant_grants(kafka: KafkaSettings, tenant: str) -> tuple[Grant, ...]:
    """Write its own images topic, read its own results topic, consumer groups under its own prefix."""
    tenancy = TopicTenancy(kafka.images_topic, kafka.results_topic)
    return (
        Grant(ACLOperation.WRITE, ResourceType.TOPIC, tenancy.images_topic_of(tenant)),
        Grant(ACLOperation.READ, ResourceType.TOPIC, tenancy.results_topic_of(tenant)),
        Grant(ACLOperation.READ, ResourceType.GROUP, tenant_group_prefix(tenant), _PREFIXED),
    )


def ingest_grants(kafka: KafkaSettings, group_id: str) -> tuple[Grant, ...]:
    """Read the images topic(s) in its group, write the results topic(s) and the DLQ."""
    topic, read_write_pattern = ResourceType.TOPIC, _LITERAL
    images, results = kafka.images_topic, kafka.results_topic
    if TopicTenancy.from_settings(kafka) is not None:  # every tenant's topic, present and future
        images, results, read_write_pattern = f"{images}.", f"{results}.", _PREFIXED
    return (
        Grant(ACLOperation.READ, topic, images, read_write_pattern),
        Grant(ACLOperation.READ, ResourceType.GROUP, group_id),
        Grant(ACLOperation.WRITE, topic, results, read_write_pattern),
        Grant(ACLOperation.WRITE, topic, kafka.dlq_topic),
    )


def add_tenant(settings: Settings, tenant: str, password: str) -> Principal:
    """Create (or update) ``tenant``'s topics, SCRAM user and ACLs; re-running rotates its password."""
    _require_acls(settings.kafka)
    if settings.kafka.tenant_binding is not TenantBinding.TOPIC:
        raise ProvisioningError(
            "tenant users need TWINSTREAM_KAFKA__TENANT_BINDING=topic: with the shared topic any producer "
            "can name any tenant in its header"
        )
    tenancy = TopicTenancy(settings.kafka.images_topic, settings.kafka.results_topic)
    topics = (tenancy.images_topic_of(tenant), tenancy.results_topic_of(tenant))
    ensure_topics(settings, dict.fromkeys(topics, settings.kafka.partitions))
    principal = Principal(tenant_user(tenant), tenant_grants(settings.kafka, tenant), topics)
    _provision(settings.kafka, principal, password)
    return principal


def add_ingest_user(settings: Settings, user: str, password: str) -> Principal:
    """Create (or update) the ingest workers' SCRAM user and ACLs, and the shared topics they write."""
    _require_acls(settings.kafka)
    k = settings.kafka
    shared = shared_topics(k)
    ensure_topics(settings, dict.fromkeys(shared, k.partitions))
    principal = Principal(user, ingest_grants(k, settings.ingest.group_id), shared)
    _provision(k, principal, password)
    return principal


def remove_user(kafka: KafkaSettings, user: str) -> int:
    """Delete every ACL of ``user`` (effective at once, open connections included) and its login.

    Returns:
        How many ACLs were deleted. Topics are kept: their records expire with the topic's retention.
    """
    _require_acls(kafka)
    admin = new_admin(kafka, client_id="twinstream-tenants")
    try:
        everything = ResourcePatternFilter(ResourceType.ANY, None, ACLResourcePatternType.ANY)
        acl_filter = ACLFilter(f"User:{user}", None, ACLOperation.ANY, ACLPermissionType.ANY, everything)
        [(_filter, deleted, error)] = admin.delete_acls([acl_filter])
        if error.errno:  # NoError has errno 0
            raise ProvisioningError(f"deleting the ACLs of {user} failed: {error.__name__}")
        answer = admin.alter_user_scram_credentials(
            [UserScramCredentialDeletion(user, ScramMechanism.SCRAM_SHA_512)]
        )
        if (message := answer.get(user)) and "does not exist" not in message:
            raise ProvisioningError(f"deleting the login of {user} failed: {message}")
        return len(deleted)
    finally:
        admin.close()


def _provision(kafka: KafkaSettings, principal: Principal, password: str) -> None:
    if not password:
        raise ProvisioningError(f"an empty password for {principal.user} is refused")
    admin = new_admin(kafka, client_id="twinstream-tenants")
    try:
        upsert = UserScramCredentialUpsertion(
            principal.user, ScramMechanism.SCRAM_SHA_512, password, iterations=SCRAM_ITERATIONS
        )
        if message := admin.alter_user_scram_credentials([upsert]).get(principal.user):
            raise ProvisioningError(f"creating the login of {principal.user} failed: {message}")
        failed = admin.create_acls([grant.acl(principal.user) for grant in principal.grants])["failed"]
        if failed:
            raise ProvisioningError(f"granting {principal.user} its ACLs failed: {failed}")
    finally:
        admin.close()


def _require_acls(kafka: KafkaSettings) -> None:
    if kafka.security is not KafkaSecurity.SASL_SCRAM:
        raise ProvisioningError(
            "users and ACLs need TWINSTREAM_KAFKA__SECURITY=sasl-scram and an admin login "
            "(TWINSTREAM_KAFKA__SASL_USERNAME / __SASL_PASSWORD)"
        )
