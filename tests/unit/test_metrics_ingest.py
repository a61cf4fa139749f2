"""The ingest bundle records what the worker observes, and a worker's /metrics endpoint is scrapeable."""

from __future__ import annotations

import json
import socket

import httpx
from prometheus_client import CollectorRegistry

from services.ingest.observer import StageObserver, WorkerObserver
from twinstream.contracts import Decision, Op, RejectReason
from twinstream.metrics import INGEST_JOB, IngestMetrics, start_endpoint


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    assert value is not None, f"no sample {name}{labels}"
    return value


def test_ingest_metrics_is_a_worker_observer_and_a_stage_observer():
    registry = CollectorRegistry()
    observer = IngestMetrics.create(registry)
    assert isinstance(observer, WorkerObserver)  # every callback the worker makes, with its name
    assert isinstance(observer, StageObserver)
    observer.on_batch(3, 0.2)  # what the worker calls after a batch
    assert _value(registry, "twinstream_ingest_batch_size_count") == 1
    assert _value(registry, "twinstream_ingest_batch_size_sum") == 3
    assert not isinstance(object(), WorkerObserver)


def test_results_are_counted_by_op_and_outcome_and_refusals_without_op_as_none():
    registry = CollectorRegistry()
    metrics = IngestMetrics.create(registry)
    metrics.on_result(Op.IDENTIFY, Decision.MATCH)
    metrics.on_result(Op.IDENTIFY, Decision.MATCH)
    metrics.on_result(None, Decision.REJECTED)
    assert _value(registry, "twinstream_ingest_messages_total", op="identify", outcome="MATCH") == 2
    assert _value(registry, "twinstream_ingest_messages_total", op="none", outcome="REJECTED") == 1


def test_dead_letters_are_counted_by_reason_code():
    registry = CollectorRegistry()
    metrics = IngestMetrics.create(registry)
    metrics.on_dlq(RejectReason.UNDECODABLE_IMAGE)
    assert _value(registry, "twinstream_ingest_dlq_total", reason="undecodable-image") == 1


def test_batches_record_size_and_poll_to_commit_seconds():
    registry = CollectorRegistry()
    metrics = IngestMetrics.create(registry)
    metrics.on_batch(40, 0.3)
    assert _value(registry, "twinstream_ingest_batch_size_sum") == 40
    assert _value(registry, "twinstream_ingest_batch_seconds_bucket", le="0.5") == 1
    assert _value(registry, "twinstream_ingest_batch_seconds_bucket", le="0.25") == 0


def test_end_to_end_latency_lands_in_its_bucket_and_clock_skew_counts_as_zero():
    registry = CollectorRegistry()
    metrics = IngestMetrics.create(registry)
    metrics.on_acknowledged(1.7)
    metrics.on_acknowledged(-0.2)  # producer clock ahead of ours
    assert _value(registry, "twinstream_ingest_e2e_latency_seconds_bucket", le="2.5") == 2
    assert _value(registry, "twinstream_ingest_e2e_latency_seconds_bucket", le="0.005") == 1


def test_rebalance_drops_the_lag_of_partitions_this_worker_no_longer_owns():
    registry = CollectorRegistry()
    metrics = IngestMetrics.create(registry)
    metrics.on_lag("images", 0, 12)
    metrics.on_lag("images", 3, 5)
    metrics.on_rebalance(1)
    metrics.on_lag("images", 3, 4)
    assert (
        registry.get_sample_value("twinstream_ingest_consumer_lag", {"topic": "images", "partition": "0"})
        is None
    )
    assert _value(registry, "twinstream_ingest_consumer_lag", topic="images", partition="3") == 4
    assert _value(registry, "twinstream_ingest_assigned_partitions") == 1
    assert _value(registry, "twinstream_ingest_rebalances_total") == 1


def test_retries_by_stage_and_commit_failures_are_counted():
    registry = CollectorRegistry()
    metrics = IngestMetrics.create(registry)
    metrics.on_retry("pipeline")
    metrics.on_retry("pipeline")
    metrics.on_commit_failed()
    assert _value(registry, "twinstream_ingest_retries_total", stage="pipeline") == 2
    assert _value(registry, "twinstream_ingest_retries_total", stage="commit") == 0  # known stages start at 0
    assert _value(registry, "twinstream_ingest_commit_failures_total") == 1


def test_endpoint_serves_the_registry_and_registers_then_unregisters_its_scrape_target(tmp_path):
    registry = CollectorRegistry()
    IngestMetrics.create(registry).on_dlq(RejectReason.TOO_LARGE)
    (tmp_path / "prometheus").mkdir()
    with start_endpoint(registry, 0, state_dir=tmp_path, job=INGEST_JOB, name="w0") as endpoint:
        body = httpx.get(endpoint.url, timeout=5).text
        target = json.loads((tmp_path / "prometheus" / "targets" / f"{INGEST_JOB}-w0.json").read_text())
    assert 'twinstream_ingest_dlq_total{reason="too-large"} 1.0' in body
    assert target[0]["targets"] == [f"127.0.0.1:{endpoint.port}"]
    assert target[0]["labels"]["job"] == INGEST_JOB
    assert not (tmp_path / "prometheus" / "targets" / f"{INGEST_JOB}-w0.json").exists()


def test_endpoint_falls_back_to_a_free_port_when_its_port_is_taken(tmp_path):
    (tmp_path / "prometheus").mkdir()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        with start_endpoint(CollectorRegistry(), taken, state_dir=tmp_path, job="j", name="n") as endpoint:
            registered = json.loads((tmp_path / "prometheus" / "targets" / "j-n.json").read_text())
            assert endpoint.port != taken
            assert httpx.get(endpoint.url, timeout=5).status_code == 200
    assert registered[0]["targets"] == [f"127.0.0.1:{endpoint.port}"]


def test_endpoint_registers_nothing_where_no_local_prometheus_runs(tmp_path):
    with start_endpoint(CollectorRegistry(), 0, state_dir=tmp_path, job="j", name="n") as endpoint:
        assert endpoint.target_file is None
    assert not (tmp_path / "prometheus").exists()
