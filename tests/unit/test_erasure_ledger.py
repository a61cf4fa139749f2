"""The erasure ledger refuses replayed enrolments of an erased subject and keeps no name (no services)."""

from __future__ import annotations

from typing import Any

from services.lifecycle.ledger import (
    ERASED_PREFIX,
    RedisErasureLedger,
    ledger_key,
    ledger_ttl_s,
    record_time_ms,
    refusals,
    refused,
    subject_hash,
)
from twinstream.config import load_settings
from twinstream.contracts import ImageRequest, Op, SourceRef


class FakeRedis:
    """The two commands the ledger uses, in memory, remembering each key's TTL."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}
        self.ttls: dict[str, int] = {}

    def set(self, key: str, value: Any, ex: int) -> None:
        self.values[key] = str(value).encode()
        self.ttls[key] = ex

    def mget(self, keys: list[str]) -> list[bytes | None]:
        return [self.values.get(k) for k in keys]


def _enrol(subject: str, record_ms: int = 0, produced_ms: int = 0, tenant: str = "acme") -> ImageRequest:
    source = SourceRef("twinstream.images", 0, 7, record_ms) if record_ms else None
    return ImageRequest("r", Op.ENROLL, b"img", tenant, subject, produced_at_ms=produced_ms, source=source)


def test_a_replayed_enrolment_written_before_the_erasure_is_refused_and_a_later_one_accepted() -> None:
    ledger = RedisErasureLedger(FakeRedis(), ttl_s=3600)  # type: ignore[arg-type]
    ledger.record("acme", "alice", erased_at_ms=5_000)
    erased = ledger.erased_before([("acme", "alice"), ("acme", "bob"), ("other", "alice")])
    assert erased == {("acme", "alice"): 5_000}
    batch = [_enrol("alice", 4_000), _enrol("alice", 5_000), _enrol("alice", 6_000), _enrol("bob", 1)]
    assert refusals(batch, erased, now_ms=9_000) == [True, True, False, False]


def test_the_ledger_stores_a_hash_of_the_subject_never_its_name() -> None:
    fake = FakeRedis()
    RedisErasureLedger(fake, ttl_s=60, secret="k").record("acme", "alice.smith", 1)  # type: ignore[arg-type]
    (key,) = fake.values
    assert key.startswith(ERASED_PREFIX + "acme:")
    assert "alice" not in key and b"alice" not in fake.values[key]
    assert key == ledger_key("acme", "alice.smith", "k")


def test_a_keyed_hash_differs_from_the_plain_one_and_from_another_tenants() -> None:
    plain, keyed = subject_hash("acme", "alice"), subject_hash("acme", "alice", "secret")
    assert len(plain) == len(keyed) == 32 and plain != keyed
    assert subject_hash("other", "alice") != plain


def test_the_ledger_lives_as_long_as_the_longest_raw_image_retention_plus_the_margin() -> None:
    settings = load_settings(
        kafka={"images_retention_ms": 3_600_000, "dlq_retention_ms": 7_200_000},
        lifecycle={"ledger_margin_s": 60},
    )
    assert ledger_ttl_s(settings) == 7_260
    fake = FakeRedis()
    RedisErasureLedger.from_settings(fake, settings).record("t", "s", 1)  # type: ignore[arg-type]
    assert list(fake.ttls.values()) == [7_260]


def test_the_record_time_is_the_kafka_timestamp_then_the_producers_then_now() -> None:
    assert record_time_ms(_enrol("s", record_ms=10, produced_ms=20), now_ms=30) == 10
    assert record_time_ms(_enrol("s", produced_ms=20), now_ms=30) == 20
    assert record_time_ms(_enrol("s"), now_ms=30) == 30  # an HTTP request: new by definition
    assert not refused(10, None)
