"""Helpers shared by the ingest and stream integration tests: per-test topics, worker runs, reading back."""

from __future__ import annotations

import contextlib
import io
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from kafka import KafkaConsumer, KafkaProducer
from kafka.partitioner.default import murmur2
from PIL import Image

from cli.stack.kafka_admin import ensure_topics
from services.ingest.main import build_worker
from services.ingest.results_reader import build_reader, read_results
from services.ingest.supervisor import worker_command
from tests.support.waiting import WaitTimeoutError, wait_until
from twinstream.codec import DeadLetterInfo, read_dead_letter
from twinstream.config import Settings, write_settings_file
from twinstream.contracts import MatchResult
from twinstream.ports import MatchPipeline


def stream_settings(base: Settings, name: str, *, partitions: int = 4, **ingest: object) -> Settings:
    """A copy of ``base`` with its own topics and group (created here), fast retries and small polls."""
    settings = base.model_copy(deep=True)
    settings.kafka = settings.kafka.model_copy(
        update={
            "images_topic": f"{name}.images",
            "results_topic": f"{name}.results",
            "dlq_topic": f"{name}.dlq",
            "partitions": partitions,
        }
    )
    settings.ingest = settings.ingest.model_copy(
        update={
            "group_id": f"{name}-ingest",
            "retry_initial_s": 0.2,
            "retry_max_s": 1.0,
            "session_timeout_ms": 6000,
            **ingest,
        }
    )
    k = settings.kafka
    ensure_topics(settings, {k.images_topic: partitions, k.results_topic: partitions, k.dlq_topic: 1})
    return settings


def producer_for(settings: Settings) -> KafkaProducer:
    return KafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap,
        max_request_size=settings.kafka.max_message_bytes,
        linger_ms=5,
    )


def digit_png(index: int, fmt: str = "PNG") -> bytes:
    """A scikit-learn digit as image bytes (8x8 upscaled to 32x32 so JPEG has something to chew on)."""
    from sklearn.datasets import load_digits

    pixels = (load_digits().images[index] * (255 / 16)).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, mode="L").resize((32, 32)).save(buf, format=fmt)
    return buf.getvalue()


def collect_results(settings: Settings, expected: int, timeout_s: float = 60.0) -> list[MatchResult]:
    """Every result on the results topic, waiting until at least ``expected`` arrived (or the timeout).

    Also checks that each result sits in the partition Kafka's default partitioner gives its key (the
    request id), with kafka-python's own murmur2 as the reference: the publisher computes partitions
    itself, for a whole batch at once.
    """
    found: list[MatchResult] = []

    def enough() -> bool:
        found[:] = _read_all_results(settings)
        return len(found) >= expected

    with contextlib.suppress(WaitTimeoutError):  # fewer than expected: the caller's assertion says so
        wait_until(enough, timeout_s, f"{expected} results", interval_s=0.5)
    return found


def _read_all_results(settings: Settings) -> list[MatchResult]:
    consumer = build_reader(settings.kafka)
    try:
        records = list(read_results(consumer, settings.kafka.results_topic))
        count = len(consumer.partitions_for_topic(settings.kafka.results_topic) or ())
    finally:
        consumer.close()
    misplaced = [
        (r.result.request_id, r.partition)
        for r in records
        if r.partition != (murmur2(r.result.request_id.encode()) & 0x7FFFFFFF) % count
    ]
    assert not misplaced, f"results outside their key's partition: {misplaced[:5]}"
    return [r.result for r in records]


def dead_letter_records(settings: Settings) -> list[Any]:
    """Every record on the DLQ topic (kafka-python ``ConsumerRecord``s: value, key, headers)."""
    consumer = KafkaConsumer(
        settings.kafka.dlq_topic,
        bootstrap_servers=settings.kafka.bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=3000,
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=32 * 1024 * 1024,
    )
    try:
        return list(consumer)
    finally:
        consumer.close()


def collect_dead_letters(settings: Settings) -> list[tuple[bytes | None, DeadLetterInfo]]:
    return [(m.value, read_dead_letter(m.headers)) for m in dead_letter_records(settings)]


@contextmanager
def worker_thread(settings: Settings, pipeline: MatchPipeline, *, store: bool = False) -> Iterator[object]:
    """An in-process worker running on a thread; stopped cleanly on exit."""
    worker = build_worker(settings, pipeline, with_result_store=store)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.request_stop()
        thread.join(timeout=60)


@dataclass
class WorkerProcess:
    """A worker as its own OS process (what `twinstream ingest --workers N` starts)."""

    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self, timeout: float = 60.0) -> int:
        self.proc.terminate()
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)


def start_worker_process(
    settings: Settings, index: int, tmp: Path, pipeline_factory: str | None = None
) -> WorkerProcess:
    settings_file = write_settings_file(settings, tmp / f"settings-{index}.json")
    log = tmp / f"worker-{index}-{time.monotonic_ns()}.log"
    cmd = worker_command(index, settings_file, pipeline_factory)
    proc = subprocess.Popen(
        cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=Path(__file__).parents[2]
    )
    return WorkerProcess(proc, log)


def by_request(results: Sequence[MatchResult]) -> dict[str, list[MatchResult]]:
    out: dict[str, list[MatchResult]] = {}
    for result in results:
        out.setdefault(result.request_id, []).append(result)
    return out
