"""Every Kafka client of twinstream is built here, so each one gets the same security settings.

`client_options` is the one place that turns `KafkaSettings` into kafka-python's connection options
(bootstrap servers, SASL/SCRAM login, metadata refresh); the producers, consumers and admin clients of
the ingest workers, `twinstream publish`, the results reader, the stack and the demo all go through
`new_producer`, `new_consumer` and `new_admin`, adding only their own tuning.
"""

from __future__ import annotations

from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from twinstream.config import KafkaSecurity, KafkaSettings

#: The only SASL mechanism we enable: SCRAM never sends the password, and KRaft stores its credentials.
SASL_MECHANISM = "SCRAM-SHA-512"


def security_options(kafka: KafkaSettings) -> dict[str, Any]:
    """kafka-python's ``security_protocol`` and SASL options for ``kafka.security``."""
    if kafka.security is KafkaSecurity.PLAINTEXT:
        return {"security_protocol": "PLAINTEXT"}
    return {
        # SASL over plain TCP: the password never crosses the wire (SCRAM), but records do in clear.
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": SASL_MECHANISM,
        "sasl_plain_username": kafka.sasl_username,
        "sasl_plain_password": kafka.sasl_password.get_secret_value(),
    }


def client_options(kafka: KafkaSettings, client_id: str) -> dict[str, Any]:
    """Options every client shares: where the brokers are, how to log in, how fast to fail."""
    return {
        "bootstrap_servers": kafka.bootstrap.split(","),
        "client_id": client_id,
        "bootstrap_timeout_ms": kafka.bootstrap_timeout_ms,
        "metadata_max_age_ms": kafka.metadata_max_age_ms,
        **security_options(kafka),
    }


def _with(kafka: KafkaSettings, client_id: str, options: dict[str, Any]) -> dict[str, Any]:
    """The shared options, ``options`` added or overriding them; the login itself is not per client."""
    refused = sorted(n for n in options if n == "security_protocol" or n.startswith(("sasl_", "ssl_")))
    if refused:
        raise ValueError(f"security options come from KafkaSettings only, not per client: {refused}")
    return {**client_options(kafka, client_id), **options}


def new_producer(kafka: KafkaSettings, *, client_id: str, **options: Any) -> KafkaProducer:
    """A producer with the shared options plus ``options`` (acks, batch sizes, …)."""
    return KafkaProducer(**_with(kafka, client_id, options))


def new_consumer(kafka: KafkaSettings, *topics: str, client_id: str, **options: Any) -> KafkaConsumer:
    """A consumer with the shared options plus ``options`` (group, fetch sizes, …)."""
    return KafkaConsumer(*topics, **_with(kafka, client_id, options))


def new_admin(kafka: KafkaSettings, *, client_id: str = "twinstream-admin") -> KafkaAdminClient:
    """An admin client: topics, groups, ACLs and SCRAM users (the latter two need a super user)."""
    return KafkaAdminClient(**client_options(kafka, client_id))
