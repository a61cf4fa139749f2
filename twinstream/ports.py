"""Protocols between stages: what a stage needs from another, not how it is built (CONVENTIONS.md §3)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from twinstream.contracts import ImageRequest, MatchResult
from twinstream.images.prepared import PreparedBatch
from twinstream.images.preprocess import InputSpec


class MatchPipeline(Protocol):
    """Embed, match or store, and decide for a batch of requests: one call per Kafka poll.

    The Ray Serve app implements it (its deployment handle's ``process``); ingest workers and tests
    call it through this shape. Results come back in request order, one per request.
    """

    def process(self, requests: Sequence[ImageRequest]) -> Sequence[MatchResult]: ...


@runtime_checkable
class PreparingPipeline(MatchPipeline, Protocol):
    """A `MatchPipeline` that also takes batches whose images the caller decoded (`PreparedBatch`).

    Ingest workers use it when the pipeline offers it: they decode and resize for ``input_spec()``
    and call ``process_prepared``, which raises `twinstream.images.prepared.StaleInputSpecError` when the
    served model's spec has changed since (ask ``input_spec()`` again and re-prepare).
    """

    def input_spec(self) -> InputSpec: ...

    def process_prepared(self, batch: PreparedBatch) -> Sequence[MatchResult]: ...


def stores_results(pipeline: object) -> bool:
    """Whether ``pipeline`` writes its results to the result store itself (the Serve pipeline does).

    Callers then store only the results they made themselves (refusals found before the pipeline), and
    each result is written once.
    """
    return bool(getattr(pipeline, "stores_results", False))


class ResultSink(Protocol):
    """Where finished results go besides Kafka (the Redis result store)."""

    def put_many(self, results: Sequence[MatchResult]) -> None: ...


class ResultStore(ResultSink, Protocol):
    """A result sink that is read back by (tenant, request id) (a replayed request is answered from it).

    Request ids are the producers' own, so they are unique only within a tenant.
    """

    def get_many(self, keys: Sequence[tuple[str, str]]) -> list[MatchResult | None]: ...
