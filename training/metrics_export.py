"""A training run's Prometheus endpoint: epoch reports → `TrainingMetrics` → ``/metrics`` while it runs.

The endpoint listens on ``settings.metrics.training_port`` (an ephemeral port when taken) and is
registered with the local stack's Prometheus as job ``twinstream-training``. In-process training
(``--workers 0``) uses `exporting`; Ray Train runs use `training.metrics_callback.PrometheusCallback`.
Only plain values (`MetricsExport`) travel to Ray's controller, never the settings object.

A run can end within one scrape interval of its last epoch (digits trains in seconds), so before the
endpoint closes it waits until the local Prometheus shows the run's final epoch count
(`EpochExporter.wait_until_scraped`, bounded by ``metrics.final_scrape_timeout_s``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from twinstream.config import Settings
from twinstream.metrics import TRAINING_JOB, MetricsEndpoint, TrainingMetrics, start_endpoint
from twinstream.metrics.scraped import wait_until_scraped

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MetricsExport:
    """Where a training run serves its metrics (from ``settings.metrics`` and ``settings.paths``)."""

    port: int
    host: str = "127.0.0.1"
    state_dir: Path | None = None
    prometheus_url: str = ""  # the local Prometheus that scrapes registered runs ("" : none to wait for)
    final_scrape_timeout_s: float = 60.0

    @classmethod
    def from_settings(cls, settings: Settings) -> MetricsExport:
        m = settings.metrics
        state_dir = settings.paths.state_dir.resolve()
        return cls(m.training_port, m.host, state_dir, m.local_prometheus_url, m.final_scrape_timeout_s)

    def target_file(self, run: str) -> Path | None:
        """The file-SD entry a run registers (removed by `unregister` when the run ends)."""
        return (
            None
            if self.state_dir is None
            else self.state_dir / "prometheus" / "targets" / f"{TRAINING_JOB}-{run}.json"
        )

    def unregister(self, run: str) -> None:
        """Drop a finished run's scrape target (its process may have died without doing it)."""
        path = self.target_file(run)
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def run_name(dataset: str, kind: str) -> str:
    """A unique, readable run name: ``twinstream-<dataset>-<kind>-<time>-<random>``."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"twinstream-{dataset.split(':', maxsplit=1)[0]}-{kind}-{stamp}-{os.urandom(2).hex()}"


class EpochExporter:
    """Serves one run's `TrainingMetrics`; `observe` takes each epoch's per-worker reports."""

    def __init__(self, export: MetricsExport, run: str) -> None:
        self.run = run
        self._export = export
        self._observed = 0
        registry = CollectorRegistry()
        self._metrics = TrainingMetrics.create(registry)
        self.endpoint: MetricsEndpoint = start_endpoint(
            registry, export.port, state_dir=export.state_dir, job=TRAINING_JOB, name=run, host=export.host
        )

    def observe(self, reports: Sequence[Mapping[str, Any]]) -> None:
        self._metrics.observe_epoch(self.run, [{k: float(v) for k, v in r.items()} for r in reports])
        self._observed += 1

    def wait_until_scraped(self) -> bool:
        """Block until the local Prometheus shows every epoch observed so far (True), or give up (False).

        Returns at once when the run is not registered with a local Prometheus or nothing was observed.
        """
        if self.endpoint.target_file is None or not self._export.prometheus_url or not self._observed:
            return True
        expr = f'twinstream_training_epochs_total{{run="{self.run}"}}'
        started = time.monotonic()
        seen = wait_until_scraped(
            self._export.prometheus_url, expr, self._observed, timeout_s=self._export.final_scrape_timeout_s
        )
        waited = time.monotonic() - started
        if seen:
            log.info("Prometheus scraped run %s's last epoch (waited %.1fs)", self.run, waited)
        else:
            log.warning("Prometheus did not scrape run %s's last epoch within %.0fs", self.run, waited)
        return seen

    def close(self) -> None:
        """Wait for Prometheus to have the final values (`wait_until_scraped`), then stop serving."""
        try:
            self.wait_until_scraped()
        finally:
            self.endpoint.close()

    def __enter__(self) -> EpochExporter:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


Observe = Callable[[Sequence[Mapping[str, Any]]], None]


@contextlib.contextmanager
def exporting(export: MetricsExport | None, run: str) -> Iterator[Observe]:
    """For in-process training: a function taking each epoch's reports (a no-op when ``export`` is None)."""
    if export is None:
        yield lambda reports: None
        return
    with EpochExporter(export, run) as exporter:
        yield exporter.observe
