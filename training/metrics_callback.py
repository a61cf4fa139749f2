"""Ray Train callback exporting each epoch report to Prometheus while the run goes.

Ray Train calls `PrometheusCallback.after_report` in its controller actor, which runs on the driver's
node; the `EpochExporter` (``/metrics`` endpoint) is started there on the first report. Ray Train has no
end-of-run callback and the controller (and its endpoint) goes away with the run, so the report of the
final epoch waits until Prometheus has scraped it.
"""

from __future__ import annotations

from typing import Any

from ray.train import UserCallback

from training.metrics_export import EpochExporter, MetricsExport


class PrometheusCallback(UserCallback):
    """Exports every epoch report of run ``run`` (rank 0's validation, all workers' loss and speed)."""

    def __init__(self, export: MetricsExport, run: str, final_epoch: int = 0) -> None:
        self._export = export
        self._run = run
        self._final_epoch = final_epoch
        self._exporter: EpochExporter | None = None

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        if not metrics:
            return
        if self._exporter is None:
            self._exporter = EpochExporter(self._export, self._run)
        self._exporter.observe(metrics)
        if self._final_epoch and float(metrics[0].get("epoch", 0)) >= self._final_epoch:
            self._exporter.wait_until_scraped()

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles the callback into the controller: a running server does not travel.
        return {**self.__dict__, "_exporter": None}
