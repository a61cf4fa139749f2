"""Keeps the per-tenant gallery size gauges fresh without putting Milvus queries on the request path.

Counting a tenant's vectors is a Milvus query (~80 ms or more), so batches only mark tenants as dirty;
a daemon thread recounts dirty tenants every few seconds.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence

from twinstream.contracts import Decision, MatchResult
from twinstream.metrics.serve import PipelineMetrics

log = logging.getLogger(__name__)
#: Decisions that change a tenant's gallery.
_WRITES = frozenset({Decision.ENROLLED, Decision.DELETED})
CountSubjects = Callable[[str], Mapping[str, int]]


class GallerySizeTracker:
    """Recounts tenants whose gallery changed (or that were seen for the first time) in the background.

    Args:
        metrics: Where the sizes go (``twinstream_gallery_vectors`` / ``_subjects``).
        count_subjects: Images per subject of one tenant (``MilvusGallery.subjects``).
        every_s: Seconds between recounts.
    """

    def __init__(self, metrics: PipelineMetrics, count_subjects: CountSubjects, every_s: float = 5.0) -> None:
        self._metrics = metrics
        self._count = count_subjects
        self._every_s = every_s
        self._lock = threading.Lock()
        self._dirty: set[str] = set()
        self._known: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def touch(self, results: Sequence[MatchResult]) -> None:
        """Mark the tenants of ``results`` that wrote to the gallery, or are new, for a recount."""
        with self._lock:
            for result in results:
                if result.decision in _WRITES or result.tenant not in self._known:
                    self._known.add(result.tenant)
                    self._dirty.add(result.tenant)
            if self._dirty and self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="gallery-size", daemon=True)
                self._thread.start()

    def refresh(self, tenants: Iterable[str]) -> None:
        """Recount ``tenants`` now (a failing count is logged and retried at the next round)."""
        for tenant in tenants:
            try:
                counts = self._count(tenant)
            except Exception:  # any client error: Milvus' exception tree is wide, and this is best effort
                log.warning("gallery size of tenant %r could not be counted", tenant, exc_info=True)
                with self._lock:
                    self._dirty.add(tenant)
                continue
            self._metrics.set_gallery_size(tenant, len(counts), sum(counts.values()))

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                due, self._dirty = self._dirty, set()
            self.refresh(sorted(due))
            self._stop.wait(self._every_s)

    def stop(self) -> None:
        self._stop.set()
