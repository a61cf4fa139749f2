"""An in-memory mirror of small tenants' vectors, so identify and verify skip the Milvus round trip.

Milvus stays the store and the source of truth: every write goes to it first. Each replica keeps an
exact copy of the tenants it has served (up to ``max_vectors`` per tenant, ``max_total`` in all, least
recently used evicted) and answers identify (exact nearest subjects) and verify (the subject's vectors)
from it. Why: a milvus-lite search costs ~0.2 ms per query at ``limit`` 5 and ~1.1 ms at 40 on this
machine, more than the tower's forward pass of a small image (bench/stream.py); a (batch × gallery)
matrix product costs microseconds.

Coherence across replicas: every write bumps a per-tenant generation counter in Redis after Milvus
acknowledged it. Each batch reads the generations of its tenants in one round trip and reloads a tenant
whose generation moved on since it was copied. A replica's own writes update its copy in place when no
other replica wrote in between, so an enrol-heavy stream does not reload. A reader can lag a writer by
at most one batch (the write is in Milvus before the generation moves), which is what "at least once,
effects exactly once" needs: writes are never lost, only seen a batch later.

Tenants larger than ``max_vectors`` are served by Milvus' own (approximate, indexed) search. A copy is
also reloaded after ``max_age_s``, a safety net for writes that bypassed the pipeline or a Redis that
restarted without its counters.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import redis

from services.gallery.milvus_gallery import cosine_to_euclidean
from services.matching.ports import Enrollment, Gallery, Hit, SubjectKey

#: How old Milvus' count of a tenant too large to copy may be: open-set thresholds move with log N, so a
#: few seconds of enrolments change them by nothing measurable, and a count query costs tens of ms.
_COUNT_MAX_AGE_S = 5.0


class GalleryStore(Gallery, Protocol):
    """What the mirror needs from the store behind it: a gallery that can hand over a whole tenant."""

    def tenant_rows(self, tenant: str, limit: int) -> list[tuple[str, str, np.ndarray]]:
        """Up to ``limit`` (image id, subject, vector) rows of one tenant."""
        ...

    def image_ids_of(self, keys: Sequence[SubjectKey]) -> dict[SubjectKey, list[str]]:
        """The image ids enrolled for each (tenant, subject)."""
        ...


class Generations(Protocol):
    """Per-tenant write counters shared by every replica (Redis in production)."""

    def current(self, tenants: Sequence[str]) -> dict[str, int]:
        """The generation of each tenant (0 for one never written), in one round trip."""
        ...

    def bump(self, tenant: str) -> int:
        """Advance a tenant's generation after a write; returns the new value."""
        ...


class RedisGenerations:
    """`Generations` as Redis counters ``twinstream:gallery-gen:<collection>:<tenant>``."""

    def __init__(self, client: redis.Redis, collection: str) -> None:
        self._client = client
        self._prefix = f"twinstream:gallery-gen:{collection}:"

    def current(self, tenants: Sequence[str]) -> dict[str, int]:
        if not tenants:
            return {}
        raw: list[bytes | None] = self._client.mget([self._prefix + t for t in tenants])  # type: ignore[assignment]
        return {t: int(v or 0) for t, v in zip(tenants, raw, strict=True)}

    def bump(self, tenant: str) -> int:
        return int(self._client.incr(self._prefix + tenant))  # type: ignore[arg-type]


@dataclass
class TenantCopy:
    """One tenant's vectors; searched as a matrix whose rows are grouped by subject.

    The grouped matrix is rebuilt lazily after a change, so an enrol-only stream never pays for it.
    """

    generation: int
    too_large: bool = False  # over ``max_vectors``: no rows held, Milvus answers
    loaded_at: float = field(default_factory=time.monotonic)
    ids: list[str] = field(default_factory=list)
    subjects: list[str] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)
    _grouped: _Grouped | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, rows: Iterable[tuple[str, str, np.ndarray]]) -> None:
        for image_id, subject, vector in rows:
            self.ids.append(image_id)
            self.subjects.append(subject)
            self.vectors.append(np.asarray(vector, dtype=np.float32))
        self._grouped = None

    def remove_subjects(self, subjects: set[str]) -> None:
        keep = [i for i, s in enumerate(self.subjects) if s not in subjects]
        self.ids = [self.ids[i] for i in keep]
        self.subjects = [self.subjects[i] for i in keep]
        self.vectors = [self.vectors[i] for i in keep]
        self._grouped = None

    def grouped(self) -> _Grouped:
        if self._grouped is None:
            self._grouped = _Grouped.build(self.subjects, self.vectors)
        return self._grouped


