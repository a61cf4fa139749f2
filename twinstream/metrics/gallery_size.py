"""Keeps the per-tenant gallery size gauges fresh without putting Milvus queries on the request path.

Counting a tenant's vectors is a Milvus query (~80 ms or more), so batches only mark tenants as dirty;
a daemon thread recounts dirty tenants every few seconds.

Everything it holds is bounded, because tenant names come from callers: a gauge series exists only for a
tenant that has held vectors (requests naming 5,000 unknown tenants create none; Ray's exporter cannot
drop a series once set), tenants counted empty are remembered in a bounded LRU so they are not counted
again on every request, at most ``max_pending`` first-seen tenants wait for a count, and a tenant that
cannot be counted ``max_attempts`` times in a row is logged once and dropped instead of being retried
with a traceback every round forever.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence

from twinstream.contracts import Decision, MatchResult
from twinstream.metrics.serve import PipelineMetrics

log = logging.getLogger(__name__)
#: Decisions that change a tenant's gallery.
_WRITES = frozenset({Decision.ENROLLED, Decision.DELETED})
CountSubjects = Callable[[str], Mapping[str, int]]


class _BoundedSet:
    """A set that forgets its least recently added members beyond ``limit``."""

    def __init__(self, limit: int) -> None:
        self._items: OrderedDict[str, None] = OrderedDict()
        self._limit = max(1, limit)

    def __contains__(self, item: str) -> bool:
        return item in self._items

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: str) -> None:
        self._items[item] = None
        self._items.move_to_end(item)
        while len(self._items) > self._limit:
            self._items.popitem(last=False)

    def discard(self, item: str) -> None:
        self._items.pop(item, None)


class GallerySizeTracker:
    """Recounts tenants whose gallery changed (or that were seen for the first time) in the background.

    Args:
        metrics: Where the sizes go (``twinstream_gallery_vectors`` / ``_subjects``).
        count_subjects: Images per subject of one tenant (``MilvusGallery.subjects``).
        every_s: Seconds between recounts.
        max_attempts: Consecutive failed counts after which a tenant is dropped (until its next write).
        max_remembered: Tenants remembered as empty or as dropped (each), least recently seen forgotten.
        max_pending: First-seen tenants waiting for a count; more are not queued until seen again.
    """

    def __init__(
        self,
        metrics: PipelineMetrics,
        count_subjects: CountSubjects,
        every_s: float = 5.0,
        *,
        max_attempts: int = 3,
        max_remembered: int = 10_000,
        max_pending: int = 1_000,
    ) -> None:
        self._metrics = metrics
        self._count = count_subjects
        self._every_s = every_s
        self._max_attempts = max(1, max_attempts)
        self._max_pending = max_pending
        self._lock = threading.Lock()
        self._dirty: set[str] = set()
        self._exported: set[str] = set()  # tenants with a gauge series (they held vectors once)
        self._empty = _BoundedSet(max_remembered)  # counted empty: no series, not counted again on reads
        self._dropped = _BoundedSet(max_remembered)  # could not be counted: not retried until a write
        self._failures: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def exported_tenants(self) -> int:
        """How many tenants have a gauge series."""
        return len(self._exported)

    @property
    def pending(self) -> int:
        """How many tenants wait for a count."""
        return len(self._dirty)

    def touch(self, results: Sequence[MatchResult]) -> None:
        """Mark the tenants of ``results`` that wrote to the gallery, or are new, for a recount."""
        with self._lock:
            for result in results:
                tenant = result.tenant
                if result.decision in _WRITES:
                    self._empty.discard(tenant)
                    self._dropped.discard(tenant)
                    self._dirty.add(tenant)
                elif result.decision != Decision.REJECTED and self._unseen(tenant):
                    self._dirty.add(tenant)  # a refusal writes nothing, and its tenant may be anything
            if self._dirty and self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="gallery-size", daemon=True)
                self._thread.start()

    def _unseen(self, tenant: str) -> bool:
        known = tenant in self._exported or tenant in self._empty or tenant in self._dropped
        return not known and tenant not in self._dirty and len(self._dirty) < self._max_pending

    def refresh(self, tenants: Iterable[str]) -> None:
        """Recount ``tenants`` now; a failing count is retried at the next round, then dropped.

        A dropped tenant is skipped until its next write.
        """
        for tenant in tenants:
            if tenant in self._dropped:
                continue
            try:
                counts = self._count(tenant)
            except Exception as exc:  # any client error (Milvus' exception tree is wide): best effort
                self._failed(tenant, exc)
                continue
            self._measured(tenant, len(counts), sum(counts.values()))

    def _measured(self, tenant: str, subjects: int, vectors: int) -> None:
        with self._lock:
            self._failures.pop(tenant, None)
            self._dirty.discard(tenant)  # counted now: not again this round
            if vectors == 0 and tenant not in self._exported:
                self._empty.add(tenant)
                return
            self._exported.add(tenant)
        self._metrics.set_gallery_size(tenant, subjects, vectors)

    def _failed(self, tenant: str, exc: Exception) -> None:
        with self._lock:
            attempts = self._failures.get(tenant, 0) + 1
            if attempts < self._max_attempts:
                self._failures[tenant] = attempts
                self._dirty.add(tenant)
                log.debug("gallery size of tenant %r: count %d failed: %s", tenant, attempts, exc)
                return
            self._failures.pop(tenant, None)
            self._dirty.discard(tenant)
            self._dropped.add(tenant)
        log.warning(
            "gallery size of tenant %r could not be counted %d times; not counted again until it writes",
            tenant, attempts, exc_info=exc,
        )  # fmt: skip

    def recount_pending(self) -> None:
        """One round now: count every tenant waiting for it (what the thread does every ``every_s``)."""
        with self._lock:
            due, self._dirty = self._dirty, set()
        self.refresh(sorted(due))

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.recount_pending()
            self._stop.wait(self._every_s)

    def stop(self) -> None:
        self._stop.set()
