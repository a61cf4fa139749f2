"""Prometheus metrics of one ingest worker process: the `WorkerObserver` the worker calls as it works.

Implements ``services.ingest.observer.WorkerObserver`` structurally (the core never imports services).
Each worker process owns a registry and serves it on its own ``/metrics`` port (see `endpoint`).
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from twinstream.contracts import Decision, Op, RejectReason
from twinstream.metrics import buckets

#: Label value for a record refused before its op could be read.
NO_OP = "none"
#: The worker's retry stages (``services.ingest.worker``).
RETRY_STAGES = ("pipeline", "publish", "sink", "commit")


@dataclass(frozen=True)
class IngestMetrics:
    """The ingest worker's instruments (create them with `IngestMetrics.create`)."""

    messages: Counter
    dead_letters: Counter
    batch_size: Histogram
    batch_seconds: Histogram
    e2e_seconds: Histogram
    lag: Gauge
    assigned: Gauge
    commit_failures: Counter
    rebalances: Counter
    retries: Counter
    stage_seconds: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> IngestMetrics:
        """Register every ingest instrument in ``registry`` (one registry per worker process)."""
        return cls(
            messages=Counter(
                "twinstream_ingest_messages_total",
                "Records handled, by request op and outcome (the decision published for it)",
                ["op", "outcome"],
                registry=registry,
            ),
            dead_letters=Counter(
                "twinstream_ingest_dlq_total",
                "Records dead-lettered, by reason code",
                ["reason"],
                registry=registry,
            ),
            batch_size=Histogram(
                "twinstream_ingest_batch_size",
                "Records per polled batch",
                registry=registry,
                buckets=buckets.BATCH_SIZE,
            ),
            batch_seconds=Histogram(
                "twinstream_ingest_batch_seconds",
                "Poll to commit: pipeline call, publishing, result store and offset commit of one batch",
                registry=registry,
                buckets=buckets.LATENCY_S,
            ),
            e2e_seconds=Histogram(
                "twinstream_ingest_e2e_latency_seconds",
                "Kafka record timestamp to its result acknowledged and offset committed",
                registry=registry,
                buckets=buckets.LATENCY_S,
            ),
            lag=Gauge(
                "twinstream_ingest_consumer_lag",
                "High watermark minus position of each partition this worker owns (records)",
                ["topic", "partition"],
                registry=registry,
            ),
            assigned=Gauge(
                "twinstream_ingest_assigned_partitions", "Partitions this worker owns", registry=registry
            ),
            commit_failures=Counter(
                "twinstream_ingest_commit_failures_total",
                "Offset commits refused because the group rebalanced mid-batch (the batch is replayed)",
                registry=registry,
            ),
            rebalances=Counter(
                "twinstream_ingest_rebalances_total", "Partition assignments received", registry=registry
            ),
            retries=Counter(
                "twinstream_ingest_retries_total",
                "Dependency failures retried with back-off, by stage (pipeline, publish, sink, commit)",
                ["stage"],
                registry=registry,
            ),
            stage_seconds=Counter(
                "twinstream_ingest_stage_seconds_total",
                "Time spent per batch stage (pipeline, publish, sink, commit), retries included",
                ["stage"],
                registry=registry,
            ),
        )

    def __post_init__(self) -> None:
        # Known label values start at 0, so a rate is 0 (not "no data") until the first event.
        for stage in RETRY_STAGES:
            self.retries.labels(stage=stage)
            self.stage_seconds.labels(stage=stage)
        for reason in RejectReason:
            self.dead_letters.labels(reason=str(reason))

    # --- WorkerObserver -------------------------------------------------------------------------------

    def on_stage(self, stage: str, seconds: float) -> None:
        self.stage_seconds.labels(stage=stage).inc(seconds)

    def on_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)

    def on_result(self, op: Op | None, decision: Decision) -> None:
        self.messages.labels(op=str(op) if op else NO_OP, outcome=str(decision)).inc()

    def on_dlq(self, reason: RejectReason) -> None:
        self.dead_letters.labels(reason=str(reason)).inc()

    def on_lag(self, topic: str, partition: int, lag: int) -> None:
        self.lag.labels(topic=topic, partition=str(partition)).set(lag)

    def on_retry(self, stage: str) -> None:
        self.retries.labels(stage=stage).inc()

    def on_rebalance(self, assigned: int) -> None:
        self.rebalances.inc()
        self.assigned.set(assigned)
        # Partitions moved away must not keep reporting a stale lag from this worker.
        self.lag.clear()

    def on_acknowledged(self, seconds: float) -> None:
        self.e2e_seconds.observe(max(0.0, seconds))

    def on_commit_failed(self) -> None:
        self.commit_failures.inc()
