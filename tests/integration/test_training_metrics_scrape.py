"""A training run shorter than a scrape interval still reaches Prometheus: it waits for the scrape."""

from __future__ import annotations

import math

import pytest

from training.metrics_export import MetricsExport, exporting
from twinstream.config import Settings
from twinstream.metrics.scraped import scraped_value

pytestmark = pytest.mark.integration


def epoch_report(epoch: int) -> dict[str, float]:
    return {"epoch": epoch, "loss": 1 / epoch, "seconds": 0.1, "images_per_s": 900.0, "val_auc": 0.9}


def test_a_run_that_ends_at_once_keeps_its_metrics_up_until_prometheus_has_its_last_epoch(
    prometheus_url: str, stack_settings: Settings, unique_name: str
) -> None:
    export = MetricsExport.from_settings(stack_settings)
    assert export.prometheus_url == prometheus_url
    run = f"it-{unique_name}"
    with exporting(export, run) as observe:
        for epoch in (1, 2, 3):
            observe([epoch_report(epoch)])

    def highest(metric: str) -> float | None:
        # The endpoint is gone: its series end in staleness markers, so look back over a window.
        return scraped_value(
            prometheus_url, f'max_over_time(twinstream_training_{metric}{{run="{run}"}}[10m])'
        )

    assert highest("epochs_total") == 3, "Prometheus never scraped the run's last epoch"
    assert highest("epoch") == 3
    assert math.isclose(highest("val_auc") or 0, 0.9)
