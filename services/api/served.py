"""The model versions one replica serves, and which of them answers the next batch.

A replica loads every version it is deployed with (the live one and, during a switch, the one being
promoted or the one to roll back to). Each version has its own tower (run in this process, off the event
loop), its own Milvus collection with its in-memory mirror, its own decision rules, and so its own
`MatchingPipeline`. Which version answers is read once per batch from the live pointer in Redis
(``twinstream:model:live:<app>``, moved by `twinstream models promote|rollback`): a whole batch, and so every
request, is answered by one version end to end, and results carry it as ``model_version``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import redis
from pymilvus import MilvusClient

from services.api.metrics import CountingEmbeddingCache
from services.embedder.model import TowerEmbedder
from services.gallery.milvus_gallery import MilvusGallery
from services.gallery.mirror import MirroredGallery, RedisGenerations
from services.gallery.names import collection_name
from services.gallery.schema import ensure_collection
from services.lifecycle.enrolment_log import KafkaEnrolmentLog, build_log_producer
from services.lifecycle.erasure import ReplicaStores, SubjectEraser
from services.lifecycle.ledger import RedisErasureLedger
from services.matching.matcher import Matcher
from services.matching.pipeline import MatchingPipeline
from services.matching.ports import EnrolmentLog, Eraser, ErasureLedger, LoggedEnrolment
from services.results.store import RedisResultStore
from services.tenants.policies import RedisPolicies
from twinstream.config import Settings
from twinstream.images.face_finder import FaceFinders
from twinstream.images.prepare_pool import PreparePool
from twinstream.images.preprocess import Preprocessing
from twinstream.metrics import EmbedderMetrics, PipelineMetrics

log = logging.getLogger(__name__)


def live_key(app_name: str) -> str:
    """The Redis key naming the version that answers for one Serve app (`twinstream models promote`)."""
    return f"twinstream:model:live:{app_name}"


@dataclass(frozen=True)
class ServedVersion:
    """One loaded model version: its pipeline (tower, gallery, rules) and its mirrored gallery."""

    version: str
    pipeline: MatchingPipeline
    gallery: MirroredGallery
    model_dir: Path


class ForwardPool:
    """Forward passes of every loaded tower, one at a time on one thread off the event loop.

    One at a time: a replica uses the cores it asked Ray for (``threads_per_replica``), never more,
    however many batches are in flight (scale out with replicas). torch releases the GIL meanwhile, so
    the event loop keeps accepting requests and preparing the next batch.
    """

    def __init__(self, metrics: EmbedderMetrics) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="forward")
        self._metrics = metrics

    async def embed(self, tower: TowerEmbedder, batch: np.ndarray) -> np.ndarray:
        queued = time.monotonic()
        loop = asyncio.get_running_loop()

        def run() -> tuple[np.ndarray, float, float]:
            started = time.monotonic()
            return tower.embed(batch), started, time.monotonic()

        vectors, started, done = await loop.run_in_executor(self._pool, run)
        self._metrics.observe_forward(len(batch), 1, done - started, [started - queued])
        return vectors


def load_version(
    settings: Settings,
    model_dir: Path,
    *,
    milvus: MilvusClient,
    rds: redis.Redis,
    results: RedisResultStore,
    metrics: PipelineMetrics,
    forwards: ForwardPool,
    policies: RedisPolicies,
    lifecycle: Lifecycle,
    preparer: PreparePool | None = None,
) -> ServedVersion:
    """Load one artifact and wire its pipeline to this replica's clients (``preparer``: where HTTP images
    of a face model are decoded and cut)."""
    device = "cuda" if settings.serve.gpus_per_replica > 0 else "cpu"
    tower = TowerEmbedder.from_dir(model_dir, threads=settings.serve.threads_per_replica, device=device)
    manifest = tower.manifest
    collection = collection_name(settings.milvus.collection_prefix, manifest.version)
    ensure_collection(milvus, collection, manifest.embedding_dim, settings.milvus)
    store = MilvusGallery(milvus, collection, settings.milvus.search_params)
    gallery = MirroredGallery(
        store, RedisGenerations(rds, collection), settings.milvus.mirror_max_vectors,
        settings.milvus.mirror_max_total, max_tenants=settings.milvus.mirror_max_tenants,
    )  # fmt: skip

    async def embed(batch: np.ndarray) -> np.ndarray:
        return await forwards.embed(tower, batch)

    pipeline = MatchingPipeline(
        embed, gallery, Matcher(manifest), settings.limits, results=results,
        cache=CountingEmbeddingCache(rds, settings.redis.cache_ttl_s, metrics), policies=policies,
        log=lifecycle.log, eraser=lifecycle.eraser, ledger=lifecycle.ledger,
        faces=FaceFinders(settings.faces).for_spec(manifest.input),
        preparer=preparer.prepare if preparer is not None and manifest.input.kind is Preprocessing.FACE_CHIP
        else None,
    )  # fmt: skip
    return ServedVersion(manifest.version, pipeline, gallery, Path(model_dir))


@dataclass(frozen=True)
class Lifecycle:
    """What every version of a replica shares for the model lifecycle: the enrolment log it writes, the
    eraser its deletes go through, and the ledger of erased subjects."""

    log: EnrolmentLog
    eraser: Eraser
    ledger: ErasureLedger

    @classmethod
    def connect(cls, settings: Settings, rds: redis.Redis, milvus: MilvusClient) -> Lifecycle:
        log = LazyEnrolmentLog(settings)
        eraser = SubjectEraser(ReplicaStores(settings, rds, milvus, log))
        return cls(log, eraser, RedisErasureLedger.from_settings(rds, settings))


class LazyEnrolmentLog:
    """The enrolment log, connected on first use: a replica starts (and serves identify) while Kafka is
    still coming up; an enrolment then fails like any dependency outage and is retried."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._log: KafkaEnrolmentLog | None = None
        self._lock = threading.Lock()

    def _connected(self) -> KafkaEnrolmentLog:
        with self._lock:
            if self._log is None:
                kafka = self._settings.kafka
                self._log = KafkaEnrolmentLog(build_log_producer(kafka), kafka.enrolments_topic)
            return self._log

    def append(self, entries: Sequence[LoggedEnrolment]) -> None:
        self._connected().append(entries)

    def tombstone(self, image_ids: Sequence[str]) -> None:
        self._connected().tombstone(image_ids)


