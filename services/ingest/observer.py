"""The ingest worker's metrics hook: a Protocol of callbacks (faust-style observer) and a no-op default.

The Prometheus bundle implements `WorkerObserver`; the worker calls it and never imports a metrics
library itself, so tests and other backends can hand in their own.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from twinstream.contracts import Decision, Op, RejectReason


@runtime_checkable
class WorkerObserver(Protocol):
    """Callbacks an ingest worker makes as it works; implementations must be cheap and never raise."""

    def on_batch(self, size: int, seconds: float) -> None:
        """A polled batch of ``size`` records was processed, published and committed in ``seconds``."""

    def on_result(self, op: Op | None, decision: Decision) -> None:
        """One result was published (``op`` is None when the record was refused before its op was read)."""

    def on_dlq(self, reason: RejectReason) -> None:
        """One record was dead-lettered with ``reason``."""

    def on_lag(self, topic: str, partition: int, lag: int) -> None:
        """Consumer lag (high watermark minus position) of an assigned partition, after a commit."""

    def on_retry(self, stage: str) -> None:
        """A dependency failed at ``stage`` (``pipeline``, ``publish``, ``sink``, ``commit``); backing off."""

    def on_rebalance(self, assigned: int) -> None:
        """The group rebalanced; this worker now owns ``assigned`` partitions."""

    def on_acknowledged(self, seconds: float) -> None:
        """A record's result was acknowledged and its offset committed ``seconds`` after its timestamp."""

    def on_commit_failed(self) -> None:
        """A commit was refused because the group rebalanced mid-batch (the new owner replays the batch)."""


@runtime_checkable
class StageObserver(Protocol):
    """Optional extra an observer may implement: the time of each stage of a batch."""

    def on_stage(self, stage: str, seconds: float) -> None:
        """One stage (``pipeline``, ``publish``, ``sink``, ``commit``) of a batch took ``seconds``."""


class NullObserver:
    """An observer that records nothing (the default)."""

    def on_batch(self, size: int, seconds: float) -> None:
        pass

    def on_result(self, op: Op | None, decision: Decision) -> None:
        pass

    def on_dlq(self, reason: RejectReason) -> None:
        pass

    def on_lag(self, topic: str, partition: int, lag: int) -> None:
        pass

    def on_retry(self, stage: str) -> None:
        pass

    def on_rebalance(self, assigned: int) -> None:
        pass

    def on_acknowledged(self, seconds: float) -> None:
        pass

    def on_commit_failed(self) -> None:
        pass
