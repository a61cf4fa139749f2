"""Two replicas' mirrors over one real Milvus collection and one real Redis stay coherent under any single
failure of a write: the generation bump before it, the Milvus write itself, or the bump after it.

Faults are injected by wrapping the real clients (`RedisGenerations`, `MilvusGallery`) so that one call
fails once; everything else is the real server answering.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import redis

from services.gallery.client import connect
from services.gallery.milvus_gallery import MilvusGallery
from services.gallery.mirror import MirroredGallery, RedisGenerations
from services.gallery.names import collection_name
from services.gallery.schema import ensure_collection
from services.matching.ports import Enrollment, SubjectKey
from twinstream.config import MilvusSettings
from twinstream.names import image_id

pytestmark = pytest.mark.integration
DIM = 8
TENANT = "class-7a"
GONE: SubjectKey = (TENANT, "gone")
KEPT: SubjectKey = (TENANT, "kept")


class InjectedFault(redis.ConnectionError):
    """What a Redis blip looks like to the caller."""


@dataclass
class Fault:
    """Which single call fails: the first bump before the Milvus write, or the first one after it."""

    bump_before_write: bool = False
    bump_after_write: bool = False
    write_reply: bool = False  # Milvus applies the delete, but its reply is lost
    written: bool = False  # set by the store once the real write went through

    def take(self, name: str) -> bool:
        if getattr(self, name):
            setattr(self, name, False)
            return True
        return False


@dataclass
class FlakyGenerations:
    """The real Redis counters; a bump raises once where the fault says so."""

    real: RedisGenerations
    fault: Fault

    def current(self, tenants: Sequence[str]) -> dict[str, int]:
        return self.real.current(tenants)

    def bump(self, tenant: str) -> int:
        if self.fault.take("bump_after_write" if self.fault.written else "bump_before_write"):
            raise InjectedFault("injected: connection reset while bumping the generation")
        return self.real.bump(tenant)


@dataclass
class HookedStore:
    """The real Milvus gallery; ``before_write`` runs before each write, and the fault is told of it."""

    real: MilvusGallery
    fault: Fault
    before_write: Callable[[], object] = lambda: None
    deleted: list[int] = field(default_factory=list)

    def __getattr__(self, name: str) -> Any:  # search, tenant_rows, …: the real gallery's
        return getattr(self.real, name)

    def delete(self, keys: Sequence[SubjectKey]) -> dict[SubjectKey, int]:
        self.before_write()
        counts = self.real.delete(keys)
        self.fault.written = True
        self.deleted.append(sum(counts.values()))
        if self.fault.take("write_reply"):
            raise InjectedFault("injected: the reply of a delete that Milvus applied was lost")
        return counts

    def enroll(self, items: Sequence[Enrollment]) -> list[bool]:
        self.before_write()
        fresh = self.real.enroll(items)
        self.fault.written = True
        return fresh


@pytest.fixture
def store(milvus_uri: str, unique_name: str) -> Iterator[MilvusGallery]:
    client = connect(milvus_uri)
    name = collection_name("itmirror", unique_name)
    ensure_collection(client, name, DIM, MilvusSettings(index_type="FLAT"))
    gallery = MilvusGallery(client, name)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(4, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    gallery.enroll(
        [
            Enrollment(image_id(TENANT, subject, str(i)), TENANT, subject, vectors[i])
            for i, subject in enumerate(["gone", "gone", "kept", "kept"])
        ]
    )
    gallery.flush()
    yield gallery
    client.drop_collection(name)


@pytest.fixture
def generations(redis_url: str, store: MilvusGallery) -> RedisGenerations:
    return RedisGenerations(redis.Redis.from_url(redis_url), store.collection)


def _serves(mirror: MirroredGallery, key: SubjectKey) -> bool:
    """Whether verify on this replica would find the subject (it reads the mirror's copy)."""
    return key in mirror.vectors_of([key, KEPT])


def _two_replicas(
    store: MilvusGallery, generations: RedisGenerations, fault: Fault
) -> tuple[MirroredGallery, HookedStore, MirroredGallery]:
    hooked = HookedStore(store, fault)
    a, b = MirroredGallery(hooked, FlakyGenerations(generations, fault)), MirroredGallery(store, generations)
    assert _serves(a, GONE) and _serves(b, GONE)  # both replicas hold a copy with the subject
    return a, hooked, b


def test_a_failed_bump_after_the_delete_leaves_no_replica_serving_the_deleted_subject(
    store: MilvusGallery, generations: RedisGenerations
) -> None:
    a, hooked, b = _two_replicas(store, generations, Fault(bump_after_write=True))
    with pytest.raises(InjectedFault):
        a.delete([GONE])
    assert hooked.deleted == [2]  # Milvus did delete both images
    assert not _serves(b, GONE) and _serves(b, KEPT)
    assert not _serves(a, GONE) and _serves(a, KEPT)
    # The client retries: nothing is left to delete (HTTP answers 404), and still nobody serves it.
    assert a.delete([GONE]) == {GONE: 0}
    assert not _serves(a, GONE) and not _serves(b, GONE)


def test_a_failed_bump_before_the_delete_writes_nothing_and_the_retry_deletes(
    store: MilvusGallery, generations: RedisGenerations
) -> None:
    a, hooked, b = _two_replicas(store, generations, Fault(bump_before_write=True))
    try:
        a.delete([GONE])
    except InjectedFault:
        assert hooked.deleted == []  # never reached Milvus: every copy is still right to serve it
        assert _serves(a, GONE) and _serves(b, GONE)
        assert a.delete([GONE]) == {GONE: 2}
    assert not _serves(a, GONE) and not _serves(b, GONE)


def test_a_delete_whose_reply_is_lost_is_not_served_afterwards(
    store: MilvusGallery, generations: RedisGenerations
) -> None:
    a, _, b = _two_replicas(store, generations, Fault(write_reply=True))
    with pytest.raises(InjectedFault):
        a.delete([GONE])
    assert not _serves(a, GONE) and not _serves(b, GONE)


def test_a_replica_that_reloads_during_the_write_is_corrected_by_the_writers_next_call(
    store: MilvusGallery, generations: RedisGenerations
) -> None:
    a, hooked, b = _two_replicas(store, generations, Fault(bump_after_write=True))
    # b reads between a's first bump and the Milvus delete (it still sees the subject), and a's
    # second bump, the one that would tell b to reload again, fails.
    hooked.before_write = lambda: _serves(b, GONE)
    with pytest.raises(InjectedFault):
        a.delete([GONE])
    hooked.before_write = lambda: None
    a.search(TENANT, np.ones((1, DIM), np.float32), 1)  # any later call of a announces the write again
    assert not _serves(b, GONE) and _serves(b, KEPT)


def test_an_enrolment_whose_bump_failed_reaches_the_other_replica(
    store: MilvusGallery, generations: RedisGenerations
) -> None:
    a, _, b = _two_replicas(store, generations, Fault(bump_after_write=True))
    vector = np.full(DIM, 1 / np.sqrt(DIM), np.float32)
    item = Enrollment(image_id(TENANT, "new", "x"), TENANT, "new", vector)
    with pytest.raises(InjectedFault):
        a.enroll([item])
    store.flush()
    assert _serves(b, (TENANT, "new")) and _serves(a, (TENANT, "new"))
    assert a.enroll([item]) == [False]  # the retry finds it stored: one row, never two
    assert len(b.vectors_of([(TENANT, "new")])[(TENANT, "new")]) == 1