@dataclass(frozen=True, slots=True)
class _Grouped:
    """Rows sorted by subject: ``matrix[starts[g]:ends[g]]`` are the images of subject ``names[g]``."""

    matrix: np.ndarray
    names: list[str]
    starts: np.ndarray
    rows: dict[str, slice]

    @classmethod
    def build(cls, subjects: list[str], vectors: list[np.ndarray]) -> _Grouped:
        order = sorted(range(len(subjects)), key=subjects.__getitem__)
        names: list[str] = []
        starts: list[int] = []
        for row, i in enumerate(order):
            if not names or subjects[i] != names[-1]:
                names.append(subjects[i])
                starts.append(row)
        ends = [*starts[1:], len(order)] if starts else []
        matrix = np.stack([vectors[i] for i in order]) if order else np.zeros((0, 0), np.float32)
        rows = {name: slice(a, b) for name, a, b in zip(names, starts, ends, strict=True)}
        return cls(matrix, names, np.asarray(starts, dtype=np.int64), rows)

    def search(self, queries: np.ndarray, top_k: int) -> list[list[Hit]]:
        """Exact: each subject's best cosine over its images, the ``top_k`` best subjects per query."""
        if not self.names:
            return [[] for _ in queries]
        sims = queries @ self.matrix.T  # (queries, images)
        # (queries, subjects): a subject's best image; with one image per subject the columns already are.
        best = sims if len(self.names) == len(self.matrix) else np.maximum.reduceat(sims, self.starts, axis=1)
        k = min(top_k, len(self.names))
        top = np.argpartition(-best, k - 1, axis=1)[:, :k]
        # Rank the k per row in one vectorised pass (a Python loop per query was most of this method).
        order = np.argsort(-np.take_along_axis(best, top, axis=1), axis=1, kind="stable")
        ranked = np.take_along_axis(top, order, axis=1)
        distances = cosine_to_euclidean(np.take_along_axis(best, ranked, axis=1)).tolist()
        names = self.names
        return [
            [Hit(names[c], d) for c, d in zip(row, dist, strict=True)]
            for row, dist in zip(ranked.tolist(), distances, strict=True)
        ]

    def vectors_of(self, subject: str) -> np.ndarray | None:
        rows = self.rows.get(subject)
        return None if rows is None else self.matrix[rows]


