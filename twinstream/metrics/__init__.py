"""Prometheus metrics: one bundle per service, instruments created in a registry passed in (CONVENTIONS §9).

- `IngestMetrics` — the ingest worker's `WorkerObserver`, on prometheus-client; each worker process
  serves its own registry on ``settings.metrics.ingest_base_port + index`` (`start_endpoint`) and
  registers it with the local Prometheus through file-SD (job ``twinstream-ingest``).
- `EmbedderMetrics` / `PipelineMetrics` — the Serve deployments, on **Ray's metrics**
  (``ray.serve.metrics`` via `RayFactory`), exported by Ray's per-node metrics agent.
  Why Ray's and not prometheus-client: replicas are actors that Serve starts, moves and restarts, and
  several share a node, so a port per replica would need a port allocator and a scrape-target file
  per replica that outlives crashes. Ray's agent already aggregates every replica of a node on one
  export port, Ray writes the file-SD list of those ports itself, and ``ray.serve.metrics`` adds the
  ``deployment``, ``replica`` and ``application`` labels for free. Ray prefixes custom names with
  ``ray_``; the Prometheus ``ray`` job strips it for ``ray_twinstream_*`` so every twinstream series is
  named ``twinstream_*`` whichever exporter produced it. One caveat: Ray's histogram ``_sum`` is built
  from bucket midpoints, so dashboards use quantiles (``histogram_quantile``), not ``_sum/_count``.
- `TrainingMetrics` — the training run's gauges (loss, validation AUC/EER, one-shot accuracy, epoch
  time), served on ``settings.metrics.training_port`` by the process running Ray Train's callbacks
  (job ``twinstream-training``), so a run is visible in Prometheus while it goes.

Names follow Prometheus conventions (``twinstream_…_total`` counters, ``_seconds`` base units) and
labels stay low-cardinality: never a request id or a subject.
"""

from twinstream.metrics.endpoint import MetricsEndpoint, start_endpoint
from twinstream.metrics.factory import MetricFactory, PrometheusFactory, RayFactory
from twinstream.metrics.ingest import IngestMetrics
from twinstream.metrics.serve import EmbedderMetrics, PipelineMetrics
from twinstream.metrics.training import TrainingMetrics

INGEST_JOB = "twinstream-ingest"
TRAINING_JOB = "twinstream-training"

__all__ = [
    "INGEST_JOB",
    "TRAINING_JOB",
    "EmbedderMetrics",
    "IngestMetrics",
    "MetricFactory",
    "MetricsEndpoint",
    "PipelineMetrics",
    "PrometheusFactory",
    "RayFactory",
    "TrainingMetrics",
    "start_endpoint",
]
