"""A training run's Prometheus endpoint: epoch reports → `TrainingMetrics` → ``/metrics`` while it runs.

The endpoint listens on ``settings.metrics.training_port`` (an ephemeral port when taken) and is
registered with the local stack's Prometheus as job ``twinstream-training``. In-process training
(``--workers 0``) uses `exporting`; Ray Train runs use `training.metrics_callback.PrometheusCallback`.
Only plain values (`MetricsExport`) travel to Ray's controller, never the settings object.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from twinstream.config import Settings
from twinstream.metrics import TRAINING_JOB, MetricsEndpoint, TrainingMetrics, start_endpoint


@dataclass(frozen=True)
class MetricsExport:
    """Where a training run serves its metrics (from ``settings.metrics`` and ``settings.paths``)."""

    port: int
    host: str = "127.0.0.1"
    state_dir: Path | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> MetricsExport:
        state_dir = settings.paths.state_dir.resolve()
        return cls(settings.metrics.training_port, settings.metrics.host, state_dir)

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
        registry = CollectorRegistry()
        self._metrics = TrainingMetrics.create(registry)
        self.endpoint: MetricsEndpoint = start_endpoint(
            registry, export.port, state_dir=export.state_dir, job=TRAINING_JOB, name=run, host=export.host
        )

    def observe(self, reports: Sequence[Mapping[str, Any]]) -> None:
        self._metrics.observe_epoch(self.run, [{k: float(v) for k, v in r.items()} for r in reports])

    def close(self) -> None:
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
