"""Erasure of one (tenant, subject) from every store that holds something of it.

In this order, so that a crash part way leaves nothing that brings the subject back:

1. the erasure ledger (`services.lifecycle.ledger`): from now on a replayed enrol record of the subject
   is refused, whatever happens below;
2. tombstones in the enrolment log for every image id of the subject (from every collection, the
   digest index and a scan of the log): no re-index of any version can bring it back, and compaction
   then drops its images from the log;
3. its rows in every version's collection (registered versions, the active one, and every collection
   with this deployment's prefix), each followed by a bump of that collection's mirror generation for
   the tenant, so every replica reloads the tenant on its next batch;
4. stored results that name it (as the subject or as a candidate), found through the result index and
   a scan of the tenant's results;
5. cached embeddings of its images (digests from the index and the log) under every known version;
6. the index sets themselves.

Raw images on the images topic and the DLQ are not touched: they expire with the topics' retention, and
the ledger refuses them meanwhile. ``services.lifecycle.erasure_check`` proves, store by store, what is left.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import redis
from pymilvus import MilvusClient

from services.gallery.milvus_gallery import MilvusGallery
from services.gallery.mirror import RedisGenerations
from services.gallery.names import collection_name
from services.lifecycle.enrolment_log import EnrolmentLogReader
from services.lifecycle.ledger import RedisErasureLedger
from services.lifecycle.registry import ModelRegistry, RegistryKeys, live_version
from services.matching.ports import EnrolmentLog, SubjectKey
from services.results.store import (
    EmbeddingCache,
    SubjectIndex,
    delete_results_naming,
    scan_results_naming,
)
from twinstream.config import Settings
from twinstream.images.decode import image_digest
from twinstream.names import check_name, image_id


class ErasureStores(Protocol):
    """What an erasure reaches: `services.lifecycle.clients.LifecycleClients` for the CLI (with the log's
    reader, for the scan), `ReplicaStores` for a serving replica's deletes (no scan)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def redis(self) -> redis.Redis: ...

    @property
    def milvus(self) -> MilvusClient: ...

    @property
    def registry(self) -> ModelRegistry: ...

    @property
    def log(self) -> EnrolmentLog: ...

    @property
    def reader(self) -> EnrolmentLogReader: ...


@dataclass(frozen=True)
class ReplicaStores:
    """The stores a serving replica erases through: its own clients and log writer (no log reader)."""

    settings: Settings
    redis: redis.Redis
    milvus: MilvusClient
    log: EnrolmentLog

    @property
    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.redis, RegistryKeys.for_settings(self.settings))

    @property
    def reader(self) -> EnrolmentLogReader:
        raise RuntimeError("a replica's erasure does not scan the enrolment log (erase with scan_log=False)")


class SubjectEraser:
    """The matching pipeline's delete (`services.matching.ports.Eraser`): `erase_subject` for each key,
    from the indexes and every collection, without the slow scans of the log and the keyspace (which
    ``twinstream erase --verify`` adds)."""

    def __init__(self, stores: ErasureStores) -> None:
        self._stores = stores

    def erase(self, keys: Sequence[SubjectKey]) -> dict[SubjectKey, int]:
        counts = {}
        for tenant, subject in dict.fromkeys(keys):
            report = erase_subject(self._stores, tenant, subject, scan_log=False, scan_results=False)
            counts[(tenant, subject)] = sum(report.collections.values())
        return counts


@dataclass(frozen=True, slots=True)
class ErasureReport:
    """What an erasure removed, and the generations it moved (``collection → (before, after)``)."""

    tenant: str
    subject: str
    erased_at_ms: int
    collections: dict[str, int]
    generations: dict[str, tuple[int, int]]
    image_ids: tuple[str, ...]
    digests: tuple[str, ...]
    results_deleted: int
    embeddings_deleted: int


def known_versions(clients: ErasureStores) -> list[str]:
    """Registered versions, plus the live one (served before the registry knew it, perhaps)."""
    versions = {entry.version for entry in clients.registry.versions()}
    live = live_version(clients.redis, clients.registry.keys)
    return sorted(versions | ({live} if live else set()))


def target_collections(clients: ErasureStores) -> list[str]:
    """Every collection that may hold the subject: known versions' and any with this deployment's prefix."""
    prefix = clients.settings.milvus.collection_prefix
    names = {entry.collection for entry in clients.registry.versions()}
    names |= {collection_name(prefix, v) for v in known_versions(clients)}
    names |= {c for c in clients.milvus.list_collections() if c.startswith(f"{prefix}_")}
    return sorted(name for name in names if clients.milvus.has_collection(name))


