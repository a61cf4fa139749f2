"""The proof that every Grafana panel shows real data: a training run, the Serve app and an ingest worker
on the test stack, a few hundred images (poison included) through Kafka, then every panel query of every
dashboard evaluated against the stack's Prometheus. A renamed metric or a broken exporter fails here.
"""

from __future__ import annotations

import contextlib
import io
import math
import random
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from kafka import KafkaProducer
from PIL import Image

from cli.stack import Stack
from tests.support.dashboards import PanelQuery, queries
from tests.support.serving import serving_settings
from tests.support.streams import (
    by_request,
    collect_results,
    producer_for,
    start_worker_process,
    stream_settings,
)
from tests.support.waiting import WaitTimeoutError, wait_until
from twinstream.config import Settings
from twinstream.metrics.scraped import scraped_value

pytestmark = [pytest.mark.system, pytest.mark.slow, pytest.mark.timeout(900)]
SUBJECTS = 10
ENROLL_PER_SUBJECT = 3
#: Traffic goes in waves, each one seen by Prometheus (from both exporters) before the next is sent:
#: a rate needs two scrapes that differ, as it would under real, continuous traffic.
WAVES = 4
#: Longest wait for Prometheus to show one wave: Ray exports every ~10 s and is scraped every 15 s.
WAVE_SEEN_S = 90.0
#: Every panel must show data within this long after the last result (Ray exports every ~10 s).
SETTLE_S = 150.0
EPOCHS = 20


