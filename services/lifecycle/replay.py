"""Replaying enrolment-log batches into one version's collection: pre-process, embed, write, commit.

The order inside a batch is what makes a killed run resume exactly: write (upsert by image id, delete
tombstoned ids), flush, bump the mirror generation of each tenant written, and only then commit the
batch's offsets. A batch replayed after a kill is the same upserts and deletes by id again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from services.embedder.model import TowerEmbedder
from services.gallery.milvus_gallery import MilvusGallery
from services.gallery.mirror import Generations
from services.lifecycle.enrolment_log import EnrolmentLogReader, LogEvent, fold
from services.lifecycle.registry import ModelRegistry
from services.matching.ports import Enrollment, LoggedEnrolment
from twinstream.config import LimitsSettings
from twinstream.contracts import ImageRequest, Op
from twinstream.images.prepared import FaceFinder, prepare
from twinstream.images.preprocess import normalize
from twinstream.names import image_id

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BatchDone:
    """Progress after one committed batch (``number`` 0: before the first, with the plan)."""

    number: int
    done: int
    total: int
    images: int
    positions: dict[int, int]


@dataclass(frozen=True, slots=True)
class ReindexReport:
    """What one run did; ``images_per_s`` counts the whole run (read, decode, embed, write, commit)."""

    version: str
    collection: str
    records: int
    images: int
    deleted: int
    refused: int
    batches: int
    seconds: float
    embed_seconds: float
    caught_up: bool
    positions: dict[int, int]

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


@dataclass(slots=True)
class _Tally:
    """Counts of one run as it goes."""

    positions: dict[int, int]
    caught_up: bool
    records: int = 0
    images: int = 0
    deleted: int = 0
    refused: int = 0
    batches: int = 0
    marked: dict[int, int] | None = None

    def add(self, images: int, deleted: int, refused: int) -> None:
        self.images += images
        self.deleted += deleted
        self.refused += refused

    def report(self, reindexer: Reindexer, seconds: float) -> ReindexReport:
        return ReindexReport(
            reindexer.version, reindexer.collection, self.records, self.images, self.deleted, self.refused,
            self.batches, seconds, reindexer.embed_seconds, self.caught_up, dict(self.positions),
        )  # fmt: skip


class Reindexer:
    """Replays the log into one version's collection, committing after each flushed batch.

    Args:
        version: The model version being built.
        reader: The log, read with the version's consumer group (for commits).
        embedder: The version's tower.
        gallery: The version's collection.
        limits: Input limits (as the ingest workers apply them).
        generations: The collection's mirror generations (bumped per tenant written), or None.
        registry: Where progress is recorded, or None.
        faces: The face finder, for a ``face-chip`` model (the largest face of each enrolled image).
    """

    def __init__(
        self,
        version: str,
        reader: EnrolmentLogReader,
        embedder: TowerEmbedder,
        gallery: MilvusGallery,
        *,
        limits: LimitsSettings,
        generations: Generations | None = None,
        registry: ModelRegistry | None = None,
        faces: FaceFinder | None = None,
    ) -> None:
        self.version = version
        self._reader = reader
        self._embedder = embedder
        self._gallery = gallery
        self._limits = limits
        self._generations = generations
        self._registry = registry
        self._faces = faces
        self.embed_seconds = 0.0

    @property
    def collection(self) -> str:
        return self._gallery.collection

    def run(
        self,
        *,
        follow: bool = False,
        stop: threading.Event | None = None,
        batch: int = 256,
        on_batch: Callable[[BatchDone], None] = lambda _: None,
    ) -> ReindexReport:
        """Replay from the group's committed offsets to the log's end (and on, with ``follow``)."""
        started = time.perf_counter()
        start = {**self._reader.beginning_offsets(), **self._reader.committed_offsets()}
        end = self._reader.end_offsets()
        total = sum(max(0, end[p] - start.get(p, 0)) for p in end)
        on_batch(BatchDone(0, 0, total, 0, dict(start)))
        tally = _Tally(positions=dict(start), caught_up=total == 0)
        for polled in self._reader.batches(start, follow=follow, stop=stop, max_records=batch):
            if polled.events:
                tally.add(*self._apply(polled.events))
            tally.refused += polled.malformed
            if polled.positions != tally.positions:
                self._reader.commit(polled.positions)
                tally.batches += 1
                tally.records += len(polled.events) + polled.malformed
                if self._registry is not None:
                    self._registry.record_progress(self.version, polled.positions)
                done = sum(polled.positions[p] - start.get(p, 0) for p in polled.positions)
                on_batch(
                    BatchDone(tally.batches, done, max(total, done), tally.images, dict(polled.positions))
                )
            tally.positions, tally.caught_up = polled.positions, polled.caught_up
            self._mark_caught_up(tally)
        self._mark_caught_up(tally)
        report = tally.report(self, time.perf_counter() - started)
        if self._registry is not None and report.images:
            self._registry.record_speed(self.version, report.images_per_s)
        return report

    def _mark_caught_up(self, tally: _Tally) -> None:
        """Record in the registry that the collection holds the whole log (once per position reached)."""
        if self._registry is None or not tally.caught_up or tally.positions == tally.marked:
            return
        self._registry.mark_caught_up(self.version, tally.positions, self._gallery.count())
        tally.marked = dict(tally.positions)

    def _apply(self, events: Sequence[LogEvent]) -> tuple[int, int, int]:
        """Write one batch: the last event per image id wins; returns (images, deleted, refused)."""
        latest = fold(events)
        upserts = [e for e in latest.values() if e is not None]
        gone = [image for image, e in latest.items() if e is None]
        kept, vectors = self._embed(upserts)
        self._gallery.upsert(
            [Enrollment(e.image_id, e.tenant, e.subject, v) for e, v in zip(kept, vectors, strict=True)],
            [e.enrolled_at_ms for e in kept],
        )
        removed = self._gallery.delete_ids(gone) if gone else {}
        self._gallery.flush()
        if self._generations is not None:
            for tenant in sorted({e.tenant for e in kept} | set(removed)):
                self._generations.bump(tenant)
        return len(kept), sum(removed.values()), len(upserts) - len(kept)

    def _embed(self, entries: list[LoggedEnrolment]) -> tuple[list[LoggedEnrolment], np.ndarray]:
        """Pre-process as the ingest workers do, then one forward pass; images that fail are dropped."""
        requests = [
            ImageRequest(
                e.request_id or e.image_id,
                Op.ENROLL,
                e.image,
                e.tenant,
                e.subject,
                content_type=e.content_type,
            )
            for e in entries
        ]
        spec = self._embedder.manifest.input
        prepared, refused = prepare(requests, spec, self._limits, self._faces)
        for position, error in sorted(refused.items()):
            log.warning(
                "image %s of the log no longer decodes (%s); skipped", entries[position].image_id, error
            )
        kept = [e for i, e in enumerate(entries) if i not in refused]
        for entry, digest in zip(kept, prepared.digests, strict=True):
            if image_id(entry.tenant, entry.subject, digest) != entry.image_id:
                log.warning("log key %s is not the id of its image; kept under the key", entry.image_id)
        t0 = time.perf_counter()
        vectors = self._embedder.embed(normalize(prepared.pixels, spec)) if kept else np.empty((0, 0))
        self.embed_seconds += time.perf_counter() - t0
        return kept, vectors
