"""The Redis result store and embedding cache against a real redis-server."""

from __future__ import annotations

import numpy as np
import pytest
import redis

from services.results.store import (
    EmbeddingCache,
    RedisResultStore,
    SubjectIndex,
    delete_results_naming,
    digests_index_key,
    results_index_key,
    scan_results_naming,
)
from tests.support.waiting import wait_until
from twinstream.codec import result_to_json
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
    assert store.get("t", ok.request_id) == ok
    assert store.get("default", bad.request_id) == bad
    assert store.get("t", f"{unique_name}-missing") is None
    wait_until(lambda: store.get("t", ok.request_id) is None, 10, "the 1 s TTL to expire the stored result")


def test_embedding_cache_is_keyed_by_model_version_and_digest(redis_url: str, unique_name: str) -> None:
    cache = EmbeddingCache(redis.Redis.from_url(redis_url), ttl_s=60)
    vecs = np.arange(6, dtype=np.float32).reshape(2, 3)
    cache.put_many(unique_name, ["d1", "d2"], vecs)
    got = cache.get_many(unique_name, ["d2", "nope", "d1"])
    np.testing.assert_array_equal(got[0], vecs[1])
    assert got[1] is None
    np.testing.assert_array_equal(got[2], vecs[0])
    assert cache.get_many(unique_name + "-other-version", ["d1"]) == [None]


def test_batched_writes_survive_a_flushed_script_cache(redis_url: str, unique_name: str) -> None:
    """The one-command batch write is a Lua script: after a Redis restart (script cache empty) it is
    loaded again, and every key gets the TTL."""
    client = redis.Redis.from_url(redis_url)
    store = RedisResultStore(client, ttl_s=600)
    cache = EmbeddingCache(client, ttl_s=60)
    first = [MatchResult(f"{unique_name}-{i}", Op.ENROLL, Decision.ENROLLED) for i in range(3)]
    store.put_many(first)
    client.script_flush()
    second = [MatchResult(f"{unique_name}-{i}", Op.ENROLL, Decision.DUPLICATE) for i in range(3, 5)]
    store.put_many(second)
    cache.put_many(unique_name, ["d1"], np.ones((1, 4), dtype=np.float32))
    assert store.get_many([(r.tenant, r.request_id) for r in first + second]) == first + second
    ttls = [client.ttl(f"twinstream:result:default:{r.request_id}") for r in first + second]
    assert all(0 < t <= 600 for t in ttls)
    assert 0 < client.ttl(f"twinstream:emb:{unique_name}:d1") <= 60
    with pytest.raises(ValueError, match="digests"):
        cache.put_many(unique_name, ["a", "b"], np.ones((1, 4), dtype=np.float32))


def test_stored_results_are_the_one_json_document_of_a_result(redis_url: str, unique_name: str) -> None:
    client = redis.Redis.from_url(redis_url)
    store = RedisResultStore(client, ttl_s=60)
    results = [MatchResult(f"{unique_name}-{i}", Op.IDENTIFY, Decision.UNKNOWN, tenant="t") for i in range(2)]
    store.put_many(results)
    assert client.get(f"twinstream:result:t:{unique_name}-0") == result_to_json(results[0])
    assert store.get_many([("t", r.request_id) for r in results]) == results


def test_two_tenants_may_use_the_same_request_id_without_overwriting_each_other(
    redis_url: str, unique_name: str
) -> None:
    store = RedisResultStore(redis.Redis.from_url(redis_url), ttl_s=60)
    a = MatchResult("1", Op.ENROLL, Decision.ENROLLED, tenant=f"{unique_name}a", subject="s")
    b = MatchResult("1", Op.IDENTIFY, Decision.UNKNOWN, tenant=f"{unique_name}b")
    store.put_many([a])
    store.put_many([b])
    assert store.get_many([(a.tenant, "1"), (b.tenant, "1"), (f"{unique_name}c", "1")]) == [a, b, None]


def test_results_are_indexed_under_every_subject_they_name_and_erased_only_where_named(
    redis_url: str, unique_name: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    store, index, tenant = RedisResultStore(client, ttl_s=60), SubjectIndex(client), unique_name
    enrolled = MatchResult("r1", Op.ENROLL, Decision.ENROLLED, tenant=tenant, subject="alice")
    named = MatchResult(
        "r2", Op.IDENTIFY, Decision.MATCH, tenant=tenant, subject="bob",
        candidates=(Candidate("bob", 0.1, 0.9), Candidate("alice", 0.5, 0.2)),
    )  # fmt: skip
    other = MatchResult(
        "r3", Op.IDENTIFY, Decision.MATCH, tenant=tenant, candidates=(Candidate("bob", 0.1, 0.9),)
    )
    store.put_many([enrolled, named, other])
    assert index.result_ids(tenant, "alice") == {"r1", "r2"}
    assert index.result_ids(tenant, "bob") == {"r2", "r3"}
    assert 0 < client.ttl(results_index_key(tenant, "alice")) <= 60
    assert sorted(scan_results_naming(client, tenant, "alice")) == ["r1", "r2"]
    # r3 was reused since for a result that does not name alice: it is kept.
    assert delete_results_naming(client, tenant, "alice", ["r1", "r2", "r3", "gone"]) == 2
    assert store.get_many([(tenant, "r1"), (tenant, "r2"), (tenant, "r3")]) == [None, None, other]
    assert scan_results_naming(client, tenant, "alice") == []


def test_digests_are_indexed_per_subject_with_the_cache_ttl_and_found_by_scan(
    redis_url: str, unique_name: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    cache, index, tenant = EmbeddingCache(client, ttl_s=30), SubjectIndex(client), unique_name
    digest_a, digest_b = "a" * 64, unique_name.ljust(64, "b")
    cache.put_many(f"{unique_name}-v1", [digest_a, digest_b], np.ones((2, 4), dtype=np.float32))
    cache.put_many(f"{unique_name}-v2", [digest_b], np.ones((1, 4), dtype=np.float32))
    cache.index_subjects([(tenant, "alice", digest_b), (tenant, "bob", digest_a)])
    assert index.digests(tenant, "alice") == {digest_b}
    assert 0 < client.ttl(digests_index_key(tenant, "alice")) <= 30
    assert sorted(cache.scan_digests([digest_b])) == [
        f"twinstream:emb:{unique_name}-v1:{digest_b}", f"twinstream:emb:{unique_name}-v2:{digest_b}",
    ]  # fmt: skip
    assert cache.delete_digests([digest_b], [f"{unique_name}-v1", f"{unique_name}-v2"]) == 2
    assert cache.scan_digests([digest_b]) == []
    index.drop(tenant, "alice")
    assert not index.exists(tenant, "alice") and index.exists(tenant, "bob")
