"""The erasure ledger: which (tenant, subject) was erased and when, so a replay cannot enrol it again.

Raw images stay on the images topic and the DLQ for their retention. A new consumer group reading the
images topic from its earliest offset would enrol an erased subject again from those records; the
pipeline asks `RedisErasureLedger.erased_before` for the subjects of a batch's enrol requests and refuses
every enrolment whose record was written at or before the erasure (`refused`). A subject enrolled again
later, with a new record, is accepted.

One Redis key per erased subject, ``twinstream:erased:<tenant>:<hash>``, value = the erasure time (epoch
ms), TTL = the longest raw-image retention (images topic or DLQ) plus a margin: once every record that
could bring the subject back has expired, the ledger entry goes too. The key holds a hash of the
subject, never its name: keyed (HMAC-SHA256 with ``lifecycle.ledger_key``) so that a guessed name cannot
be checked against it; plain SHA-256 when no key is set.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import cast

import redis

from services.matching.ports import SubjectKey
from twinstream.config import Settings
from twinstream.contracts import ImageRequest

ERASED_PREFIX = "twinstream:erased:"


def subject_hash(tenant: str, subject: str, secret: str = "") -> str:
    """The ledger's stand-in for a subject's name: 32 hex characters, keyed when ``secret`` is set."""
    joined = f"{tenant}\x1f{subject}".encode()
    if secret:
        return hmac.new(secret.encode(), joined, hashlib.sha256).hexdigest()[:32]
    return hashlib.sha256(joined).hexdigest()[:32]


def ledger_key(tenant: str, subject: str, secret: str = "") -> str:
    """The Redis key of one erased subject."""
    return f"{ERASED_PREFIX}{tenant}:{subject_hash(tenant, subject, secret)}"


def ledger_ttl_s(settings: Settings) -> int:
    """How long an erasure is remembered: the longest raw-image retention plus the margin."""
    return settings.kafka.raw_image_retention_s + settings.lifecycle.ledger_margin_s


def record_time_ms(request: ImageRequest, now_ms: int) -> int:
    """When an enrol request was written: its Kafka record's timestamp, else the producer's, else now.

    A replayed record keeps its original timestamp, so it compares as old; an HTTP request is new.
    """
    if request.source is not None and request.source.timestamp_ms > 0:
        return request.source.timestamp_ms
    return request.produced_at_ms or now_ms


def refused(record_ms: int, erased_at_ms: int | None) -> bool:
    """Whether an enrolment written at ``record_ms`` must be refused (its subject was erased since)."""
    return erased_at_ms is not None and record_ms <= erased_at_ms


def refusals(requests: Sequence[ImageRequest], erased: Mapping[SubjectKey, int], now_ms: int) -> list[bool]:
    """Per enrol request, whether it must be refused given `RedisErasureLedger.erased_before`'s answer."""
    return [refused(record_time_ms(r, now_ms), erased.get((r.tenant, r.subject))) for r in requests]


class RedisErasureLedger:
    """`services.matching.ports.ErasureLedger` in Redis.

    Args:
        client: A redis-py client.
        ttl_s: How long an entry lives (`ledger_ttl_s`).
        secret: HMAC key for the subject hashes ("" for plain SHA-256).
    """

    def __init__(self, client: redis.Redis, ttl_s: int, secret: str = "") -> None:
        self._client = client
        self._ttl_s = ttl_s
        self._secret = secret

    @classmethod
    def from_settings(cls, client: redis.Redis, settings: Settings) -> RedisErasureLedger:
        return cls(client, ledger_ttl_s(settings), settings.lifecycle.ledger_key.get_secret_value())

    def record(self, tenant: str, subject: str, erased_at_ms: int) -> None:
        """Remember an erasure (a later erasure of the same subject moves the time on and renews the TTL)."""
        self._client.set(ledger_key(tenant, subject, self._secret), erased_at_ms, ex=self._ttl_s)

    def erased_before(self, keys: Sequence[SubjectKey]) -> dict[SubjectKey, int]:
        """Erasure time of each erased (tenant, subject) among ``keys``, in one MGET; others are absent."""
        unique = list(dict.fromkeys(keys))
        if not unique:
            return {}
        raw = cast(
            "list[bytes | None]", self._client.mget([ledger_key(t, s, self._secret) for t, s in unique])
        )
        return {key: int(value) for key, value in zip(unique, raw, strict=True) if value is not None}
