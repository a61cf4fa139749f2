"""Authenticated Kafka against a real broker in sasl-scram mode: each tenant's principal, and the binding.

The broker is the stack's own (`sasl_kafka`: SCRAM logins, StandardAuthorizer, tenants bound to topics).
Tenants, users and groups get uuid names. The worker test uses a stub pipeline: what is tested is where
a record's tenant comes from and where its answer goes, not matching.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import pytest
from kafka import TopicPartition
from kafka.errors import (
    GroupAuthorizationFailedError,
    KafkaError,
    KafkaTimeoutError,
    TopicAuthorizationFailedError,
)
from pydantic import SecretStr

from cli.stack.kafka_tenants import add_ingest_user, add_tenant
from services.ingest.results_reader import build_reader, read_results
from services.kafka_clients import new_consumer, new_producer
from tests.support.streams import digit_png, worker_thread
from twinstream.codec import read_dead_letter
from twinstream.config import KafkaSecurity, Settings
from twinstream.contracts import Decision, ImageRequest, MatchResult, RejectReason
from twinstream.tenant_topics import TopicTenancy, tenant_group_prefix

pytestmark = pytest.mark.integration


def login(settings: Settings, user: str, password: str, **kafka: object) -> Settings:
    """``settings`` logging in as another principal."""
    copy = settings.model_copy(deep=True)
    copy.kafka = copy.kafka.model_copy(
        update={"sasl_username": user, "sasl_password": SecretStr(password), **kafka}
    )
    return copy


@dataclass(frozen=True)
class Principals:
    """The admin, two tenants and the ingest user on the sasl broker, each as settings that log in as it."""

    admin: Settings
    a: str
    b: str
    tenant_a: Settings
    tenant_b: Settings
    ingest: Settings
    tenancy: TopicTenancy


@pytest.fixture(scope="module")
def principals(sasl_kafka: Settings) -> Principals:
    a, b = "ta" + uuid.uuid4().hex[:8], "tb" + uuid.uuid4().hex[:8]
    words = {name: secrets.token_urlsafe(18) for name in ("a", "b", "ingest")}
    ingest_settings = sasl_kafka.model_copy(deep=True)
    ingest_settings.ingest = ingest_settings.ingest.model_copy(
        update={"group_id": f"ingest-{uuid.uuid4().hex[:8]}", "retry_initial_s": 0.2, "retry_max_s": 1.0}
    )
    user_a = add_tenant(sasl_kafka, a, words["a"]).user
    user_b = add_tenant(sasl_kafka, b, words["b"]).user
    ingest_user = add_ingest_user(ingest_settings, "ingest-" + uuid.uuid4().hex[:6], words["ingest"]).user
    tenancy = TopicTenancy.from_settings(sasl_kafka.kafka)
    assert tenancy is not None
    return Principals(
        sasl_kafka,
        a,
        b,
        login(sasl_kafka, user_a, words["a"]),
        login(sasl_kafka, user_b, words["b"]),
        login(ingest_settings, ingest_user, words["ingest"]),
        tenancy,
    )


def send(settings: Settings, topic: str, value: bytes, **headers: str) -> None:
    producer = new_producer(settings.kafka, client_id="test-producer", max_request_size=1 << 20)
    try:
        encoded = [(name.replace("_", "-"), text.encode()) for name, text in headers.items()]
        producer.send(topic, value, headers=encoded).get(timeout=15)
    finally:
        producer.close(timeout=5)


def fetch(settings: Settings, topic: str) -> list[bytes]:
    """Read partition 0 of ``topic`` from its start as ``settings``'s principal; a refusal raises.

    Looking up the first offset needs DESCRIBE on the topic (which WRITE implies); the fetch needs READ.
    """
    consumer = new_consumer(settings.kafka, client_id="test-fetch", enable_auto_commit=False)
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        consumer.position(tp, timeout_ms=5000)
        return [m.value for batch in consumer.poll(timeout_ms=1000).values() for m in batch]
    finally:
        consumer.close()


def test_a_tenant_writes_its_images_topic_and_is_refused_everywhere_else(principals: Principals) -> None:
    p, tenancy = principals, principals.tenancy
    send(p.tenant_a, tenancy.images_topic_of(p.a), digit_png(1), op="identify")
    with pytest.raises(TopicAuthorizationFailedError):
        send(p.tenant_a, tenancy.images_topic_of(p.b), digit_png(1), op="delete", subject="x")
    with pytest.raises(TopicAuthorizationFailedError):  # nor forge its own results
        send(p.tenant_a, tenancy.results_topic_of(p.a), b"{}")
    assert fetch(p.tenant_a, tenancy.results_topic_of(p.a)) == []  # it may read its own results
    for foreign in (tenancy.results_topic_of(p.b), p.admin.kafka.dlq_topic):
        with pytest.raises(TopicAuthorizationFailedError):
            fetch(p.tenant_a, foreign)
    with pytest.raises(
        TopicAuthorizationFailedError
    ):  # the ingest user writes dead letters, never reads them
        fetch(p.ingest, p.admin.kafka.dlq_topic)


def test_a_tenant_reads_its_results_only_with_groups_under_its_own_prefix(principals: Principals) -> None:
    p = principals
    topic = p.tenancy.results_topic_of(p.a)
    own = new_consumer(
        p.tenant_a.kafka, topic, client_id="test", group_id=tenant_group_prefix(p.a) + "reader"
    )
    try:
        deadline = time.monotonic() + 30
        while not own.assignment() and time.monotonic() < deadline:
            own.poll(timeout_ms=200)
        assert own.assignment(), "the tenant's own group should join"
    finally:
        own.close()
    foreign = new_consumer(p.tenant_a.kafka, topic, client_id="test", group_id=f"{p.b}-reader")
    try:
        with pytest.raises(GroupAuthorizationFailedError):
            foreign.poll(timeout_ms=5000)
    finally:
        foreign.close()


def test_a_wrong_password_is_refused(principals: Principals) -> None:
    kafka = principals.tenant_a.kafka.model_copy(update={"bootstrap_timeout_ms": 3000})
    new_producer(kafka, client_id="test-right").close()  # the same broker lets the right one in
    wrong = kafka.model_copy(
        update={"sasl_password": SecretStr("not-" + kafka.sasl_password.get_secret_value())}
    )
    with pytest.raises(KafkaTimeoutError, match="Unable to bootstrap"):
        new_producer(wrong, client_id="test-wrong")


def test_a_client_without_a_login_writes_nothing(principals: Principals) -> None:
    anonymous = principals.tenant_a.kafka.model_copy(update={"security": KafkaSecurity.PLAINTEXT})
    topic = principals.tenancy.images_topic_of(principals.a)
    with pytest.raises(KafkaError):  # refused at bootstrap or at its first request, never accepted
        producer = new_producer(
            anonymous, client_id="test-anon", bootstrap_timeout_ms=3000, max_block_ms=3000
        )
        try:
            producer.send(topic, digit_png(1), headers=[("op", b"identify")]).get(timeout=5)
        finally:
            producer.close(timeout=1)


class TenantEchoPipeline:
    """Stub `MatchPipeline`: answers ENROLLED for the tenant the worker decoded."""

    def process(self, requests: Sequence[ImageRequest]) -> list[MatchResult]:
        return [
            MatchResult(r.request_id, r.op, Decision.ENROLLED, r.tenant, r.subject, source=r.source)
            for r in requests
        ]


def results_of(settings: Settings, topic: str, wanted: set[str], timeout_s: float = 60) -> list[MatchResult]:
    """Results on ``topic`` read as ``settings``'s principal, until every wanted id is there (or timeout)."""
    deadline = time.monotonic() + timeout_s
    while True:
        consumer = build_reader(settings.kafka)
        try:
            found = [record.result for record in read_results(consumer, topic)]
        finally:
            consumer.close()
        if wanted <= {r.request_id for r in found} or time.monotonic() > deadline:
            return found
        time.sleep(0.3)


