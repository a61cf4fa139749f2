"""Redis: the result store (every `MatchResult` by tenant and request id, with a TTL), the embedding
cache, and the per-subject index sets that let an erasure find what names a subject.

Results are stored as the one JSON document of a result (`twinstream.codec.result_to_json`, the same
bytes the results topic and the HTTP API carry) under ``twinstream:result:<tenant>:<request id>``: request
ids are chosen by producers, so two tenants may both send ``request-id: 1`` and must not overwrite each
other's results (nor be taken for each other's replays). Cached embeddings are raw float32 bytes keyed by
model version and the image's SHA-256, so a repeated image is not embedded again.

Index sets (for erasure, `services.lifecycle.erasure`): ``twinstream:idx:results:<tenant>:<subject>``
holds the request ids of stored results that name the subject (as the subject or as a candidate), and
``twinstream:idx:digests:<tenant>:<subject>`` the digests of images enrolled or verified for it (whose
embeddings may be cached). Each set's TTL is refreshed to the TTL of what it indexes on every add, so it
outlives every entry it points to; entries that expired before the set are skipped when it is read.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import cast

import numpy as np
import redis

from twinstream.codec import result_from_json, result_to_json
from twinstream.contracts import MatchResult

RESULT_PREFIX = "twinstream:result:"
EMBEDDING_PREFIX = "twinstream:emb:"
RESULTS_INDEX_PREFIX = "twinstream:idx:results:"
DIGESTS_INDEX_PREFIX = "twinstream:idx:digests:"

#: (tenant, request id): what identifies a stored result.
ResultKey = tuple[str, str]


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

#: The same, then for each index set one SADD of its members and one EXPIRE ttl: KEYS = n value keys then
#: m set keys; ARGV = ttl, n, the n values, then per set its member count and members. Members are
#: grouped per set by the caller, so a batch costs one SADD per subject named, not per mention (512
#: identify results with 5 candidates each name ~3,000 subjects, but few distinct ones).
_SET_MANY_AND_INDEX = """
local ttl, n = ARGV[1], tonumber(ARGV[2])
for i = 1, n do
  redis.call('SET', KEYS[i], ARGV[i + 2], 'EX', ttl)
end
local at = n + 3
for j = n + 1, #KEYS do
  local count = tonumber(ARGV[at])
  redis.call('SADD', KEYS[j], unpack(ARGV, at + 1, at + count))
  redis.call('EXPIRE', KEYS[j], ttl)
  at = at + count + 1
end
return #KEYS
"""


def mget_bytes(client: redis.Redis, keys: Sequence[str]) -> list[bytes | None]:
    """``MGET`` as bytes (our clients never set ``decode_responses``; redis-py types replies as str too)."""
    return cast("list[bytes | None]", client.mget(list(keys)))


def result_key(tenant: str, request_id: str) -> str:
    """The Redis key of a stored result."""
    return f"{RESULT_PREFIX}{tenant}:{request_id}"


def results_index_key(tenant: str, subject: str) -> str:
    """The set of request ids whose stored results name ``subject`` (subject or candidate)."""
    return f"{RESULTS_INDEX_PREFIX}{tenant}:{subject}"


def digests_index_key(tenant: str, subject: str) -> str:
    """The set of digests of images enrolled or verified for ``subject``."""
    return f"{DIGESTS_INDEX_PREFIX}{tenant}:{subject}"


def subjects_named(result: MatchResult) -> set[str]:
    """Every subject a result names: its own and each candidate's."""
    named = {c.subject for c in result.candidates}
    if result.subject:
        named.add(result.subject)
    named.discard("")
    return named


class _SetManyWithTtl:
    """`_SET_MANY_WITH_TTL` as a redis-py `Script` (EVALSHA, loaded again after a Redis restart)."""

    def __init__(self, client: redis.Redis) -> None:
        self._script = client.register_script(_SET_MANY_WITH_TTL)

    def __call__(self, keys: Sequence[str], values: Sequence[bytes], ttl_s: int) -> None:
        self._script(keys=list(keys), args=[ttl_s, *values])


class _SetManyAndIndex:
    """`_SET_MANY_AND_INDEX` as a redis-py `Script`."""

    def __init__(self, client: redis.Redis) -> None:
        self._script = client.register_script(_SET_MANY_AND_INDEX)

    def __call__(
        self,
        keys: Sequence[str],
        values: Sequence[bytes | str],
        index: Iterable[tuple[str, str]],
        ttl_s: int,
    ) -> None:
        grouped: dict[str, list[str]] = {}
        for key, member in index:
            grouped.setdefault(key, []).append(member)
        args: list[bytes | str | int] = [ttl_s, len(keys), *values]
        for members in grouped.values():
            args.append(len(members))
            args.extend(members)
        self._script(keys=[*keys, *grouped], args=args)


