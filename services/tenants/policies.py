"""Tenants' operating points in Redis: set over HTTP or the CLI, applied by every replica within a second.

A policy is one small JSON document per tenant (``twinstream:policy:<tenant>``, no expiry). Replicas read
the policies of a batch's tenants in one ``MGET`` and keep them for ``max_age_s``, so a change reaches
every replica, and through them every Kafka and HTTP decision, within that time. A tenant without a
document has the deployment's default policy (`PolicySettings`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence

import redis

from services.results.store import mget_bytes
from twinstream.contracts import TenantPolicy

POLICY_PREFIX = "twinstream:policy:"


def policy_to_json(policy: TenantPolicy) -> bytes:
    return json.dumps({"verify_far": policy.verify_far, "identify_fpir": policy.identify_fpir}).encode()


def policy_from_json(raw: bytes, default: TenantPolicy) -> TenantPolicy:
    """A stored policy (fields missing from an older document take the default's)."""
    data = json.loads(raw)
    return TenantPolicy(
        float(data.get("verify_far", default.verify_far)),
        float(data.get("identify_fpir", default.identify_fpir)),
    )


class RedisPolicies:
    """`services.matching.ports.Policies` over Redis, with a short per-replica cache.

    Args:
        client: A redis-py client.
        default: The policy of tenants that set none.
        max_age_s: How long a replica uses a policy it read before reading it again.
    """

    def __init__(self, client: redis.Redis, default: TenantPolicy, max_age_s: float = 1.0) -> None:
        self._client = client
        self.default = default
        self._max_age_s = max_age_s
        self._cache: dict[str, tuple[TenantPolicy, float]] = {}

    async def of(self, tenants: Sequence[str]) -> dict[str, TenantPolicy]:
        now = time.monotonic()
        fresh = {t: c[0] for t in tenants if (c := self._cache.get(t)) and now - c[1] < self._max_age_s}
        missing = [t for t in tenants if t not in fresh]
        if missing:
            read = await asyncio.to_thread(self.read, missing)
            self._cache.update((t, (p, now)) for t, p in read.items())
            if len(self._cache) > 10_000:  # tenants come and go: keep the cache bounded
                self._cache = {t: self._cache[t] for t in tenants}
            fresh.update(read)
        return fresh

    def read(self, tenants: Sequence[str]) -> dict[str, TenantPolicy]:
        """The stored (or default) policy of each tenant, in one round trip, bypassing the cache."""
        raws = mget_bytes(self._client, [POLICY_PREFIX + t for t in tenants])
        return {
            t: self.default if raw is None else policy_from_json(raw, self.default)
            for t, raw in zip(tenants, raws, strict=True)
        }

    def write(self, tenant: str, policy: TenantPolicy) -> None:
        """Store a tenant's policy (every replica applies it within ``max_age_s``)."""
        self._client.set(POLICY_PREFIX + tenant, policy_to_json(policy))
        self._cache.pop(tenant, None)