def dead_letters(
    admin: Settings, wanted: set[str], timeout_s: float = 30
) -> Iterator[tuple[str, RejectReason]]:
    consumer = new_consumer(admin.kafka, client_id="test-dlq", enable_auto_commit=False)
    try:
        tps = [
            TopicPartition(admin.kafka.dlq_topic, p)
            for p in consumer.partitions_for_topic(admin.kafka.dlq_topic)
        ]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        seen: set[str] = set()
        deadline = time.monotonic() + timeout_s
        while seen < wanted and time.monotonic() < deadline:
            for messages in consumer.poll(timeout_ms=500).values():
                for message in messages:
                    info = read_dead_letter(message.headers)
                    if info.request_id in wanted:
                        seen.add(info.request_id)
                        yield info.request_id, info.reason
    finally:
        consumer.close()


def test_the_topic_decides_the_tenant_and_a_foreign_tenant_header_is_dead_lettered(
    principals: Principals,
) -> None:
    p, tenancy = principals, principals.tenancy
    run = uuid.uuid4().hex[:6]
    plain, same, foreign, of_b = (f"{run}-{name}" for name in ("plain", "same", "foreign", "b"))
    images_a = tenancy.images_topic_of(p.a)
    send(p.tenant_a, images_a, digit_png(1), op="enroll", subject="ann", request_id=plain)
    send(p.tenant_a, images_a, digit_png(2), op="enroll", subject="ann", request_id=same, tenant=p.a)
    send(p.tenant_a, images_a, digit_png(3), op="delete", subject="ann", request_id=foreign, tenant=p.b)
    send(p.tenant_b, tenancy.images_topic_of(p.b), digit_png(4), op="enroll", subject="bob", request_id=of_b)

    with worker_thread(p.ingest, TenantEchoPipeline()):
        answers_a = {
            r.request_id: r
            for r in results_of(p.tenant_a, tenancy.results_topic_of(p.a), {plain, same, foreign})
        }
        answers_b = {r.request_id: r for r in results_of(p.tenant_b, tenancy.results_topic_of(p.b), {of_b})}

    # Everything on A's results topic is A's, whoever's name a header gave.
    assert {plain, same, foreign} <= set(answers_a)
    assert all(result.tenant == p.a for result in answers_a.values())
    assert answers_a[plain].decision == answers_a[same].decision == Decision.ENROLLED
    assert answers_a[foreign].decision == Decision.REJECTED
    assert answers_a[foreign].error_reason == RejectReason.BAD_HEADER
    # Results land on the producer's tenant only: B's topic has B's answer and none of A's.
    assert of_b in answers_b
    assert all(result.tenant == p.b for result in answers_b.values())
    assert not {plain, same, foreign} & set(answers_b)
    assert dict(dead_letters(p.admin, {foreign})) == {foreign: RejectReason.BAD_HEADER}


