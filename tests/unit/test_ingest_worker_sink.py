"""The worker writes each result to the result store once: a storing pipeline's answers are not re-written."""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest

from services.ingest.worker import IngestWorker
from twinstream.config import Settings
from twinstream.contracts import Decision, ImageRequest, MatchResult


class Pipeline:
    def __init__(self, stores: bool) -> None:
        self.stores_results = stores

    def process(self, requests: Sequence[ImageRequest]) -> list[MatchResult]:
        return [MatchResult(r.request_id, r.op, Decision.ENROLLED, subject=r.subject) for r in requests]


class Consumer:
    """One poll with a valid and a poison record, then nothing."""

    def __init__(self) -> None:
        self.committed: list[dict[Any, Any]] = []
        headers = [("op", b"enroll"), ("subject", b"ann")]
        self._batch = {
            "tp": [
                SimpleNamespace(topic="img", partition=0, offset=0, value=b"png", headers=headers, key=None,
                                timestamp=1),
                SimpleNamespace(topic="img", partition=0, offset=1, value=b"png", headers=[("op", b"??")],
                                key=None, timestamp=1),
            ]
        }  # fmt: skip

    def poll(self, **_: Any) -> dict[str, list[Any]]:
        batch, self._batch = self._batch, {}
        return batch

    def commit(self, offsets: dict[Any, Any], **_: Any) -> None:
        self.committed.append(offsets)

    def assignment(self) -> set[Any]:
        return set()


class Publisher:
    def publish(self, results: Sequence[MatchResult], dead: Sequence[Any]) -> None:
        self.published = (list(results), list(dead))


class Sink:
    def __init__(self) -> None:
        self.stored: list[str] = []

    def put_many(self, results: Sequence[MatchResult]) -> None:
        self.stored += [r.request_id for r in results]


@pytest.mark.parametrize(("stores", "expected"), [(True, ["img-0-1"]), (False, ["img-0-0", "img-0-1"])])
def test_the_worker_stores_only_what_the_pipeline_did_not(stores: bool, expected: list[str]) -> None:
    consumer, publisher, sink = Consumer(), Publisher(), Sink()
    worker = IngestWorker(consumer, publisher, Pipeline(stores), Settings(), sink=sink)  # type: ignore[arg-type]
    assert worker.run_once() == 2
    assert sink.stored == expected
    assert [r.request_id for r in publisher.published[0]] == ["img-0-0", "img-0-1"]
    assert [o.offset for o in consumer.committed[0].values()] == [2]
