"""Training bundle: one epoch report per call, validation kept when an epoch did not validate."""

from __future__ import annotations

import json
import math
import pickle

import httpx
import pytest
from prometheus_client import CollectorRegistry

from twinstream.metrics import TrainingMetrics

RUN = {"run": "twinstream-digits-1"}


def _epoch(epoch: int, loss: float, auc: float = math.nan, images: float = 500.0) -> dict[str, float]:
    validation = {"val_auc": auc, "val_eer": 1 - auc, "val_oneshot": auc - 0.1, "val_oneshot_ways": 20.0}
    return {"epoch": epoch, "loss": loss, "seconds": 3.0, "images_per_s": images, "lr": 1e-3, **validation}


def test_an_epoch_sets_mean_loss_summed_throughput_and_validation_of_rank_zero():
    registry = CollectorRegistry()
    TrainingMetrics.create(registry).observe_epoch(RUN["run"], [_epoch(1, 0.4, 0.9), _epoch(1, 0.2)])
    value = registry.get_sample_value
    assert value("twinstream_training_loss", RUN) == pytest.approx(0.3)
    assert value("twinstream_training_images_per_second", RUN) == 1000
    assert value("twinstream_training_val_auc", RUN) == 0.9
    assert value("twinstream_training_oneshot_accuracy", RUN) == pytest.approx(0.8)
    assert value("twinstream_training_workers", RUN) == 2
    assert value("twinstream_training_epochs_total", RUN) == 1


def test_an_epoch_without_validation_keeps_the_last_validation_values():
    registry = CollectorRegistry()
    metrics = TrainingMetrics.create(registry)
    metrics.observe_epoch(RUN["run"], [_epoch(1, 0.5, 0.8)])
    metrics.observe_epoch(RUN["run"], [_epoch(2, 0.3)])  # val_every=2: NaN validation
    value = registry.get_sample_value
    assert value("twinstream_training_val_auc", RUN) == 0.8
    assert value("twinstream_training_epoch", RUN) == 2
    assert value("twinstream_training_loss", RUN) == 0.3


def test_runs_are_separate_series():
    registry = CollectorRegistry()
    metrics = TrainingMetrics.create(registry)
    metrics.observe_epoch("a", [_epoch(1, 0.5)])
    metrics.observe_epoch("b", [_epoch(4, 0.1)])
    assert registry.get_sample_value("twinstream_training_epoch", {"run": "a"}) == 1
    assert registry.get_sample_value("twinstream_training_epoch", {"run": "b"}) == 4


def test_in_process_training_serves_each_epoch_and_unregisters_when_done(tmp_path):
    from training.metrics_export import MetricsExport, exporting

    (tmp_path / "prometheus").mkdir()
    export = MetricsExport(port=0, state_dir=tmp_path)
    with exporting(export, "run-1") as observe:
        observe([_epoch(3, 0.25, 0.95)])
        target = export.target_file("run-1")
        assert target is not None and target.exists()
        port = json.loads(target.read_text())[0]["targets"][0].split(":")[1]
        body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert 'twinstream_training_val_auc{run="run-1"} 0.95' in body
    assert not target.exists()


def test_ray_callback_travels_without_its_server_and_exports_on_the_first_report(tmp_path):
    from training.metrics_callback import PrometheusCallback
    from training.metrics_export import MetricsExport

    callback = PrometheusCallback(MetricsExport(port=0, state_dir=tmp_path), "run-2")
    callback.after_report(None, [_epoch(1, 0.5, 0.7)], None)
    copy = pickle.loads(pickle.dumps(callback))  # what Ray ships to its controller
    assert copy.__dict__["_exporter"] is None
    exporter = callback.__dict__["_exporter"]
    try:
        body = httpx.get(exporter.endpoint.url, timeout=5).text
        assert 'twinstream_training_epoch{run="run-2"} 1.0' in body
    finally:
        exporter.close()


def test_ray_callback_waits_for_the_scrape_of_the_final_epoch_only(tmp_path, monkeypatch):
    from training.metrics_callback import PrometheusCallback
    from training.metrics_export import EpochExporter, MetricsExport

    waits: list[str] = []
    monkeypatch.setattr(EpochExporter, "wait_until_scraped", lambda self: waits.append(self.run) or True)
    callback = PrometheusCallback(MetricsExport(port=0, state_dir=tmp_path), "run-3", final_epoch=2)
    try:
        callback.after_report(None, [_epoch(1, 0.5)], None)
        assert waits == []
        callback.after_report(None, [_epoch(2, 0.4)], None)
        assert waits == ["run-3"]  # the controller ends with the run: its last report waits
    finally:
        callback.__dict__["_exporter"].endpoint.close()


def test_waiting_for_a_scrape_gives_up_at_once_when_prometheus_does_not_answer(tmp_path):
    import socket
    import time

    from training.metrics_export import EpochExporter, MetricsExport

    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    (tmp_path / "prometheus").mkdir()
    export = MetricsExport(port=0, state_dir=tmp_path, prometheus_url=url, final_scrape_timeout_s=60)
    exporter = EpochExporter(export, "run-4")
    exporter.observe([_epoch(1, 0.5)])
    started = time.monotonic()
    assert exporter.wait_until_scraped() is False
    exporter.close()
    assert time.monotonic() - started < 5
    assert not (tmp_path / "prometheus" / "targets" / "twinstream-training-run-4.json").exists()
