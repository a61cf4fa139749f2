"""The Redis result store and embedding cache against a real redis-server."""

from __future__ import annotations

import time

import numpy as np
import pytest
import redis

from services.results.store import EmbeddingCache, RedisResultStore
from twinstream.contracts import Candidate, Decision, MatchResult, Op, Rejection, RejectReason, SourceRef

pytestmark = pytest.mark.integration


def test_results_round_trip_by_request_id_and_expire(redis_url: str, unique_name: str) -> None:
    store = RedisResultStore(redis.Redis.from_url(redis_url), ttl_s=1)
    ok = MatchResult(
        f"{unique_name}-1", Op.IDENTIFY, Decision.MATCH, tenant="t", subject="s", distance=0.1,
        candidates=(Candidate("s", 0.1, 0.9),), source=SourceRef("topic", 2, 7),
    )  # fmt: skip
    bad = MatchResult.rejected(f"{unique_name}-2", Rejection(RejectReason.TOO_LARGE, "big"), op=Op.ENROLL)
    store.put_many([ok, bad])
    assert store.get(ok.request_id) == ok
    assert store.get(bad.request_id) == bad
    assert store.get(f"{unique_name}-missing") is None
    time.sleep(1.2)
    assert store.get(ok.request_id) is None


def test_embedding_cache_is_keyed_by_model_version_and_digest(redis_url: str, unique_name: str) -> None:
    cache = EmbeddingCache(redis.Redis.from_url(redis_url), ttl_s=60)
    vecs = np.arange(6, dtype=np.float32).reshape(2, 3)
    cache.put_many(unique_name, ["d1", "d2"], vecs)
    got = cache.get_many(unique_name, ["d2", "nope", "d1"])
    np.testing.assert_array_equal(got[0], vecs[1])
    assert got[1] is None
    np.testing.assert_array_equal(got[2], vecs[0])
    assert cache.get_many(unique_name + "-other-version", ["d1"]) == [None]