def digit_pngs() -> tuple[list[bytes], np.ndarray]:
    """scikit-learn's digits as 32×32 PNGs, and their labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pngs = []
    for pixels in digits.images:
        buf = io.BytesIO()
        Image.fromarray((pixels * (255 / 16)).astype(np.uint8), mode="L").resize((32, 32)).save(buf, "PNG")
        pngs.append(buf.getvalue())
    return pngs, digits.target


class TrainingThread(threading.Thread):
    """Trains the served model in this process, exporting its epochs, while the stack starts."""

    def __init__(self, settings: Settings, models_dir: Path) -> None:
        super().__init__(daemon=True)
        self._settings, self._models_dir = settings, models_dir
        self.model_dir: Path | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        from training.config import LossKind, MinerKind, TrainConfig
        from training.metrics_export import MetricsExport
        from training.quick import train_local

        cfg = TrainConfig(
            dataset="digits", data_dir=str(self._settings.datasets_dir), loss=LossKind.TRIPLET,
            miner=MinerKind.NONE, epochs=EPOCHS, seed=0, threads=1, embedding_dim=32,
        )  # fmt: skip
        try:
            export = MetricsExport.from_settings(self._settings)
            self.model_dir = train_local(cfg, self._models_dir, metrics=export)
        except BaseException as exc:  # surfaced by the test
            self.error = exc


def send(producer: KafkaProducer, topic: str, value: bytes, **headers: str) -> None:
    producer.send(topic, value=value, headers=[(k.replace("_", "-"), v.encode()) for k, v in headers.items()])


class Scrapes:
    """What Prometheus has scraped of this test's traffic: the worker's records, the Serve app's decisions
    and its match distances (the histogram the distance panels' quantiles read)."""

    def __init__(self, prometheus_url: str, worker_instance: str) -> None:
        self._url = prometheus_url
        self._ingested = f'sum(twinstream_ingest_messages_total{{instance_name="{worker_instance}"}})'

    def ingested(self) -> float:
        return scraped_value(self._url, self._ingested) or 0.0

    def decided(self) -> float:
        return scraped_value(self._url, "sum(twinstream_decisions_total)") or 0.0

    def distances(self) -> float:
        return scraped_value(self._url, "sum(twinstream_match_distance_count)") or 0.0

    def wait_for(self, records: int, seen: tuple[float, float], what: str) -> tuple[float, float]:
        """Wait until Prometheus shows ``records`` ingested and more decisions and match distances than
        ``seen`` (``(0, -1)`` for the enrolments, which measure no distance); returns what it shows now."""

        def now() -> tuple[float, float]:
            return self.decided(), self.distances()

        wait_until(
            lambda: self.ingested() >= records and all(n > b for n, b in zip(now(), seen, strict=True)),
            WAVE_SEEN_S, f"Prometheus to scrape {what}", interval_s=1.0,
            describe=lambda: f"{self.ingested():.0f} of {records} records ingested, (decisions, distances) "
            f"{now()} (before: {seen})",
        )  # fmt: skip
        return now()


def publish_workload(settings: Settings, tenant: str, scrapes: Scrapes) -> int:
    """Enrol 10 digits, then re-enrol, identify, verify, poison and delete in waves; returns records sent.

    Each wave is sent once Prometheus has scraped the one before from both the worker and Ray's export
    (no fixed gaps: as fast as the scrapes allow on any machine).
    """
    pngs, labels = digit_pngs()
    topic = settings.kafka.images_topic
    enrol = [int(i) for d in range(SUBJECTS) for i in np.flatnonzero(labels == d)[:ENROLL_PER_SUBJECT]]
    rest = [i for i in range(len(pngs)) if i not in set(enrol)]
    producer = producer_for(settings)
    for i in enrol:
        send(producer, topic, pngs[i], op="enroll", subject=f"d{labels[i]}", tenant=tenant)
    producer.flush()
    collect_results(settings, len(enrol), timeout_s=180)  # identify against a filled gallery
    seen = scrapes.wait_for(len(enrol), (0.0, -1.0), "the enrolments")
    sent = len(enrol)
    later: list[tuple[bytes, dict[str, str]]] = [
        (pngs[i], {"op": "enroll", "subject": f"d{labels[i]}"})
        for i in enrol  # DUPLICATE, cache hits
    ]
    later += [(pngs[i], {"op": "identify"}) for i in rest[:150]]
    later += [(pngs[i], {"op": "verify", "subject": f"d{labels[i]}"}) for i in rest[150:200]]
    later += [(b"not an image at all", {"op": "identify"})] * 15
    later += [(pngs[0], {"op": "enroll"})] * 5  # missing subject
    later += [(pngs[1], {"op": "transmogrify"})] * 5  # unknown op
    random.Random(0).shuffle(later)
    later.append((b"", {"op": "delete", "subject": "d9"}))
    for wave in range(WAVES):
        for value, headers in later[wave::WAVES]:
            send(producer, topic, value, tenant=tenant, **headers)
        producer.flush()
        sent += len(later[wave::WAVES])
        seen = scrapes.wait_for(sent, seen, f"wave {wave + 1} of {WAVES}")
    producer.close()
    return sent


def evaluate(client: httpx.Client, query: PanelQuery, start: float, end: float) -> str:
    """Why ``query`` shows no usable data over [start, end] ('' when it does)."""
    response = client.get(
        "/api/v1/query_range", params={"query": query.expr, "start": start, "end": end, "step": 5}
    )
    body: dict[str, Any] = response.json()
    if body.get("status") != "success":
        return f"error {body.get('error')}"
    series = body["data"]["result"]
    values = [float(v) for s in series for _, v in s["values"]]
    if not series or not values:
        return "no data"
    if any(math.isinf(v) for v in values):
        return "infinite values"
    if not any(math.isfinite(v) for v in values):
        return "only NaN"
    return ""


def wait_for_panels(prometheus_url: str, start: float, timeout_s: float) -> dict[str, str]:
    """Re-evaluate failing panel queries until all show data or ``timeout_s`` passes; returns failures."""
    pending = {q.label: q for q in queries()}
    failures: dict[str, str] = {}
    with httpx.Client(base_url=prometheus_url, timeout=30) as client:

        def all_show_data() -> bool:
            failures.update({label: evaluate(client, q, start, time.time()) for label, q in pending.items()})
            for label in [label for label in pending if not failures[label]]:
                del pending[label]
            return not pending

        with contextlib.suppress(WaitTimeoutError):  # the caller reports which panels stayed empty
            wait_until(all_show_data, timeout_s, "every panel to show data", interval_s=5)
    return {label: why for label, why in failures.items() if why}


def test_every_dashboard_panel_shows_real_data_from_a_streaming_run(
    request: pytest.FixtureRequest, test_stack: Stack, prometheus_url: str, tmp_path: Path, unique_name: str
):
    started = time.time()
    training = TrainingThread(test_stack.settings.model_copy(deep=True), tmp_path / "models")
    training.start()  # epochs are scraped while Kafka, Redis, Milvus and Ray start
    for part in ("kafka_bootstrap", "redis_url", "milvus_uri", "ray_address"):
        request.getfixturevalue(part)
    training.join(timeout=600)
    assert training.error is None and training.model_dir is not None, f"training failed: {training.error}"
    # The run waits for Prometheus to scrape its last epoch before its endpoint closes, however fast
    # this machine trained it (the training panels read those values).
    last_epoch = scraped_value(prometheus_url, "max(max_over_time(twinstream_training_epochs_total[1h]))")
    assert last_epoch == EPOCHS, f"Prometheus has {last_epoch} of the training run's {EPOCHS} epochs"

    from ray import serve

    from services.app import deploy

    app_settings = serving_settings(test_stack.settings, unique_name)
    deploy(app_settings, training.model_dir)
    settings = stream_settings(app_settings, unique_name, max_poll_records=32)
    worker = start_worker_process(settings, 0, tmp_path)
    try:
        scrapes = Scrapes(prometheus_url, f"{settings.ingest.group_id}-0")
        sent = publish_workload(settings, unique_name, scrapes)
        results = collect_results(settings, sent, timeout_s=240)
        assert len(by_request(results)) >= sent, f"{len(by_request(results))} of {sent} results"
        failures = wait_for_panels(prometheus_url, started, SETTLE_S)
        assert not failures, f"panels without data: {failures}\nworker log: {worker.log.read_text()[-3000:]}"

        from cli.report import render_report

        png = render_report(prometheus_url, tmp_path / "report.png", minutes=(time.time() - started) / 60 + 1)
        assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 20_000
    finally:
        worker.stop()
        serve.delete(app_settings.serve.app_name)
