"""Composition root of one ingest worker process: build the clients from settings, handle signals, run.

Run as ``python -m services.ingest.main --index I [--settings-file F] [--pipeline-factory mod:fn]``;
`services.ingest.supervisor` starts N of these for ``twinstream ingest --workers N``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry

from services.ingest.clients import build_consumer
from services.ingest.failures import AllDependencies, DependencyProbe
from services.ingest.observer import WorkerObserver
from services.ingest.probes import RedisPing, TcpReachable
from services.ingest.serve_pipeline import ServePipeline
from services.ingest.worker import IngestWorker
from services.results.kafka_publisher import KafkaResultPublisher, build_producer
from services.results.redis_client import redis_client
from services.results.store import RedisResultStore
from twinstream.config import Settings, load_settings
from twinstream.metrics import INGEST_JOB, IngestMetrics, start_endpoint
from twinstream.ports import MatchPipeline

PipelineFactory = Callable[[Settings], MatchPipeline]


def worker_name(index: int) -> str:
    return f"ingest-{socket.gethostname()}-{os.getpid()}-{index}"


def build_worker(
    settings: Settings,
    pipeline: MatchPipeline,
    *,
    index: int = 0,
    observer: WorkerObserver | None = None,
    with_result_store: bool = True,
    probes: tuple[DependencyProbe, ...] = (),
) -> IngestWorker:
    """Wire one worker: group consumer, results/DLQ producer, Redis result store and the pipeline.

    The worker's dependency probe asks the pipeline (when it is a probe itself), the result store's
    Redis, and ``probes`` (dependencies only the pipeline reaches, such as Milvus behind Serve).
    """
    name = worker_name(index)
    consumer = build_consumer(settings.kafka, settings.ingest, client_id=name)
    producer = build_producer(settings.kafka, client_id=name)
    publisher = KafkaResultPublisher.from_settings(settings.kafka, producer)
    checks = [*probes, *([pipeline] if isinstance(pipeline, DependencyProbe) else [])]
    sink = None
    if with_result_store:
        client = redis_client(settings.redis)
        sink = RedisResultStore(client, settings.redis.result_ttl_s)
        checks.append(RedisPing(client))
    return IngestWorker(
        consumer, publisher, pipeline, settings, sink=sink, observer=observer,
        probe=AllDependencies(checks), name=name,
    )  # fmt: skip


def load_factory(spec: str) -> PipelineFactory:
    """``module:function`` → the function (a pipeline factory taking the settings)."""
    module, _, attr = spec.partition(":")
    factory: PipelineFactory = getattr(importlib.import_module(module), attr)
    return factory


def run_worker(settings: Settings, index: int, pipeline_factory: str | None = None) -> None:
    """Build and run one worker until SIGTERM/SIGINT (finish the batch, flush, commit, leave the group)."""
    serve_pipeline = None if pipeline_factory else ServePipeline(settings)
    if serve_pipeline is not None:
        serve_pipeline.start()  # before our handlers: Ray installs its own SIGTERM handler
    pipeline = serve_pipeline or load_factory(pipeline_factory or "")(settings)
    registry = CollectorRegistry()
    endpoint = start_endpoint(
        registry, settings.metrics.ingest_base_port + index, state_dir=settings.paths.state_dir,
        job=INGEST_JOB, name=f"{settings.ingest.group_id}-{index}", host=settings.metrics.host,
    )  # fmt: skip
    # Milvus sits behind Serve, whose errors may not name it (the result store's probe covers Redis).
    behind_serve = (TcpReachable(settings.milvus.uri),) if serve_pipeline else ()
    worker = build_worker(
        settings, pipeline, index=index, observer=IngestMetrics.create(registry), probes=behind_serve
    )
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.request_stop())
    try:
        worker.run()
    finally:
        endpoint.close()
        if serve_pipeline is not None:
            serve_pipeline.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--settings-file", type=Path, help="JSON of a Settings object (else the environment)")
    parser.add_argument("--pipeline-factory", help="module:function → MatchPipeline (default: Serve)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    if args.settings_file:
        settings = load_settings(**json.loads(args.settings_file.read_text()))
    else:
        settings = load_settings()
    run_worker(settings, args.index, args.pipeline_factory)


if __name__ == "__main__":
    main()
