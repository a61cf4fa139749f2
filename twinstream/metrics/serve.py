"""Metrics of the Serve deployments: `EmbedderMetrics` (batched tower) and `PipelineMetrics` (matching).

Both are built on a `MetricFactory`: `RayFactory` inside Serve replicas, `PrometheusFactory` in tests.
Labels stay low-cardinality: op, decision, entry (stream or http), stage, result and tenant — never a
request id or a subject. Per-request observations are derived from the `MatchResult`s a batch returns,
so the pipeline code needs no metrics calls of its own.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from twinstream.contracts import MatchResult
from twinstream.metrics import buckets
from twinstream.metrics.factory import CounterLike, GaugeLike, HistogramLike, MetricFactory

NO_OP = "none"


@dataclass(frozen=True)
class EmbedderMetrics:
    """One embedder replica's instruments: what each forward pass did and how long callers queued."""

    images: CounterLike
    batch_size: HistogramLike
    batch_calls: HistogramLike
    latency: HistogramLike
    queue_wait: HistogramLike

    @classmethod
    def create(cls, factory: MetricFactory) -> EmbedderMetrics:
        return cls(
            images=factory.counter("twinstream_embed_images_total", "Images embedded"),
            batch_size=factory.histogram(
                "twinstream_embed_batch_size", "Images per forward pass", buckets.BATCH_SIZE
            ),
            batch_calls=factory.histogram(
                "twinstream_embed_batch_calls",
                "Caller batches merged into one forward pass",
                buckets.BATCH_SIZE,
            ),
            latency=factory.histogram(
                "twinstream_embed_latency_seconds", "Duration of one forward pass", buckets.LATENCY_S
            ),
            queue_wait=factory.histogram(
                "twinstream_embed_queue_wait_seconds",
                "Time a call waited in the replica's batching queue before its forward pass began",
                buckets.LATENCY_S,
            ),
        )

    def observe_forward(self, images: int, calls: int, seconds: float, waits: Sequence[float] = ()) -> None:
        """Record one forward pass of ``images`` images merged from ``calls`` calls."""
        self.images.inc(images)
        self.batch_size.observe(images)
        self.batch_calls.observe(calls)
        self.latency.observe(seconds)
        for wait in waits:
            self.queue_wait.observe(max(0.0, wait))


@dataclass(frozen=True)
class PipelineMetrics:
    """The pipeline replica's instruments: decisions, scores, stage latencies, cache and gallery size."""

    decisions: CounterLike
    distance: HistogramLike
    probability: HistogramLike
    gallery_latency: HistogramLike
    stage_latency: HistogramLike
    batch_size: HistogramLike
    cache: CounterLike
    gallery_vectors: GaugeLike
    gallery_subjects: GaugeLike

    @classmethod
    def create(cls, factory: MetricFactory) -> PipelineMetrics:
        f = factory
        return cls(
            decisions=f.counter(
                "twinstream_decisions_total", "Results by op and decision", ("op", "decision")
            ),
            distance=f.histogram(
                "twinstream_match_distance",
                "Distance of the best candidate, by op",
                buckets.DISTANCE,
                ("op",),
            ),
            probability=f.histogram(
                "twinstream_match_probability",
                "Calibrated match probability, by op",
                buckets.PROBABILITY,
                ("op",),
            ),
            gallery_latency=f.histogram(
                "twinstream_gallery_latency_seconds",
                "One Milvus round per op and batch: upsert (enroll), fetch (verify), search (identify)",
                buckets.LATENCY_S,
                ("op",),
            ),
            stage_latency=f.histogram(
                "twinstream_pipeline_latency_seconds",
                "Per batch: decode (summed), embed (cache and embedder call), total",
                buckets.LATENCY_S,
                ("stage",),
            ),
            batch_size=f.histogram(
                "twinstream_pipeline_batch_size", "Requests per pipeline call", buckets.BATCH_SIZE, ("entry",)
            ),
            cache=f.counter(
                "twinstream_embed_cache_requests_total", "Embedding-cache lookups by result", ("result",)
            ),
            gallery_vectors=f.gauge("twinstream_gallery_vectors", "Vectors enrolled per tenant", ("tenant",)),
            gallery_subjects=f.gauge(
                "twinstream_gallery_subjects", "Subjects enrolled per tenant", ("tenant",)
            ),
        )

    def observe_batch(self, results: Sequence[MatchResult], entry: str) -> None:
        """Record one pipeline call's results (``entry``: ``stream`` or ``http``)."""
        if not results:
            return
        self.batch_size.observe(len(results), {"entry": entry})
        gallery_s: dict[str, float] = {}
        decisions: Counter[tuple[str, str]] = Counter()
        for result in results:
            op = str(result.op) if result.op else NO_OP
            decisions[(op, str(result.decision))] += 1
            if result.distance is not None and math.isfinite(result.distance):
                self.distance.observe(max(0.0, result.distance), {"op": op})
            if result.probability is not None and math.isfinite(result.probability):
                self.probability.observe(result.probability, {"op": op})
            if result.timings.gallery_s > 0:
                # Every result of one op group carries the same gallery round: count it once.
                gallery_s.setdefault(op, result.timings.gallery_s)
        for (op, decision), count in decisions.items():  # one increment per label set and batch
            self.decisions.inc(count, {"op": op, "decision": decision})
        for op, seconds in gallery_s.items():
            self.gallery_latency.observe(seconds, {"op": op})
        self._observe_stages(results)

    def _observe_stages(self, results: Sequence[MatchResult]) -> None:
        decode = sum(r.timings.decode_s for r in results)
        embed = max(r.timings.embed_s for r in results)
        total = max(r.timings.total_s for r in results)
        if decode > 0:
            self.stage_latency.observe(decode, {"stage": "decode"})
        if embed > 0:
            self.stage_latency.observe(embed, {"stage": "embed"})
        if total > 0:
            self.stage_latency.observe(total, {"stage": "total"})

    def observe_cache(self, hits: int, misses: int) -> None:
        """Record one batch of embedding-cache lookups."""
        if hits:
            self.cache.inc(hits, {"result": "hit"})
        if misses:
            self.cache.inc(misses, {"result": "miss"})

    def set_gallery_size(self, tenant: str, subjects: int, vectors: int) -> None:
        self.gallery_subjects.set(subjects, {"tenant": tenant})
        self.gallery_vectors.set(vectors, {"tenant": tenant})
