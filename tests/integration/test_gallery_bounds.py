"""Limits that callers must not be able to push past, against a real milvus-lite server.

A subject larger than Milvus' 16,384-row result window is still read whole (and does not crowd the other
subjects of the batch out), a replica's mirror holds a bounded number of tenants however many unknown
ones are asked for, and the gallery-size tracker drops a tenant it cannot count instead of retrying it
with a traceback forever.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import pytest
import redis
from prometheus_client import CollectorRegistry
from pymilvus import MilvusClient

from services.gallery.client import connect
from services.gallery.milvus_gallery import QUERY_LIMIT, MilvusGallery
from services.gallery.mirror import MirroredGallery, RedisGenerations
from services.gallery.names import collection_name
from services.gallery.schema import ensure_collection
from twinstream.config import MilvusSettings
from twinstream.contracts import Decision, MatchResult, Op
from twinstream.metrics import PipelineMetrics, PrometheusFactory
from twinstream.metrics.gallery_size import GallerySizeTracker

pytestmark = pytest.mark.integration
DIM = 4


@pytest.fixture
def milvus(milvus_uri: str, unique_name: str) -> Iterator[tuple[MilvusClient, str]]:
    client = connect(milvus_uri)
    name = collection_name("itbounds", unique_name)
    ensure_collection(client, name, DIM, MilvusSettings(index_type="FLAT"))
    yield client, name
    client.drop_collection(name)


def _insert(client: MilvusClient, collection: str, tenant: str, subject: str, n: int, tag: str) -> None:
    """Rows straight into Milvus (enrol's duplicate check would dominate this test's time)."""
    rng = np.random.default_rng(len(tag))
    vectors = rng.normal(size=(n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    for start in range(0, n, 5000):
        rows = [
            {"id": f"{tag}{i:08d}", "tenant": tenant, "subject": subject, "vector": vectors[i].tolist(),
             "enrolled_at": 0}
            for i in range(start, min(n, start + 5000))
        ]  # fmt: skip
        client.insert(collection, rows)
    client.flush(collection)


def test_vectors_of_reads_a_subject_beyond_the_result_window_and_keeps_the_others(
    milvus: tuple[MilvusClient, str],
) -> None:
    client, collection = milvus
    _insert(client, collection, "t", "crowd", QUERY_LIMIT + 5, "c")
    _insert(client, collection, "t", "solo", 2, "s")
    gallery = MilvusGallery(client, collection)
    found = gallery.vectors_of([("t", "crowd"), ("t", "solo")])
    assert len(found[("t", "crowd")]) == QUERY_LIMIT + 5
    assert len(found[("t", "solo")]) == 2  # was cut out of the window: verify said unknown-subject


def test_a_mirror_holds_a_bounded_number_of_tenants_however_many_unknown_ones_are_asked(
    milvus: tuple[MilvusClient, str], redis_url: str
) -> None:
    client, collection = milvus
    _insert(client, collection, "known", "ann", 3, "k")
    store = MilvusGallery(client, collection)
    mirror = MirroredGallery(
        store, RedisGenerations(redis.Redis.from_url(redis_url), collection), max_tenants=50
    )
    query = np.ones((1, DIM), np.float32) / 2
    assert mirror.search("known", query, 1)[0][0].subject == "ann"
    for i in range(300):
        assert mirror.search(f"unknown{i}", query, 1) == [[]]
        assert mirror.held_tenants <= 50
    assert mirror.search("known", query, 1)[0][0].subject == "ann"  # dropped, then loaded again


def test_the_size_tracker_drops_a_tenant_milvus_cannot_be_asked_about(
    milvus: tuple[MilvusClient, str], caplog: pytest.LogCaptureFixture
) -> None:
    client, collection = milvus
    _insert(client, collection, "good", "ann", 2, "g")
    registry = CollectorRegistry()
    tracker = GallerySizeTracker(
        PipelineMetrics.create(PrometheusFactory(registry)), MilvusGallery(client, collection).subjects
    )
    tracker.stop()  # this test runs the rounds itself
    seen = [MatchResult(f"r{t!r}", Op.IDENTIFY, Decision.UNKNOWN, tenant=t) for t in ("good", "evil\n")]
    tracker.touch(seen)
    with caplog.at_level(logging.WARNING, logger="twinstream.metrics.gallery_size"):
        for _ in range(5):
            tracker.refresh(["good", "evil\n"])
            tracker.touch(seen)
    (warning,) = [r for r in caplog.records if r.name == "twinstream.metrics.gallery_size"]
    assert "evil" in warning.getMessage() and warning.exc_info is not None  # once, with its traceback
    assert tracker.pending == 0
    assert registry.get_sample_value("twinstream_gallery_vectors", {"tenant": "good"}) == 2
