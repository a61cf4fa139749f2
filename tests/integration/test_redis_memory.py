"""The local stack's Redis has a memory bound, and at that bound it drops cached data, never state.

A private redis-server is started through the stack's own `Redis` part with a tiny ``maxmemory``; it is
then filled far beyond it with TTL'd entries like the embedding cache and results. Keys without a TTL
(the gallery's generation counters, the active model) must all survive, and writes must keep working.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis

from cli.stack import Stack, free_port
from services.api.served import live_key
from services.gallery.mirror import RedisGenerations
from services.results.store import EmbeddingCache
from twinstream.config import load_settings

pytestmark = pytest.mark.integration


@pytest.fixture
def small_redis(tmp_path: Path) -> Iterator[redis.Redis]:
    port = free_port()
    settings = load_settings(redis={"port": port, "url": f"redis://127.0.0.1:{port}/0", "maxmemory": "4mb"})
    stack = Stack(settings, tmp_path)
    stack.up(["redis"])
    client = redis.Redis.from_url(settings.redis.url)
    yield client
    client.close()
    stack.down(["redis"])


def test_the_stack_redis_runs_with_the_configured_bound_and_policy(redis_url: str) -> None:
    config = redis.Redis.from_url(redis_url).config_get("maxmemory*")
    assert config["maxmemory-policy"] == "volatile-ttl"
    assert int(str(config["maxmemory"])) == 1024**3


def test_at_maxmemory_cached_entries_are_evicted_and_state_keys_never_are(small_redis: redis.Redis) -> None:
    generations = RedisGenerations(small_redis, "c")
    tenants = [f"tenant{i}" for i in range(200)]
    for tenant in tenants:
        generations.bump(tenant)
    small_redis.set(live_key("app"), "v1")
    cache = EmbeddingCache(small_redis, ttl_s=3600)
    vectors = np.ones((100, 256), np.float32)  # 1 KiB each
    for batch in range(100):  # ~10 MiB written into 4 MiB: every batch must still be accepted
        cache.put_many("v1", [f"{batch}-{i}" for i in range(100)], vectors)
    info = small_redis.info("stats")
    assert int(info["evicted_keys"]) > 0
    assert generations.current(tenants) == dict.fromkeys(tenants, 1)
    assert small_redis.get(live_key("app")) == b"v1"
