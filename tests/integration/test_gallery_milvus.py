"""The Milvus gallery against a real milvus-lite server: idempotent enrol, tenant isolation, exact delete."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from services.gallery.client import connect
from services.gallery.milvus_gallery import MilvusGallery
from services.gallery.names import collection_name
from services.gallery.schema import ensure_collection
from services.matching.ports import Enrollment
from twinstream.config import MilvusSettings
from twinstream.names import image_id

pytestmark = pytest.mark.integration
DIM = 8


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture
def gallery(milvus_uri: str, unique_name: str) -> Iterator[MilvusGallery]:
    client = connect(milvus_uri)
    name = collection_name("itgal", unique_name)
    ensure_collection(client, name, DIM, MilvusSettings(index_type="HNSW"))
    yield MilvusGallery(client, name, {"ef": 64})
    client.drop_collection(name)


def _enrol(gallery: MilvusGallery, tenant: str, subject: str, vectors: np.ndarray, tag: str) -> list[bool]:
    items = [
        Enrollment(image_id(tenant, subject, f"{tag}{i}"), tenant, subject, vec)
        for i, vec in enumerate(vectors)
    ]
    return gallery.enroll(items)


def test_enrolling_the_same_image_twice_is_a_duplicate_and_stores_one_row(gallery: MilvusGallery) -> None:
    vec = _unit(np.random.default_rng(0), 1)
    assert _enrol(gallery, "a", "s", vec, "x") == [True]
    assert _enrol(gallery, "a", "s", vec, "x") == [False]
    same_batch = [Enrollment(image_id("a", "s", "y"), "a", "s", vec[0])] * 2
    assert gallery.enroll(same_batch) == [True, False]
    assert gallery.subjects("a") == {"s": 2}


def test_tenants_never_see_each_others_vectors(gallery: MilvusGallery) -> None:
    rng = np.random.default_rng(1)
    vecs = _unit(rng, 3)
    _enrol(gallery, "a", "shared", vecs[:1], "x")
    _enrol(gallery, "b", "shared", vecs[1:2], "x")
    _enrol(gallery, "b", "only-b", vecs[2:3], "x")
    hits = gallery.search("a", vecs, top_k=5)
    assert all(h.subject == "shared" for row in hits for h in row)
    assert hits[0][0].distance == pytest.approx(0.0, abs=1e-3)  # a's own vector
    assert hits[1][0].distance > 1e-3  # b's identical vector is invisible to a
    fetched = gallery.vectors_of([("a", "shared"), ("a", "only-b")])
    assert set(fetched) == {("a", "shared")}
    np.testing.assert_allclose(fetched[("a", "shared")][0], vecs[0], atol=1e-6)
    assert gallery.subjects("a") == {"shared": 1}
    assert gallery.subjects("b") == {"only-b": 1, "shared": 1}


def test_delete_removes_every_vector_of_the_subject_and_only_those(gallery: MilvusGallery) -> None:
    rng = np.random.default_rng(2)
    _enrol(gallery, "a", "gone", _unit(rng, 5), "g")
    _enrol(gallery, "a", "kept", _unit(rng, 3), "k")
    _enrol(gallery, "b", "gone", _unit(rng, 2), "g")
    assert gallery.delete([("a", "gone")]) == {("a", "gone"): 5}
    assert gallery.subjects("a") == {"kept": 3}
    assert gallery.subjects("b") == {"gone": 2}
    assert gallery.delete([("a", "gone")]) == {("a", "gone"): 0}


def test_search_returns_best_image_per_subject_in_one_batched_call(gallery: MilvusGallery) -> None:
    rng = np.random.default_rng(3)
    vecs = _unit(rng, 6)
    _enrol(gallery, "t", "p", vecs[:3], "p")
    _enrol(gallery, "t", "q", vecs[3:], "q")
    gallery.flush()
    hits = gallery.search("t", vecs, top_k=2)
    assert len(hits) == 6
    for i, row in enumerate(hits):
        assert row[0].subject == ("p" if i < 3 else "q")
        assert len({h.subject for h in row}) == len(row) == 2
        assert row[0].distance <= row[1].distance


def test_search_widens_its_window_when_one_subject_crowds_the_nearest_images(gallery: MilvusGallery) -> None:
    rng = np.random.default_rng(4)
    query = _unit(rng, 1)
    crowd = query + 0.05 * rng.normal(size=(20, DIM)).astype(np.float32)  # 20 images nearer than "far"
    crowd /= np.linalg.norm(crowd, axis=1, keepdims=True)
    far = -query  # the farthest point: only reachable past the crowd
    _enrol(gallery, "t", "crowd", crowd, "c")
    _enrol(gallery, "t", "far", far, "f")
    gallery.flush()
    narrow = MilvusGallery(gallery._client, gallery.collection, {"ef": 64}, oversample=1)
    (row,) = narrow.search("t", query, top_k=2)  # first window: 2 images, both "crowd"
    assert [h.subject for h in row] == ["crowd", "far"]
    assert row[0].distance == pytest.approx(float(np.linalg.norm(crowd - query, axis=1).min()), abs=1e-4)
    assert row[1].distance == pytest.approx(2.0, abs=1e-3)


def test_search_ranks_subjects_as_brute_force_grouping_does(gallery: MilvusGallery) -> None:
    rng = np.random.default_rng(5)
    vecs = _unit(rng, 60)
    subjects = [f"s{i % 12}" for i in range(60)]  # 12 subjects × 5 images
    for i, (vec, subject) in enumerate(zip(vecs, subjects, strict=True)):
        _enrol(gallery, "t", subject, vec[None], f"v{i}")
    gallery.flush()
    queries = _unit(rng, 16)
    hits = gallery.search("t", queries, top_k=4)
    for query, row in zip(queries, hits, strict=True):
        dist = np.linalg.norm(vecs - query, axis=1)
        best = {s: min(d for d, t in zip(dist, subjects, strict=True) if t == s) for s in set(subjects)}
        expected = sorted(best, key=best.__getitem__)[:4]
        assert [h.subject for h in row] == expected
        np.testing.assert_allclose([h.distance for h in row], [best[s] for s in expected], atol=1e-4)


def test_two_replicas_mirrors_agree_with_milvus_through_redis_generations(
    gallery: MilvusGallery, redis_url: str
) -> None:
    import redis

    from services.gallery.mirror import MirroredGallery, RedisGenerations

    generations = RedisGenerations(redis.Redis.from_url(redis_url), gallery.collection)
    a, b = MirroredGallery(gallery, generations), MirroredGallery(gallery, generations)
    rng = np.random.default_rng(6)
    vecs = _unit(rng, 12)
    items = [Enrollment(image_id("t", f"s{i % 4}", f"m{i}"), "t", f"s{i % 4}", v) for i, v in enumerate(vecs)]
    assert a.enroll(items[:8]) == [True] * 8
    gallery.flush()
    queries = _unit(rng, 6)
    for got, expected in zip(b.search("t", queries, 3), gallery.search("t", queries, 3), strict=True):
        assert [h.subject for h in got] == [h.subject for h in expected]  # b loaded a's rows from Milvus
        np.testing.assert_allclose([h.distance for h in got], [h.distance for h in expected], atol=1e-4)
    assert b.enroll(items[8:]) == [True] * 4  # b writes; a must see it on its next read
    assert len(a.vectors_of([("t", "s0")])[("t", "s0")]) == 3
    assert a.delete([("t", "s1")]) == {("t", "s1"): 3}
    assert "s1" not in {h.subject for row in b.search("t", queries, 4) for h in row}
    assert b.search("t", vecs[:1], 1)[0][0].distance == pytest.approx(0.0, abs=1e-3)


def test_reindex_writes_upsert_by_id_delete_by_id_and_count_exactly(gallery: MilvusGallery) -> None:
    rng = np.random.default_rng(3)
    vecs = _unit(rng, 4)
    items = [Enrollment(image_id("a", f"s{i % 2}", f"d{i}"), "a", f"s{i % 2}", vecs[i]) for i in range(3)]
    items.append(Enrollment(image_id("b", "s0", "d3"), "b", "s0", vecs[3]))
    gallery.upsert(items, [1, 2, 3, 4])
    gallery.upsert(items[:2], [5, 6])  # a resumed re-index writes the same ids again: still one row each
    gallery.flush()
    assert gallery.count() == 4
    assert gallery.count([("a", "s0")]) == 2
    assert gallery.all_ids() == {item.image_id for item in items}
    ids = gallery.image_ids_of([("a", "s0"), ("a", "nobody")])
    assert {k: sorted(v) for k, v in ids.items()} == {
        ("a", "s0"): sorted([items[0].image_id, items[2].image_id])
    }
    assert gallery.delete_ids([items[0].image_id, items[3].image_id, "0" * 32]) == {"a": 1, "b": 1}
    assert gallery.count() == 2