def logged_images(reader: EnrolmentLogReader, tenant: str, subject: str) -> tuple[dict[str, str], set[str]]:
    """A scan of the whole log for one subject: every image id of it seen (→ image digest), and those live.

    Streams the log a batch at a time (memory stays at one batch), since it holds every enrolled image.
    """
    seen: dict[str, str] = {}
    live: set[str] = set()
    for batch in reader.batches():
        for event in batch.events:
            enrolment = event.enrolment
            if enrolment is None:
                live.discard(event.image_id)
            elif (enrolment.tenant, enrolment.subject) == (tenant, subject):
                seen[event.image_id] = image_digest(enrolment.image)
                live.add(event.image_id)
    return seen, live


def erase_subject(
    clients: ErasureStores,
    tenant: str,
    subject: str,
    *,
    now_ms: int | None = None,
    scan_log: bool = True,
    scan_results: bool = True,
) -> ErasureReport:
    """Erase ``subject`` of ``tenant`` everywhere (see the module docstring); idempotent.

    Args:
        clients: Connected clients of this deployment.
        tenant: The subject's tenant.
        subject: The subject to erase.
        now_ms: The erasure time recorded in the ledger (default: now).
        scan_log: Also read the whole enrolment log for the subject's image ids and digests (complete
            even where the gallery or the digest index missed an image; one pass over the log).
        scan_results: Also SCAN the tenant's stored results for ones naming the subject (complete even
            for results stored without the index; one pass over the keyspace).

    Raises:
        twinstream.contracts.InputError: If the tenant or subject is not a valid id.
        Exception: Whatever a store raises when it is down (nothing is half-forgotten: run it again).
    """
    check_name("tenant", tenant)
    check_name("subject", subject)
    erased_at = now_ms if now_ms is not None else int(time.time() * 1000)
    RedisErasureLedger.from_settings(clients.redis, clients.settings).record(tenant, subject, erased_at)
    galleries = [MilvusGallery(clients.milvus, name) for name in target_collections(clients)]
    ids, digests = _images_of(clients, galleries, tenant, subject, scan_log=scan_log)
    clients.log.tombstone(sorted(ids))  # before the deletes: a crash in between leaves no way back
    removed, generations = _delete_everywhere(clients, galleries, tenant, subject)
    index = SubjectIndex(clients.redis)
    named = index.result_ids(tenant, subject)
    if scan_results:  # results stored unindexed (before the index, or with it off) are found too
        named.update(scan_results_naming(clients.redis, tenant, subject))
    results = delete_results_naming(clients.redis, tenant, subject, named)
    cache = EmbeddingCache(clients.redis, clients.settings.redis.cache_ttl_s)
    embeddings = cache.delete_digests(digests, known_versions(clients))
    index.drop(tenant, subject)
    return ErasureReport(
        tenant, subject, erased_at, removed, generations, tuple(sorted(ids)), tuple(sorted(digests)),
        results, embeddings,
    )  # fmt: skip


def _images_of(
    clients: ErasureStores, galleries: list[MilvusGallery], tenant: str, subject: str, *, scan_log: bool
) -> tuple[set[str], set[str]]:
    """The subject's image ids and image digests, from the digest index, every collection and the log."""
    key = (tenant, subject)
    digests = SubjectIndex(clients.redis).digests(tenant, subject)
    ids = {image_id(tenant, subject, d) for d in digests}
    for gallery in galleries:
        ids.update(gallery.image_ids_of([key]).get(key, []))
    if scan_log:
        seen, _ = logged_images(clients.reader, tenant, subject)
        ids.update(seen)
        digests.update(seen.values())
    return ids, digests


def _delete_everywhere(
    clients: ErasureStores, galleries: list[MilvusGallery], tenant: str, subject: str
) -> tuple[dict[str, int], dict[str, tuple[int, int]]]:
    """Delete the subject's rows from each collection, then bump its tenant's mirror generation there."""
    key = (tenant, subject)
    removed: dict[str, int] = {}
    generations: dict[str, tuple[int, int]] = {}
    for gallery in galleries:
        counter = RedisGenerations(clients.redis, gallery.collection)
        before = counter.current([tenant])[tenant]
        removed[gallery.collection] = gallery.delete([key])[key]
        gallery.flush()
        generations[gallery.collection] = (before, counter.bump(tenant))
    return removed, generations
