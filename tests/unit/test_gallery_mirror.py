"""The in-memory gallery mirror: exact answers, write-through, coherence by generation, size limits."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from services.gallery.mirror import MirroredGallery
from services.matching.ports import Enrollment, Hit, SubjectKey

DIM = 8


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


class Store:
    """In-memory stand-in for the Milvus gallery (unit tests only; the integration test uses Milvus)."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[str, str, np.ndarray]] = {}
        self.searches = 0

    def enroll(self, items: Sequence[Enrollment]) -> list[bool]:
        fresh = []
        for item in items:
            fresh.append(item.image_id not in self.rows)
            self.rows.setdefault(item.image_id, (item.tenant, item.subject, item.vector))
        return fresh

    def vectors_of(self, keys: Sequence[SubjectKey]) -> dict[SubjectKey, np.ndarray]:
        out: dict[SubjectKey, list[np.ndarray]] = {}
        for tenant, subject, vec in self.rows.values():
            if (tenant, subject) in keys:
                out.setdefault((tenant, subject), []).append(vec)
        return {k: np.stack(v) for k, v in out.items()}

    def search(self, tenant: str, vectors: np.ndarray, top_k: int) -> list[list[Hit]]:
        self.searches += 1
        return [brute_force(self, tenant, q, top_k) for q in vectors]

    def delete(self, keys: Sequence[SubjectKey]) -> dict[SubjectKey, int]:
        gone = [i for i, (t, s, _) in self.rows.items() if (t, s) in keys]
        counts = dict.fromkeys(keys, 0)
        for i in gone:
            t, s, _ = self.rows.pop(i)
            counts[(t, s)] += 1
        return counts

    def subjects(self, tenant: str) -> dict[str, int]:
        return {}

    def flush(self) -> None:
        pass

    def tenant_rows(self, tenant: str, limit: int) -> list[tuple[str, str, np.ndarray]]:
        return [(i, s, v) for i, (t, s, v) in self.rows.items() if t == tenant][:limit]


class Counters:
    def __init__(self) -> None:
        self.values: dict[str, int] = {}

    def current(self, tenants: Sequence[str]) -> dict[str, int]:
        return {t: self.values.get(t, 0) for t in tenants}

    def bump(self, tenant: str) -> int:
        self.values[tenant] = self.values.get(tenant, 0) + 1
        return self.values[tenant]


def brute_force(store: Store, tenant: str, query: np.ndarray, top_k: int) -> list[Hit]:
    best: dict[str, float] = {}
    for t, s, v in store.rows.values():
        if t == tenant:
            best[s] = min(best.get(s, 9.0), float(np.linalg.norm(v - query)))
    return [Hit(s, d) for s, d in sorted(best.items(), key=lambda kv: kv[1])[:top_k]]


def _enrol(gallery: MirroredGallery, tenant: str, subjects: list[str], vectors: np.ndarray) -> list[bool]:
    return gallery.enroll(
        [
            Enrollment(f"{tenant}-{s}-{i}", tenant, s, v)
            for i, (s, v) in enumerate(zip(subjects, vectors, strict=True))
        ]
    )


def _same(got: list[Hit], expected: list[Hit]) -> None:
    assert [h.subject for h in got] == [h.subject for h in expected]
    np.testing.assert_allclose([h.distance for h in got], [h.distance for h in expected], atol=1e-4)


def test_identify_from_the_copy_equals_brute_force_grouping_by_subject() -> None:
    rng = np.random.default_rng(0)
    store, counters = Store(), Counters()
    mirror = MirroredGallery(store, counters)
    _enrol(mirror, "t", [f"s{i % 9}" for i in range(40)], _unit(rng, 40))
    _enrol(mirror, "other", ["x"], _unit(rng, 1))
    queries = _unit(rng, 12)
    for top_k in (1, 4, 50):  # 50 > the 9 subjects: all of them, nearest first
        for query, row in zip(queries, mirror.search("t", queries, top_k), strict=True):
            _same(row, brute_force(store, "t", query, top_k))
    _enrol(mirror, "solo", [f"u{i}" for i in range(15)], _unit(rng, 15))  # one image per subject
    for row, query in zip(mirror.search("solo", queries, 4), queries, strict=True):
        _same(row, brute_force(store, "solo", query, 4))
    assert store.searches == 0  # answered from memory
    assert mirror.search("empty", queries[:2], 3) == [[], []]


