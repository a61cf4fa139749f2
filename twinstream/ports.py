"""Protocols between stages: what a stage needs from another, not how it is built (CONVENTIONS.md §3)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from twinstream.contracts import ImageRequest, MatchResult


class MatchPipeline(Protocol):
    """Embed, match or store, and decide for a batch of requests: one call per Kafka poll.

    The Ray Serve app implements it (its deployment handle's ``process``); ingest workers and tests
    call it through this shape. Results come back in request order, one per request.
    """

    def process(self, requests: Sequence[ImageRequest]) -> list[MatchResult]: ...


def stores_results(pipeline: object) -> bool:
    """Whether ``pipeline`` writes its results to the result store itself (the Serve pipeline does).

    Callers then store only the results they made themselves (refusals found before the pipeline), and
    each result is written once.
    """
    return bool(getattr(pipeline, "stores_results", False))


class ResultSink(Protocol):
    """Where finished results go besides Kafka (the Redis result store)."""

    def put_many(self, results: Sequence[MatchResult]) -> None: ...
