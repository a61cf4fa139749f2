"""Redis: the result store (every `MatchResult` by request id, with a TTL) and the embedding cache.

Results are stored as the one JSON document of a result (`twinstream.codec.result_to_json`, the same
bytes the results topic and the HTTP API carry); cached embeddings as raw float32 bytes keyed by model version
and the image's SHA-256, so a repeated image is not embedded again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import numpy as np
import redis

from twinstream.codec import result_from_json, result_to_json
from twinstream.contracts import MatchResult

RESULT_PREFIX = "twinstream:result:"
EMBEDDING_PREFIX = "twinstream:emb:"


#: SET key value EX ttl for every key of a batch in one command. A pipeline of SETs costs redis-py
#: ~13 µs of client CPU per key to pack and parse; one script call ~2 µs (up to 512 results per poll,
#: twice per poll with the embedding cache). The keys of one call must live on one node: a single Redis
#: (this stack's) or, on a cluster, keys sharing a hash tag.
_SET_MANY_WITH_TTL = """
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], ARGV[i + 1], 'EX', ARGV[1])
end
return #KEYS
"""


def mget_bytes(client: redis.Redis, keys: Sequence[str]) -> list[bytes | None]:
    """``MGET`` as bytes (our clients never set ``decode_responses``; redis-py types replies as str too)."""
    return cast("list[bytes | None]", client.mget(list(keys)))


class _SetManyWithTtl:
    """`_SET_MANY_WITH_TTL` as a redis-py `Script` (EVALSHA, loaded again after a Redis restart)."""

    def __init__(self, client: redis.Redis) -> None:
        self._script = client.register_script(_SET_MANY_WITH_TTL)

    def __call__(self, keys: Sequence[str], values: Sequence[bytes], ttl_s: int) -> None:
        self._script(keys=list(keys), args=[ttl_s, *values])


class RedisResultStore:
    """Every result by request id, kept ``ttl_s`` seconds (implements `twinstream.ports.ResultStore`).

    Args:
        client: A redis-py client (built by the process's composition root).
        ttl_s: Seconds a result is kept.
    """

    def __init__(self, client: redis.Redis, ttl_s: int) -> None:
        self._client = client
        self._ttl_s = ttl_s
        self._set_many = _SetManyWithTtl(client)

    def put_many(self, results: Sequence[MatchResult]) -> None:
        """Store results in one round trip (a later result with the same request id replaces the earlier)."""
        if not results:
            return
        keys = [RESULT_PREFIX + result.request_id for result in results]
        self._set_many(keys, [result_to_json(r) for r in results], self._ttl_s)

    def get(self, request_id: str) -> MatchResult | None:
        """The stored result of ``request_id``, or None if unknown or expired."""
        (raw,) = mget_bytes(self._client, [RESULT_PREFIX + request_id])
        return None if raw is None else result_from_json(raw)

    def get_many(self, request_ids: Sequence[str]) -> list[MatchResult | None]:
        """Stored results in the order of ``request_ids`` (None where unknown or expired), one round trip."""
        if not request_ids:
            return []
        raws = mget_bytes(self._client, [RESULT_PREFIX + rid for rid in request_ids])
        return [None if raw is None else result_from_json(raw) for raw in raws]


class EmbeddingCache:
    """Embeddings by (model version, image SHA-256), so a repeated image skips the embedder.

    Args:
        client: A redis-py client.
        ttl_s: Seconds an embedding is kept.
    """

    def __init__(self, client: redis.Redis, ttl_s: int) -> None:
        self._client = client
        self._ttl_s = ttl_s
        self._set_many = _SetManyWithTtl(client)

    @staticmethod
    def _key(model_version: str, digest: str) -> str:
        return f"{EMBEDDING_PREFIX}{model_version}:{digest}"

    def get_many(self, model_version: str, digests: Sequence[str]) -> list[np.ndarray | None]:
        """Cached vectors in the order of ``digests`` (None where not cached)."""
        if not digests:
            return []
        raw = mget_bytes(self._client, [self._key(model_version, d) for d in digests])
        return [None if b is None else np.frombuffer(b, dtype=np.float32).copy() for b in raw]

    def put_many(self, model_version: str, digests: Sequence[str], vectors: np.ndarray) -> None:
        """Cache one vector per digest, in one round trip."""
        if not digests:
            return
        rows = np.asarray(vectors, dtype=np.float32)
        if len(rows) != len(digests):
            raise ValueError(f"{len(digests)} digests for {len(rows)} vectors")
        keys = [self._key(model_version, digest) for digest in digests]
        self._set_many(keys, [row.tobytes() for row in rows], self._ttl_s)