class RedisResultStore:
    """Every result by (tenant, request id), kept ``ttl_s`` seconds (`twinstream.ports.ResultStore`).

    Args:
        client: A redis-py client (built by the process's composition root).
        ttl_s: Seconds a result is kept.
        index_subjects: Also index each result under every subject it names (what erasure reads).
    """

    def __init__(self, client: redis.Redis, ttl_s: int, *, index_subjects: bool = True) -> None:
        self._client = client
        self._ttl_s = ttl_s
        self._index_subjects = index_subjects
        self._write = _SetManyAndIndex(client)

    def put_many(self, results: Sequence[MatchResult]) -> None:
        """Store results in one round trip (a later result with the same key replaces the earlier)."""
        if not results:
            return
        keys = [result_key(result.tenant, result.request_id) for result in results]
        index: list[tuple[str, str]] = []
        if self._index_subjects:
            index = [
                (results_index_key(result.tenant, subject), result.request_id)
                for result in results
                for subject in subjects_named(result)
            ]
        self._write(keys, [result_to_json(r) for r in results], index, self._ttl_s)

    def get(self, tenant: str, request_id: str) -> MatchResult | None:
        """The stored result of ``request_id`` in ``tenant``, or None if unknown or expired."""
        (raw,) = mget_bytes(self._client, [result_key(tenant, request_id)])
        return None if raw is None else result_from_json(raw)

    def get_many(self, keys: Sequence[ResultKey]) -> list[MatchResult | None]:
        """Stored results of (tenant, request id) pairs, in order (None where unknown or expired)."""
        if not keys:
            return []
        raws = mget_bytes(self._client, [result_key(tenant, rid) for tenant, rid in keys])
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
        self._index = _SetManyAndIndex(client)

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

    def index_subjects(self, entries: Sequence[tuple[str, str, str]]) -> None:
        """Remember which subject each image digest was enrolled or verified for, in one round trip.

        Args:
            entries: (tenant, subject, image digest) triples; the sets live as long as cached vectors.
        """
        if not entries:
            return
        self._index([], [], [(digests_index_key(t, s), digest) for t, s, digest in entries], self._ttl_s)

    def delete_digests(self, digests: Iterable[str], versions: Iterable[str]) -> int:
        """Drop every cached vector of ``digests`` under each model version; returns how many existed."""
        keys = [self._key(v, d) for v in set(versions) for d in set(digests)]
        return int(self._client.delete(*keys)) if keys else 0  # type: ignore[arg-type]

    def scan_digests(self, digests: Iterable[str], *, count: int = 1000) -> list[str]:
        """Keys of cached vectors of ``digests`` under any model version (a SCAN of every cached vector).

        Slow on a big cache (one pass over its keys), and meant for erasure checks, not the hot path.
        """
        wanted = set(digests)
        if not wanted:
            return []
        found: list[str] = []
        for raw in self._client.scan_iter(match=f"{EMBEDDING_PREFIX}*", count=count):
            key = raw.decode() if isinstance(raw, bytes) else str(raw)
            if key.rsplit(":", 1)[-1] in wanted:
                found.append(key)
        return found


class SubjectIndex:
    """Reads and drops the index sets of one subject (what an erasure must find and delete).

    Args:
        client: A redis-py client.
    """

    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    def result_ids(self, tenant: str, subject: str) -> set[str]:
        """Request ids whose stored results named the subject (some may have expired since)."""
        return _decoded(self._client.smembers(results_index_key(tenant, subject)))  # type: ignore[arg-type]

    def digests(self, tenant: str, subject: str) -> set[str]:
        """Digests of images enrolled or verified for the subject."""
        return _decoded(self._client.smembers(digests_index_key(tenant, subject)))  # type: ignore[arg-type]

    def exists(self, tenant: str, subject: str) -> bool:
        """Whether either index set of the subject is still there."""
        keys = (results_index_key(tenant, subject), digests_index_key(tenant, subject))
        return bool(self._client.exists(*keys))

    def drop(self, tenant: str, subject: str) -> None:
        """Delete both index sets of the subject."""
        self._client.delete(results_index_key(tenant, subject), digests_index_key(tenant, subject))


def delete_results_naming(client: redis.Redis, tenant: str, subject: str, request_ids: Iterable[str]) -> int:
    """Delete the stored results among ``request_ids`` (of ``tenant``) that name ``subject``; how many.

    Results are checked before they are deleted: a request id reused since for a result that does not
    name the subject keeps its result (replay detection still needs it).
    """
    ids = sorted(set(request_ids))
    keys = [result_key(tenant, rid) for rid in ids]
    doomed = [
        key
        for key, raw in zip(keys, mget_bytes(client, keys) if keys else [], strict=True)
        if raw is not None and subject in subjects_named(result_from_json(raw))
    ]
    return int(client.delete(*doomed)) if doomed else 0  # type: ignore[arg-type]


def scan_results_naming(client: redis.Redis, tenant: str, subject: str, *, count: int = 1000) -> list[str]:
    """Request ids of every stored result of ``tenant`` that names ``subject`` (a SCAN: for checks)."""
    prefix = result_key(tenant, "")
    keys = [
        raw.decode() if isinstance(raw, bytes) else str(raw)
        for raw in client.scan_iter(match=f"{prefix}*", count=count)
    ]
    found: list[str] = []
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        for key, raw in zip(chunk, mget_bytes(client, chunk), strict=True):
            if raw is not None and subject in subjects_named(result_from_json(raw)):
                found.append(key.removeprefix(prefix))
    return found


def _decoded(members: Iterable[bytes | str]) -> set[str]:
    return {m.decode() if isinstance(m, bytes) else str(m) for m in members}
