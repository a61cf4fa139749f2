"""Kafka security settings: secrets never printed, every client logs in alike, results go to their tenant."""

from __future__ import annotations

import json
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from kafka.admin import ACLOperation, ACLResourcePatternType, ResourceType
from typer.testing import CliRunner

from cli.stack.kafka_tenants import ingest_grants, tenant_grants
from services.kafka_clients import new_producer, security_options
from services.results.kafka_publisher import KafkaResultPublisher
from twinstream.config import SettingsError, load_settings, write_settings_file
from twinstream.contracts import Decision, MatchResult, Op

PASSWORD = "pw-" + "x" * 20
SASL = {"security": "sasl-scram", "sasl_username": "tenant.acme", "sasl_password": PASSWORD}


def test_sasl_scram_requires_a_login_and_names_the_variables() -> None:
    with pytest.raises(SettingsError, match="TWINSTREAM_KAFKA__SASL_PASSWORD"):
        load_settings(kafka={"security": "sasl-scram", "sasl_username": "u"})


def test_a_settings_error_never_echoes_the_password() -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(kafka={"security": "sasl-scram", "sasl_password": PASSWORD})
    assert PASSWORD not in str(err.value)


def test_twinstream_settings_masks_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    from cli.main import app

    for name, value in SASL.items():
        monkeypatch.setenv(f"TWINSTREAM_KAFKA__{name.upper()}", value)
    out = CliRunner().invoke(app, ["settings"])
    assert out.exit_code == 0, out.output
    assert PASSWORD not in out.output
    assert "**********" in out.output
    assert PASSWORD not in repr(load_settings())


def test_a_childs_settings_file_carries_the_password_readable_by_its_owner_only(tmp_path: Path) -> None:
    settings = load_settings(kafka=SASL)
    path = write_settings_file(settings, tmp_path / "settings.json")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_settings(**json.loads(path.read_text()))
    assert again.kafka.sasl_password.get_secret_value() == PASSWORD


def test_composes_own_secrets_in_dot_env_do_not_break_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text('REDIS_PASSWORD=abc\nTWINSTREAM_SERVE__API_KEYS={"k1": "*"}\n')
    monkeypatch.chdir(tmp_path)
    assert load_settings().serve.api_keys == {"k1": "*"}


def test_every_client_gets_the_scram_login_from_the_settings() -> None:
    assert security_options(load_settings().kafka) == {"security_protocol": "PLAINTEXT"}
    options = security_options(load_settings(kafka=SASL).kafka)
    assert options == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "tenant.acme",
        "sasl_plain_password": PASSWORD,
    }


def test_a_client_cannot_choose_its_own_login() -> None:
    with pytest.raises(ValueError, match="security options come from KafkaSettings"):
        new_producer(load_settings().kafka, client_id="x", security_protocol="PLAINTEXT")


def test_a_tenant_may_write_its_images_and_read_its_results_and_nothing_else() -> None:
    kafka = load_settings(kafka={"tenant_binding": "topic"}).kafka
    grants = {(g.operation, g.resource, g.name, g.pattern) for g in tenant_grants(kafka, "acme")}
    literal, prefixed = ACLResourcePatternType.LITERAL, ACLResourcePatternType.PREFIXED
    assert grants == {
        (ACLOperation.WRITE, ResourceType.TOPIC, "twinstream.images.acme", literal),
        (ACLOperation.READ, ResourceType.TOPIC, "twinstream.results.acme", literal),
        (ACLOperation.READ, ResourceType.GROUP, "tenant.acme.", prefixed),
    }


def test_ingest_reads_every_tenants_images_and_writes_results_and_dead_letters() -> None:
    kafka = load_settings(kafka={"tenant_binding": "topic"}).kafka
    grants = {(g.operation, g.name, g.pattern) for g in ingest_grants(kafka, "twinstream-ingest")}
    literal, prefixed = ACLResourcePatternType.LITERAL, ACLResourcePatternType.PREFIXED
    assert grants == {
        (ACLOperation.READ, "twinstream.images.", prefixed),
        (ACLOperation.READ, "twinstream-ingest", literal),
        (ACLOperation.WRITE, "twinstream.results.", prefixed),
        (ACLOperation.WRITE, "twinstream.dlq", literal),
    }
    assert not any(
        g.operation is ACLOperation.READ and g.name == kafka.dlq_topic for g in ingest_grants(kafka, "g")
    )


class _Done:
    is_done = True

    def get(self, timeout: float = 0) -> None:
        return None


class RecordingProducer:
    """Stands in for KafkaProducer: four partitions per topic, every send acknowledged."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, int]] = []

    def partitions_for(self, topic: str) -> set[int]:
        return {0, 1, 2, 3}

    def send(
        self, topic: str, *, key: bytes, value: bytes, headers: Any, partition: int | None = None
    ) -> _Done:
        assert partition is not None
        self.sent.append((topic, key, partition))
        return _Done()

    def flush(self, timeout: float | None = None) -> None:
        return None


def results(*tenants: str) -> Sequence[MatchResult]:
    return [MatchResult(f"r{i}-{t}", Op.IDENTIFY, Decision.NO_MATCH, t) for i, t in enumerate(tenants)]


def test_in_topic_binding_each_result_goes_to_its_tenants_results_topic() -> None:
    from kafka.partitioner.default import murmur2

    producer = RecordingProducer()
    kafka = load_settings(kafka={"tenant_binding": "topic"}).kafka
    KafkaResultPublisher.from_settings(kafka, producer).publish(results("a", "b", "a"), ())  # type: ignore[arg-type]
    assert [topic for topic, _, _ in producer.sent] == [
        "twinstream.results.a",
        "twinstream.results.b",
        "twinstream.results.a",
    ]
    assert all(p == (murmur2(key) & 0x7FFFFFFF) % 4 for _, key, p in producer.sent)


def test_in_header_binding_every_result_goes_to_the_shared_topic() -> None:
    producer = RecordingProducer()
    KafkaResultPublisher.from_settings(load_settings().kafka, producer).publish(results("a", "b"), ())  # type: ignore[arg-type]
    assert {topic for topic, _, _ in producer.sent} == {"twinstream.results"}
