"""Metric instruments behind one small interface, so a bundle can live on prometheus-client or on Ray.

Ingest workers and the training exporter are ordinary processes with their own ``/metrics`` port and use
`PrometheusFactory` (a ``CollectorRegistry`` passed in). Serve replicas use `RayFactory`: their
instruments go through Ray's metrics agent (see the package docstring for why). Bundles only ever see
`MetricFactory`, so unit tests hand in a `PrometheusFactory` and read the values back from its registry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter
from prometheus_client import Gauge as PromGauge
from prometheus_client import Histogram as PromHistogram

Labels = Mapping[str, str]


class CounterLike(Protocol):
    """A monotonically increasing count."""

    def inc(self, value: float = 1.0, labels: Labels | None = None) -> None: ...


class GaugeLike(Protocol):
    """A value that goes up and down."""

    def set(self, value: float, labels: Labels | None = None) -> None: ...


class HistogramLike(Protocol):
    """A distribution of observations in fixed buckets."""

    def observe(self, value: float, labels: Labels | None = None) -> None: ...


class MetricFactory(Protocol):
    """Creates named instruments; ``labels`` are the label names every observation must give."""

    def counter(self, name: str, doc: str, labels: Sequence[str] = ()) -> CounterLike: ...

    def gauge(self, name: str, doc: str, labels: Sequence[str] = ()) -> GaugeLike: ...

    def histogram(
        self, name: str, doc: str, buckets: Sequence[float], labels: Sequence[str] = ()
    ) -> HistogramLike: ...


class _PromInstrument:
    """prometheus-client's ``labels(...)`` style behind the ``labels=`` keyword of this interface."""

    def __init__(self, metric: Any, has_labels: bool) -> None:
        self._metric = metric
        self._has_labels = has_labels

    def _child(self, labels: Labels | None) -> Any:
        return self._metric.labels(**(labels or {})) if self._has_labels else self._metric

    def inc(self, value: float = 1.0, labels: Labels | None = None) -> None:
        self._child(labels).inc(value)

    def set(self, value: float, labels: Labels | None = None) -> None:
        self._child(labels).set(value)

    def observe(self, value: float, labels: Labels | None = None) -> None:
        self._child(labels).observe(value)


class PrometheusFactory:
    """Instruments registered in ``registry`` (exported by the process's own HTTP endpoint)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def counter(self, name: str, doc: str, labels: Sequence[str] = ()) -> CounterLike:
        return _PromInstrument(PromCounter(name, doc, list(labels), registry=self.registry), bool(labels))

    def gauge(self, name: str, doc: str, labels: Sequence[str] = ()) -> GaugeLike:
        return _PromInstrument(PromGauge(name, doc, list(labels), registry=self.registry), bool(labels))

    def histogram(
        self, name: str, doc: str, buckets: Sequence[float], labels: Sequence[str] = ()
    ) -> HistogramLike:
        metric = PromHistogram(name, doc, list(labels), registry=self.registry, buckets=list(buckets))
        return _PromInstrument(metric, bool(labels))


class _RayInstrument:
    def __init__(self, metric: Any) -> None:
        self._metric = metric

    def inc(self, value: float = 1.0, labels: Labels | None = None) -> None:
        self._metric.inc(value, tags=dict(labels) if labels else None)

    def set(self, value: float, labels: Labels | None = None) -> None:
        self._metric.set(value, tags=dict(labels) if labels else None)

    def observe(self, value: float, labels: Labels | None = None) -> None:
        self._metric.observe(value, tags=dict(labels) if labels else None)


def _tags(labels: Sequence[str]) -> Any:
    # Ray annotates ``tag_keys`` as ``tuple[str]`` (one element); it accepts any tuple of names.
    return tuple(labels)


class RayFactory:
    """Instruments from ``ray.serve.metrics``: exported by Ray's metrics agent with Serve's
    ``deployment``, ``replica`` and ``application`` labels added; Ray prefixes names with ``ray_``,
    which the Prometheus ``ray`` job strips again (``metric_relabel_configs``).
    """

    def counter(self, name: str, doc: str, labels: Sequence[str] = ()) -> CounterLike:
        from ray.serve import metrics

        return _RayInstrument(metrics.Counter(name, description=doc, tag_keys=_tags(labels)))

    def gauge(self, name: str, doc: str, labels: Sequence[str] = ()) -> GaugeLike:
        from ray.serve import metrics

        return _RayInstrument(metrics.Gauge(name, description=doc, tag_keys=_tags(labels)))

    def histogram(
        self, name: str, doc: str, buckets: Sequence[float], labels: Sequence[str] = ()
    ) -> HistogramLike:
        from ray.serve import metrics

        metric = metrics.Histogram(name, description=doc, boundaries=list(buckets), tag_keys=_tags(labels))
        return _RayInstrument(metric)
