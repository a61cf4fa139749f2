"""The proof that every Grafana panel shows real data: a training run, the Serve app and an ingest worker
on the test stack, a few hundred images (poison included) through Kafka, then every panel query of every
dashboard evaluated against the stack's Prometheus. A renamed metric or a broken exporter fails here.
"""

from __future__ import annotations

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
from twinstream.config import Settings

pytestmark = [pytest.mark.system, pytest.mark.slow, pytest.mark.timeout(900)]
SUBJECTS = 10
ENROLL_PER_SUBJECT = 3
WAVES, WAVE_GAP_S = 12, 5.0
#: Every panel must show data within this long after the last result (Ray exports every ~10 s).
SETTLE_S = 150.0


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
            miner=MinerKind.NONE, epochs=20, seed=0, threads=1, embedding_dim=32,
        )  # fmt: skip
        try:
            export = MetricsExport.from_settings(self._settings)
            self.model_dir = train_local(cfg, self._models_dir, metrics=export)
        except BaseException as exc:  # surfaced by the test
            self.error = exc


def send(producer: KafkaProducer, topic: str, value: bytes, **headers: str) -> None:
    producer.send(topic, value=value, headers=[(k.replace("_", "-"), v.encode()) for k, v in headers.items()])


def publish_workload(settings: Settings, tenant: str) -> int:
    """Enrol 10 digits, then re-enrol, identify, verify, poison and delete in waves; returns records sent.

    Waves keep traffic flowing for about a minute: Ray exports Serve metrics every ~10 s and a rate needs
    two exports that differ, as it would under real, continuous traffic.
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
        time.sleep(WAVE_GAP_S)
    producer.close()
    return len(enrol) + len(later)


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


def wait_for_panels(prometheus_url: str, start: float, deadline: float) -> dict[str, str]:
    """Re-evaluate failing panel queries until all show data or the deadline passes; returns failures."""
    pending = {q.label: q for q in queries()}
    failures: dict[str, str] = {}
    with httpx.Client(base_url=prometheus_url, timeout=30) as client:
        while pending:
            failures = {label: evaluate(client, q, start, time.time()) for label, q in pending.items()}
            pending = {label: pending[label] for label, why in failures.items() if why}
            if not pending or time.monotonic() > deadline:
                break
            time.sleep(5)
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

    from ray import serve

    from services.app import deploy

    app_settings = serving_settings(test_stack.settings, unique_name)
    deploy(app_settings, training.model_dir)
    settings = stream_settings(app_settings, unique_name, max_poll_records=32)
    worker = start_worker_process(settings, 0, tmp_path)
    try:
        sent = publish_workload(settings, tenant=unique_name)
        results = collect_results(settings, sent, timeout_s=240)
        assert len(by_request(results)) >= sent, f"{len(by_request(results))} of {sent} results"
        failures = wait_for_panels(prometheus_url, started, time.monotonic() + SETTLE_S)
        assert not failures, f"panels without data: {failures}\nworker log: {worker.log.read_text()[-3000:]}"

        from cli.report import render_report

        png = render_report(prometheus_url, tmp_path / "report.png", minutes=(time.time() - started) / 60 + 1)
        assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 20_000
    finally:
        worker.stop()
        serve.delete(app_settings.serve.app_name)
