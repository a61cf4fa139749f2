"""Prometheus metrics of a training run, updated after every epoch while the run goes.

Gauges labelled by ``run`` (one value per run: a handful of series per training, never per step).
The training driver serves them on ``settings.metrics.training_port`` (see `twinstream.metrics.endpoint`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

#: Epoch-report keys (``training.engine.EpochRecord``) → gauge attribute; rank 0 carries validation.
_VALIDATION_KEYS = {"val_auc": "val_auc", "val_eer": "val_eer", "val_oneshot": "oneshot_accuracy"}


def _gauge(name: str, doc: str, registry: CollectorRegistry) -> Gauge:
    return Gauge(name, doc, ["run"], registry=registry)


@dataclass(frozen=True)
class TrainingMetrics:
    """Per-run gauges of loss, validation quality and speed (create with `TrainingMetrics.create`)."""

    epoch: Gauge
    epochs: Counter
    loss: Gauge
    val_auc: Gauge
    val_eer: Gauge
    oneshot_accuracy: Gauge
    epoch_seconds: Gauge
    images_per_second: Gauge
    workers: Gauge
    last_report: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> TrainingMetrics:
        """Register every training instrument in ``registry``."""
        r = registry
        return cls(
            epoch=_gauge("twinstream_training_epoch", "Last finished epoch", r),
            epochs=Counter("twinstream_training_epochs_total", "Epochs finished", ["run"], registry=r),
            loss=_gauge("twinstream_training_loss", "Mean training loss of the last epoch (all workers)", r),
            val_auc=_gauge("twinstream_training_val_auc", "Validation ROC AUC (verification pairs)", r),
            val_eer=_gauge("twinstream_training_val_eer", "Validation equal error rate", r),
            oneshot_accuracy=_gauge(
                "twinstream_training_oneshot_accuracy", "Validation N-way one-shot accuracy (N ≤ 20)", r
            ),
            epoch_seconds=_gauge("twinstream_training_epoch_seconds", "Wall time of the last epoch", r),
            images_per_second=_gauge(
                "twinstream_training_images_per_second",
                "Training throughput of the last epoch (all workers)",
                r,
            ),
            workers=_gauge("twinstream_training_workers", "Workers that reported the last epoch", r),
            last_report=_gauge(
                "twinstream_training_last_report_timestamp_seconds", "Unix time of the last epoch report", r
            ),
        )

    def observe_epoch(self, run: str, reports: Sequence[Mapping[str, float]]) -> None:
        """Record one epoch from every worker's report (``EpochRecord.as_metrics()``; rank 0 first).

        NaN validation values (an epoch without validation) leave the previous value in place.
        """
        if not reports:
            return
        first = reports[0]
        labels = {"run": run}
        losses = [float(r["loss"]) for r in reports if math.isfinite(float(r.get("loss", math.nan)))]
        if losses:
            self.loss.labels(**labels).set(sum(losses) / len(losses))
        self.epoch.labels(**labels).set(float(first.get("epoch", 0)))
        self.epochs.labels(**labels).inc()
        self.epoch_seconds.labels(**labels).set(max(float(r.get("seconds", 0.0)) for r in reports))
        self.images_per_second.labels(**labels).set(sum(float(r.get("images_per_s", 0.0)) for r in reports))
        self.workers.labels(**labels).set(len(reports))
        for key, attr in _VALIDATION_KEYS.items():
            value = float(first.get(key, math.nan))
            if math.isfinite(value):
                getattr(self, attr).labels(**labels).set(value)
        self.last_report.labels(**labels).set(time.time())