class MirroredGallery:
    """`Gallery` that writes through to Milvus and reads small tenants from an in-memory copy.

    Args:
        store: The Milvus gallery (every write goes there first; large tenants are searched there).
        generations: Shared per-tenant write counters.
        max_vectors: Largest tenant copied (0 disables the mirror).
        max_total: Most vectors held in all; least recently used tenants are dropped beyond it.
        max_age_s: A copy older than this is reloaded even if its generation did not move.
    """

    def __init__(
        self,
        store: GalleryStore,
        generations: Generations,
        max_vectors: int = 100_000,
        max_total: int = 1_000_000,
        max_age_s: float = 300.0,
    ) -> None:
        self._store = store
        self._generations = generations
        self._max_vectors = max_vectors
        self._max_total = max_total
        self._max_age_s = max_age_s
        self._copies: OrderedDict[str, TenantCopy] = OrderedDict()  # least recently used first
        self._lock = threading.Lock()  # batches run in worker threads (asyncio.to_thread)
        self._counts: dict[str, tuple[int, float]] = {}  # tenants served by Milvus: (size, when counted)
        self.reloads = 0

    # --- reads ----------------------------------------------------------------------------------------

    def search(self, tenant: str, vectors: np.ndarray, top_k: int) -> list[list[Hit]]:
        with self._lock:
            copy = self._fresh([tenant])[tenant]
            grouped = copy.grouped() if copy is not None else None
        if grouped is None:
            return self._store.search(tenant, vectors, top_k)
        return grouped.search(np.asarray(vectors, dtype=np.float32), top_k)

    def vectors_of(self, keys: Sequence[SubjectKey]) -> dict[SubjectKey, np.ndarray]:
        with self._lock:
            copies = self._fresh(list(dict.fromkeys(t for t, _ in keys)))
            grouped = {t: c.grouped() for t, c in copies.items() if c is not None}
        out: dict[SubjectKey, np.ndarray] = {}
        for tenant, subject in keys:
            if tenant in grouped and (found := grouped[tenant].vectors_of(subject)) is not None:
                out[(tenant, subject)] = found
        remote = [key for key in keys if key[0] not in grouped]
        if remote:
            out.update(self._store.vectors_of(remote))
        return out

    def subjects(self, tenant: str) -> dict[str, int]:
        return self._store.subjects(tenant)

    def image_ids_of(self, keys: Sequence[SubjectKey]) -> dict[SubjectKey, list[str]]:
        """Asked of Milvus (the mirror holds only tenants it served): what a delete must tombstone."""
        return self._store.image_ids_of(keys)

    def size(self, tenant: str) -> int:
        """Vectors of a tenant: its copy's length, or (too large to copy) Milvus' count, a few seconds old."""
        with self._lock:
            copy = self._fresh([tenant])[tenant]
            if copy is not None:
                return len(copy)
            counted = self._counts.get(tenant)
        if counted is not None and time.monotonic() - counted[1] < _COUNT_MAX_AGE_S:
            return counted[0]
        size = self._store.size(tenant)
        with self._lock:
            self._counts[tenant] = (size, time.monotonic())
        return size

    def flush(self) -> None:
        self._store.flush()

    # --- writes ---------------------------------------------------------------------------------------

    def enroll(self, items: Sequence[Enrollment]) -> list[bool]:
        fresh = self._store.enroll(items)
        added: dict[str, list[tuple[str, str, np.ndarray]]] = {}
        for item, is_new in zip(items, fresh, strict=True):
            if is_new:
                added.setdefault(item.tenant, []).append((item.image_id, item.subject, item.vector))
        with self._lock:
            for tenant, rows in added.items():
                copy = self._after_write(tenant)
                if copy is not None:
                    copy.add(rows)
            self._evict()
        return fresh

    def delete(self, keys: Sequence[SubjectKey]) -> dict[SubjectKey, int]:
        counts = self._store.delete(keys)
        by_tenant: dict[str, set[str]] = {}
        for (tenant, subject), removed in counts.items():
            if removed:
                by_tenant.setdefault(tenant, set()).add(subject)
        with self._lock:
            for tenant, subjects in by_tenant.items():
                copy = self._after_write(tenant)
                if copy is not None:
                    copy.remove_subjects(subjects)
        return counts

    # --- coherence (callers hold the lock) --------------------------------------------------------------

    def _after_write(self, tenant: str) -> TenantCopy | None:
        """Bump the tenant's generation; keep our copy only if no other replica wrote in between."""
        generation = self._generations.bump(tenant)
        copy = self._copies.get(tenant)
        if copy is not None and copy.too_large:
            copy.generation = generation  # still served by Milvus; re-measured when it expires
            return None
        if copy is not None and copy.generation == generation - 1:
            copy.generation = generation
            return copy
        self._copies.pop(tenant, None)  # stale: reload on the next read
        return None

    def _fresh(self, tenants: list[str]) -> dict[str, TenantCopy | None]:
        """Current copies of ``tenants`` (None: served by Milvus), reloading those that moved on."""
        if self._max_vectors <= 0:
            return dict.fromkeys(tenants)
        generations = self._generations.current(tenants)
        out: dict[str, TenantCopy | None] = {}
        for tenant in tenants:
            held = self._copies.get(tenant)
            if held is None or time.monotonic() - held.loaded_at > self._max_age_s:
                held = self._load(tenant, generations[tenant])
            elif held.too_large:
                held.generation = generations[tenant]
            elif held.generation != generations[tenant]:
                held = self._load(tenant, generations[tenant])
            self._copies[tenant] = held
            self._copies.move_to_end(tenant)
            out[tenant] = None if held.too_large else held
        self._evict()
        return out

    def _load(self, tenant: str, generation: int) -> TenantCopy:
        """Copy a tenant from Milvus (read after its generation, so a concurrent write reloads again)."""
        self.reloads += 1
        rows = self._store.tenant_rows(tenant, self._max_vectors + 1)
        if len(rows) > self._max_vectors:
            return TenantCopy(generation, too_large=True)
        copy = TenantCopy(generation)
        copy.add(rows)
        return copy

    def _evict(self) -> None:
        total = sum(len(c) for c in self._copies.values())
        while total > self._max_total and len(self._copies) > 1:
            _, dropped = self._copies.popitem(last=False)
            total -= len(dropped)