class ServedVersions:
    """The versions of this replica, and the one the live pointer names for the next batch.

    Args:
        versions: The loaded versions; the first is the default while no pointer is set.
        rds: Where the live pointer is.
        app_name: The Serve app whose pointer it is.
    """

    def __init__(self, versions: Sequence[ServedVersion], rds: redis.Redis, app_name: str) -> None:
        if not versions:
            raise ValueError("a replica serves at least one model version")
        self._by_version = {v.version: v for v in versions}
        self.default = versions[0]
        self._rds = rds
        self._key = live_key(app_name)
        self._warned: set[str] = set()

    @property
    def versions(self) -> list[str]:
        return list(self._by_version)

    def claim_default(self) -> None:
        """Point the live pointer at the default version unless it already names one (first deploy)."""
        self._rds.set(self._key, self.default.version, nx=True)

    async def live(self) -> ServedVersion:
        """The version that answers now (one Redis GET).

        A pointer that names a version this replica has not loaded (the app was just redeployed with
        another model, and the deploy moves the pointer once every new replica runs) means the default:
        the replica's first version. A whole batch is still answered by one version.
        """
        raw = await asyncio.to_thread(self._rds.get, self._key)
        if raw is None:
            return self.default
        name = raw.decode() if isinstance(raw, bytes) else str(raw)
        found = self._by_version.get(name)
        if found is None:
            if name not in self._warned:
                self._warned.add(name)
                log.warning("live model %s is not loaded here; answering with %s", name, self.default.version)
            return self.default
        return found

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._by_version.values())
