"""Serve bundles: per-batch observations derived from results, forward passes, gallery sizes."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from prometheus_client import CollectorRegistry

from twinstream.contracts import Decision, MatchResult, Op, Rejection, RejectReason, Timings
from twinstream.metrics import EmbedderMetrics, PipelineMetrics, PrometheusFactory
from twinstream.metrics.gallery_size import GallerySizeTracker


def _pipeline() -> tuple[PipelineMetrics, CollectorRegistry]:
    registry = CollectorRegistry()
    return PipelineMetrics.create(PrometheusFactory(registry)), registry


def _result(
    op: Op, decision: Decision, distance: float | None, gallery_s: float, tenant: str = "t"
) -> MatchResult:
    timings = Timings(decode_s=0.001, embed_s=0.02, gallery_s=gallery_s, total_s=0.05)
    return MatchResult(
        f"r-{op}-{distance}", op, decision, tenant=tenant, distance=distance,
        probability=None if distance is None else 1 - distance / 2, timings=timings,
    )  # fmt: skip


def test_decisions_are_counted_by_op_and_decision_and_rejections_without_op_as_none():
    metrics, registry = _pipeline()
    rejected = MatchResult.rejected("x", Rejection(RejectReason.TOO_LARGE, "big"))
    metrics.observe_batch(
        [_result(Op.IDENTIFY, Decision.MATCH, 0.3, 0.08), _result(Op.IDENTIFY, Decision.UNKNOWN, 1.2, 0.08),
         rejected],
        "stream",
    )  # fmt: skip
    value = registry.get_sample_value
    assert value("twinstream_decisions_total", {"op": "identify", "decision": "MATCH"}) == 1
    assert value("twinstream_decisions_total", {"op": "none", "decision": "REJECTED"}) == 1
    assert value("twinstream_pipeline_batch_size_sum", {"entry": "stream"}) == 3


def test_distances_and_probabilities_fill_histograms_by_op():
    metrics, registry = _pipeline()
    metrics.observe_batch([_result(Op.VERIFY, Decision.MATCH, 0.25, 0.1)], "http")
    value = registry.get_sample_value
    assert value("twinstream_match_distance_bucket", {"op": "verify", "le": "0.3"}) == 1
    assert value("twinstream_match_distance_bucket", {"op": "verify", "le": "0.2"}) == 0
    assert value("twinstream_match_probability_bucket", {"op": "verify", "le": "0.9"}) == 1


def test_one_gallery_round_per_op_group_is_observed_once_not_per_request():
    metrics, registry = _pipeline()
    batch = [_result(Op.ENROLL, Decision.ENROLLED, None, 0.3) for _ in range(5)]
    batch += [_result(Op.IDENTIFY, Decision.MATCH, 0.1, 0.09)]
    metrics.observe_batch(batch, "stream")
    value = registry.get_sample_value
    assert value("twinstream_gallery_latency_seconds_count", {"op": "enroll"}) == 1
    assert value("twinstream_gallery_latency_seconds_count", {"op": "identify"}) == 1
    assert value("twinstream_pipeline_latency_seconds_count", {"stage": "total"}) == 1


def test_cache_hits_and_misses_are_counted():
    metrics, registry = _pipeline()
    metrics.observe_cache(hits=3, misses=1)
    assert registry.get_sample_value("twinstream_embed_cache_requests_total", {"result": "hit"}) == 3
    assert registry.get_sample_value("twinstream_embed_cache_requests_total", {"result": "miss"}) == 1


def test_a_forward_pass_records_images_calls_latency_and_each_calls_queue_wait():
    registry = CollectorRegistry()
    metrics = EmbedderMetrics.create(PrometheusFactory(registry))
    metrics.observe_forward(images=48, calls=3, seconds=0.04, waits=[0.001, 0.02, 0.3])
    value = registry.get_sample_value
    assert value("twinstream_embed_images_total") == 48
    assert value("twinstream_embed_batch_size_bucket", {"le": "64.0"}) == 1
    assert value("twinstream_embed_batch_calls_sum") == 3
    assert value("twinstream_embed_queue_wait_seconds_count") == 3
    assert value("twinstream_embed_queue_wait_seconds_bucket", {"le": "0.025"}) == 2


def test_gallery_sizes_are_recounted_in_the_background_for_tenants_that_wrote():
    metrics, registry = _pipeline()
    counted = threading.Event()
    calls: list[str] = []

    def count(tenant: str) -> dict[str, int]:
        calls.append(tenant)
        counted.set()
        return {"alice": 2, "bob": 1}

    tracker = GallerySizeTracker(metrics, count, every_s=0.05)
    tracker.touch([_result(Op.ENROLL, Decision.ENROLLED, None, 0.1, tenant="acme")])
    assert counted.wait(5)
    tracker.stop()
    value = registry.get_sample_value
    assert value("twinstream_gallery_vectors", {"tenant": "acme"}) == 3
    assert value("twinstream_gallery_subjects", {"tenant": "acme"}) == 2
    assert calls[0] == "acme"


def test_a_failing_count_is_retried_at_the_next_round_and_never_raises():
    metrics, registry = _pipeline()
    attempts: list[int] = []
    done = threading.Event()

    def flaky(tenant: str) -> dict[str, int]:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("milvus down")
        done.set()
        return {"s": 4}

    tracker = GallerySizeTracker(metrics, flaky, every_s=0.05)
    tracker.touch([_result(Op.DELETE, Decision.DELETED, None, 0.1, tenant="t1")])
    assert done.wait(5)
    tracker.stop()
    assert registry.get_sample_value("twinstream_gallery_vectors", {"tenant": "t1"}) == 4


def test_reads_of_a_known_tenant_do_not_trigger_a_recount():
    metrics, _ = _pipeline()
    calls: list[str] = []

    def count(tenant: str) -> dict[str, int]:
        calls.append(tenant)
        return {}

    tracker = GallerySizeTracker(metrics, count, every_s=0.02)
    tracker.touch([_result(Op.IDENTIFY, Decision.MATCH, 0.2, 0.1, tenant="x")])  # new tenant: counted
    deadline = time.monotonic() + 5
    while not calls and time.monotonic() < deadline:
        time.sleep(0.01)
    tracker.touch([_result(Op.IDENTIFY, Decision.MATCH, 0.2, 0.1, tenant="x")])  # a read: not counted
    time.sleep(0.2)
    tracker.stop()
    assert calls == ["x"]


def _series(registry: CollectorRegistry, name: str) -> list[dict[str, str]]:
    return [s.labels for m in registry.collect() if m.name == name for s in m.samples]


def test_unknown_tenants_get_no_gauge_series_and_are_not_counted_again() -> None:
    metrics, registry = _pipeline()
    calls: list[str] = []

    def count(tenant: str) -> dict[str, int]:
        calls.append(tenant)
        return {"alice": 2} if tenant == "real" else {}

    tracker = GallerySizeTracker(metrics, count, every_s=3600)
    tracker.stop()  # no background rounds: this test runs them
    unknown = [_result(Op.IDENTIFY, Decision.UNKNOWN, 1.3, 0.1, tenant=f"nobody{i}") for i in range(5000)]
    tracker.touch([*unknown, _result(Op.ENROLL, Decision.ENROLLED, None, 0.1, tenant="real")])
    tracker.refresh([r.tenant for r in unknown] + ["real"])
    assert _series(registry, "twinstream_gallery_vectors") == [{"tenant": "real"}]
    assert len(calls) == 5001
    tracker.touch(unknown)  # seen again: remembered as empty, not counted again
    assert tracker.pending == 0 and tracker.exported_tenants == 1


def test_first_seen_tenants_waiting_for_a_count_are_bounded_but_writes_always_queue() -> None:
    metrics, _ = _pipeline()
    tracker = GallerySizeTracker(metrics, lambda tenant: {}, every_s=3600, max_pending=10)
    tracker.stop()
    tracker.touch([_result(Op.IDENTIFY, Decision.UNKNOWN, 1.3, 0.1, tenant=f"n{i}") for i in range(100)])
    assert tracker.pending == 10
    tracker.touch([_result(Op.ENROLL, Decision.ENROLLED, None, 0.1, tenant="writer")])
    assert tracker.pending == 11


def test_a_tenant_that_cannot_be_counted_is_logged_once_and_dropped(caplog: pytest.LogCaptureFixture) -> None:
    metrics, registry = _pipeline()
    calls: list[str] = []

    def count(tenant: str) -> dict[str, int]:
        calls.append(tenant)
        raise ValueError(f"refusing to quote unvalidated value {tenant!r}")

    tracker = GallerySizeTracker(metrics, count, every_s=3600)  # 3 attempts
    tracker.stop()
    tracker.touch([_result(Op.IDENTIFY, Decision.UNKNOWN, 1.3, 0.1, tenant="bad\n")])
    with caplog.at_level(logging.DEBUG, logger="twinstream.metrics.gallery_size"):
        for _ in range(10):  # ten rounds of the background thread
            tracker.refresh(["bad\n"])
    assert calls == ["bad\n"] * 3
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and warnings[0].exc_info is not None
    tracker.touch([_result(Op.IDENTIFY, Decision.UNKNOWN, 1.3, 0.1, tenant="bad\n")])
    assert tracker.pending == 0
    assert _series(registry, "twinstream_gallery_vectors") == []


def test_refused_requests_are_not_counted_whatever_their_tenant() -> None:
    metrics, _ = _pipeline()
    tracker = GallerySizeTracker(metrics, lambda tenant: {}, every_s=3600)
    tracker.stop()
    refused = MatchResult.rejected("r", Rejection(RejectReason.BAD_HEADER, "tenant"))
    tracker.touch([refused])
    assert tracker.pending == 0