def test_tenants_add_creates_a_login_that_produces_to_its_topic_and_never_prints_the_password(
    sasl_kafka: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    k = sasl_kafka.kafka
    env = {"BOOTSTRAP": k.bootstrap, "SECURITY": "sasl-scram", "TENANT_BINDING": "topic", "PARTITIONS": "1"}
    env |= {"SASL_USERNAME": k.sasl_username, "SASL_PASSWORD": k.sasl_password.get_secret_value()}
    for name, value in env.items():
        monkeypatch.setenv(f"TWINSTREAM_KAFKA__{name}", value)
    tenant, password = "tc" + uuid.uuid4().hex[:8], secrets.token_urlsafe(18)
    out = CliRunner().invoke(app, ["tenants", "add", tenant, "--password-stdin"], input=password + "\n")
    assert out.exit_code == 0, out.output
    assert f"tenant.{tenant}" in out.output and password not in out.output
    topic = TopicTenancy(k.images_topic, k.results_topic).images_topic_of(tenant)
    as_tenant = login(sasl_kafka, f"tenant.{tenant}", password, bootstrap_timeout_ms=3000)
    producer = new_producer(as_tenant.kafka, client_id="test-open")
    try:
        producer.send(topic, digit_png(5), headers=[("op", b"identify")]).get(timeout=15)
        removed = CliRunner().invoke(app, ["tenants", "remove", tenant])
        assert removed.exit_code == 0 and "3 ACL(s)" in removed.output, removed.output
        assert refused_within(10, lambda: producer.send(topic, b"x").get(timeout=5)), "its open connection"
    finally:
        producer.close(timeout=5)
    with pytest.raises(KafkaTimeoutError, match="Unable to bootstrap"):  # and its login is gone
        new_producer(as_tenant.kafka, client_id="test-gone")


def refused_within(timeout_s: float, action: Callable[[], object]) -> bool:
    """Whether ``action`` is refused (TopicAuthorizationFailedError) before ``timeout_s``: ACLs propagate."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            action()
        except TopicAuthorizationFailedError:
            return True
        time.sleep(0.2)
    return False
