"""Erasure against real Kafka, Milvus and Redis: `twinstream erase --verify` finds nothing left anywhere."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest
import redis
from rich.console import Console

from cli.commands.models import erase_command
from services.gallery.milvus_gallery import MilvusGallery
from services.gallery.mirror import RedisGenerations
from services.lifecycle.clients import lifecycle_clients
from services.lifecycle.enrolment_log import compacted_state, records_of
from services.lifecycle.erasure import erase_subject
from services.lifecycle.erasure_check import verify_erasure
from services.lifecycle.ledger import RedisErasureLedger, refusals
from services.lifecycle.reindex import reindex
from services.matching.ports import LoggedEnrolment
from services.results.store import EmbeddingCache, RedisResultStore, SubjectIndex
from tests.support.lifecycle import (
    FAST_COMPACTION,
    digit_images,
    enrolment,
    lifecycle_settings,
    log_writer,
    wait_until,
)
from twinstream.config import Settings
from twinstream.contracts import Candidate, Decision, ImageRequest, MatchResult, Op, SourceRef
from twinstream.images.decode import image_digest
from twinstream.model.artifact import load_artifact

pytestmark = pytest.mark.system


def _stored_traces(
    settings: Settings,
    rds: redis.Redis,
    tenant: str,
    tag: str,
    alice: list[LoggedEnrolment],
    versions: list[str],
) -> tuple[RedisResultStore, EmbeddingCache, list[str]]:
    """Results naming alice (as subject, as a candidate) and one that does not; her cached embeddings."""
    results = RedisResultStore(rds, settings.redis.result_ttl_s)
    named = (Candidate("bob", 0.1, 0.9), Candidate("alice", 0.6, 0.1))
    results.put_many(
        [
            MatchResult(f"{tag}-e", Op.ENROLL, Decision.ENROLLED, tenant=tenant, subject="alice"),
            MatchResult(
                f"{tag}-i", Op.IDENTIFY, Decision.MATCH, tenant=tenant, subject="bob", candidates=named
            ),
            MatchResult(f"{tag}-b", Op.VERIFY, Decision.MATCH, tenant=tenant, subject="bob"),
        ]
    )
    cache = EmbeddingCache(rds, settings.redis.cache_ttl_s)
    digests = [image_digest(e.image) for e in alice]
    for version in versions:
        cache.put_many(version, digests, np.ones((len(digests), 32), dtype=np.float32))
    cache.index_subjects([(tenant, "alice", digest) for digest in digests[:1]])  # indexed or not: found
    return results, cache, digests


def test_an_erased_subject_is_gone_from_every_store_and_the_log_and_cannot_be_replayed_back(
    stack_settings: Settings,
    unique_name: str,
    kafka_bootstrap: str,
    milvus_uri: str,
    redis_url: str,
    model_dirs: tuple[Path, Path],
) -> None:
    settings = lifecycle_settings(stack_settings, unique_name, partitions=1, **FAST_COMPACTION)
    tenant, other_tenant = unique_name, f"{unique_name}-b"
    images = [png for _, png in digit_images(8, seed=7)]
    alice = [enrolment(tenant, "alice", png) for png in images[:3]]
    kept = [enrolment(tenant, "bob", images[3]), enrolment(other_tenant, "alice", images[4])]
    writer = log_writer(settings)
    writer.append(alice + kept)
    versions = [load_artifact(d).manifest.version for d in model_dirs]
    for model in model_dirs:  # alice is in both versions' collections
        reindex(settings, model)

    with lifecycle_clients(settings) as clients:
        rds = clients.redis
        results, cache, digests = _stored_traces(settings, rds, tenant, unique_name, alice, versions)
        collections = {
            c: MilvusGallery(clients.milvus, c) for c in (e.collection for e in clients.registry.versions())
        }
        assert all(g.count([(tenant, "alice")]) == 3 for g in collections.values()) and len(collections) == 2

        out = Console(record=True, width=200, file=io.StringIO())
        code = erase_command(
            settings, out, tenant, "alice", verify=True, url="http://127.0.0.1:9", api_key=None
        )
        text = out.export_text()
        assert code == 0, text
        assert "LEFT" not in text and text.count("clean") >= 2 * len(collections) + 4

        for gallery in collections.values():  # the subject only: bob and the other tenant's alice stay
            assert gallery.count([(tenant, "alice")]) == 0
            assert gallery.count([(tenant, "bob"), (other_tenant, "alice")]) == 2
        assert results.get(tenant, f"{unique_name}-b") is not None
        assert results.get_many([(tenant, f"{unique_name}-e"), (tenant, f"{unique_name}-i")]) == [None, None]
        assert all(v is None for version in versions for v in cache.get_many(version, digests))
        assert not SubjectIndex(rds).exists(tenant, "alice")

        # A replay of the images topic brings the old enrolment records back: the ledger refuses them.
        erased = RedisErasureLedger.from_settings(rds, settings).erased_before([(tenant, "alice")])
        before = int(time.time() * 1000) - 60_000
        replayed = ImageRequest(
            "r", Op.ENROLL, images[0], tenant, "alice", source=SourceRef("t", 0, 1, before)
        )
        fresh = ImageRequest(
            "n", Op.ENROLL, images[0], tenant, "alice", source=SourceRef("t", 0, 2, before + 10**9)
        )
        assert refusals([replayed, fresh], erased, now_ms=before) == [True, False]

        # After compaction the log holds no record of alice's images, not even the tombstones.
        filler = enrolment(tenant, "filler", images[5])

        def compacted() -> bool:
            writer.append([filler])
            return records_of(clients.reader, [e.image_id for e in alice]) == 0

        wait_until(compacted, deadline_s=120, what="the log compacted alice away", every_s=1)
        assert {e.subject for e in compacted_state(clients.reader).values()} == {"bob", "alice", "filler"}
        report = erase_subject(clients, tenant, "alice")  # again: idempotent, nothing left to remove
        assert sum(report.collections.values()) == 0
        checks = {c.store: c for c in verify_erasure(clients, report)}
        assert all(c.ok for c in checks.values())
        assert "no record of its images left" in checks["enrolment log"].detail
        gens = RedisGenerations(rds, next(iter(collections))).current([tenant])[tenant]
        assert gens >= 2  # each erasure bumped the tenant's generation in every collection
    writer.close()