def test_own_writes_update_the_copy_in_place_and_foreign_writes_reload_it() -> None:
    rng = np.random.default_rng(1)
    store, counters = Store(), Counters()
    a, b = MirroredGallery(store, counters), MirroredGallery(store, counters)
    vecs = _unit(rng, 3)
    _enrol(a, "t", ["ann"], vecs[:1])
    assert a.search("t", vecs[:1], 1)[0][0].subject == "ann"
    assert b.search("t", vecs[:1], 1)[0][0].subject == "ann"
    loads = a.reloads
    _enrol(a, "t", ["bob"], vecs[1:2])  # a's own write: copy updated, no reload
    assert a.search("t", vecs[1:2], 1)[0][0].subject == "bob" and a.reloads == loads
    assert b.search("t", vecs[1:2], 1)[0][0].subject == "bob"  # b saw the generation move and reloaded
    b.delete([("t", "bob")])
    assert [h.subject for h in a.search("t", vecs[1:2], 5)[0]] == ["ann"]
    assert ("t", "bob") not in a.vectors_of([("t", "bob"), ("t", "ann")])
    np.testing.assert_allclose(b.vectors_of([("t", "ann")])[("t", "ann")], vecs[:1])


def test_a_duplicate_enrolment_adds_nothing_to_the_copy() -> None:
    rng = np.random.default_rng(2)
    store, counters = Store(), Counters()
    mirror = MirroredGallery(store, counters)
    vec = _unit(rng, 1)
    assert _enrol(mirror, "t", ["ann"], vec) == [True]
    mirror.search("t", vec, 1)
    assert _enrol(mirror, "t", ["ann"], vec) == [False]
    assert len(mirror.vectors_of([("t", "ann")])[("t", "ann")]) == 1


def test_tenants_over_the_size_limit_are_searched_in_the_store() -> None:
    rng = np.random.default_rng(3)
    store, counters = Store(), Counters()
    mirror = MirroredGallery(store, counters, max_vectors=5)
    _enrol(mirror, "big", [f"s{i}" for i in range(6)], _unit(rng, 6))
    _enrol(mirror, "small", ["s"], _unit(rng, 1))
    query = _unit(rng, 1)
    _same(mirror.search("big", query, 3)[0], brute_force(store, "big", query, 3))
    assert store.searches == 1
    mirror.search("small", query, 3)
    assert store.searches == 1
    loads = mirror.reloads
    _enrol(mirror, "big", ["s7"], _unit(rng, 1))  # a big tenant's writes do not make it re-read
    mirror.search("big", query, 3)
    assert mirror.reloads == loads and store.searches == 2


@pytest.mark.parametrize("max_vectors", [0, 100])
def test_the_mirror_can_be_turned_off_and_gives_the_same_answers(max_vectors: int) -> None:
    rng = np.random.default_rng(4)
    store = Store()
    mirror = MirroredGallery(store, Counters(), max_vectors=max_vectors)
    _enrol(mirror, "t", [f"s{i % 3}" for i in range(7)], _unit(rng, 7))
    query = _unit(rng, 1)
    _same(mirror.search("t", query, 2)[0], brute_force(store, "t", query, 2))
    assert store.searches == (1 if max_vectors == 0 else 0)


def test_least_recently_used_tenants_are_dropped_beyond_the_total() -> None:
    rng = np.random.default_rng(5)
    store, counters = Store(), Counters()
    mirror = MirroredGallery(store, counters, max_total=6)
    for tenant in ("a", "b", "c"):
        _enrol(mirror, tenant, ["x", "y", "z"], _unit(rng, 3))
        mirror.search(tenant, _unit(rng, 1), 1)
    loads = mirror.reloads
    mirror.search("c", _unit(rng, 1), 1)  # still held
    assert mirror.reloads == loads
    mirror.search("a", _unit(rng, 1), 1)  # dropped earlier: loaded again
    assert mirror.reloads == loads + 1


def test_an_old_copy_is_reloaded_even_if_no_generation_moved() -> None:
    rng = np.random.default_rng(6)
    store = Store()
    mirror = MirroredGallery(store, Counters(), max_age_s=0.0)
    _enrol(mirror, "t", ["ann"], _unit(rng, 1))
    store.rows["sneaky"] = ("t", "bob", _unit(rng, 1)[0])  # written behind the pipeline's back
    assert {h.subject for h in mirror.search("t", _unit(rng, 1), 5)[0]} == {"ann", "bob"}
