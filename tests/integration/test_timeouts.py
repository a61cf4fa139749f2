"""Redis and Milvus that stop answering: calls fail within the configured timeout, a worker stops promptly.

The dependencies here are real (the test stack's broker and milvus-lite server) except where a test opens
a black hole (a listening socket that never answers) or freezes a relay in front of the real server.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import grpc
import numpy as np
import pytest
import redis
from pymilvus.exceptions import MilvusException

from services.gallery.client import connect_with
from services.gallery.milvus_gallery import MilvusGallery
from services.gallery.names import collection_name
from services.gallery.schema import ensure_collection
from services.ingest.failures import FailureKind, classify
from services.ingest.main import build_worker
from services.ingest.observer import NullObserver
from tests.support.blackhole import BlackHole, FreezableRelay
from tests.support.streams import digit_png, producer_for, stream_settings
from tests.support.waiting import wait_until
from twinstream.config import MilvusSettings, Settings
from twinstream.contracts import Decision, ImageRequest, MatchResult

pytestmark = pytest.mark.integration
TIMEOUT_S = 0.5
#: Slack on top of a timeout for scheduling on a loaded 2-core machine (a hang is ≥ 30 s here).
SLACK_S = 1.5


@dataclass
class Outcome:
    seconds: float
    error: BaseException | None
    finished: bool


def timed(call: Callable[[], object], watchdog_s: float = 30.0) -> Outcome:
    """Run ``call`` on a thread; how long it took and what it raised, or unfinished after ``watchdog_s``."""
    out: dict[str, Any] = {}

    def run() -> None:
        started = time.monotonic()
        try:
            call()
        except BaseException as exc:  # reported to the test
            out["error"] = exc
        out["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(watchdog_s)
    return Outcome(out.get("seconds", watchdog_s), out.get("error"), not thread.is_alive())


class Echo:
    """Test-double pipeline: answers ENROLLED."""

    def process(self, requests: Sequence[ImageRequest]) -> list[MatchResult]:
        return [MatchResult(r.request_id, r.op, Decision.ENROLLED, r.tenant, r.subject) for r in requests]


class RetryClock(NullObserver):
    """Notes when each stage's retries happened and when each stage last finished."""

    def __init__(self) -> None:
        self.retries: dict[str, list[float]] = {}
        self.finished: dict[str, float] = {}

    def on_retry(self, stage: str) -> None:
        self.retries.setdefault(stage, []).append(time.monotonic())

    def on_stage(self, stage: str, seconds: float) -> None:
        self.finished[stage] = time.monotonic()


def test_a_worker_whose_result_store_is_black_holed_fails_each_write_in_time_and_stops_promptly(
    stack_settings: Settings, kafka_bootstrap: str, unique_name: str
) -> None:
    with BlackHole() as hole:
        settings = stream_settings(stack_settings, unique_name)
        settings.redis = settings.redis.model_copy(
            update={
                "url": f"redis://127.0.0.1:{hole.port}/0",
                "socket_timeout_s": TIMEOUT_S,
                "connect_timeout_s": TIMEOUT_S,
            }
        )
        producer = producer_for(settings)
        for i in range(3):
            producer.send(
                settings.kafka.images_topic, digit_png(i), headers=[("op", b"enroll"), ("subject", b"s")]
            )
        producer.flush()
        producer.close()
        pipeline, clock = Echo(), RetryClock()
        worker = build_worker(settings, pipeline, observer=clock)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        try:
            wait_until(lambda: len(clock.retries.get("sink", ())) >= 2, 60, "two failed result-store writes")
            first_failure = clock.retries["sink"][0] - clock.finished["publish"]  # the write came next
            assert first_failure < TIMEOUT_S + SLACK_S, f"the first write failed after {first_failure:.1f}s"
        finally:
            asked = time.monotonic()
            worker.request_stop()
            thread.join(timeout=60)
        stopped_in = time.monotonic() - asked
    assert not thread.is_alive() and stopped_in < TIMEOUT_S + SLACK_S, f"stopped after {stopped_in:.1f}s"


def test_a_redis_client_from_settings_fails_within_its_timeouts_against_a_black_hole() -> None:
    from services.results.redis_client import redis_client
    from twinstream.config import RedisSettings

    with BlackHole() as hole:
        url = f"redis://127.0.0.1:{hole.port}/0"
        client = redis_client(RedisSettings(url=url, socket_timeout_s=TIMEOUT_S, connect_timeout_s=TIMEOUT_S))
        outcome = timed(client.ping)
    assert isinstance(outcome.error, redis.TimeoutError), outcome
    assert outcome.seconds < TIMEOUT_S + SLACK_S


def test_connecting_to_a_black_holed_milvus_fails_within_its_timeout() -> None:
    with BlackHole() as hole:
        settings = MilvusSettings(uri=f"http://127.0.0.1:{hole.port}", timeout_s=TIMEOUT_S)
        outcome = timed(lambda: connect_with(settings))
    assert isinstance(outcome.error, MilvusException), outcome
    attempts, pauses = 3, 0.5 + 1.0  # connect's own retries of a failed connect
    assert outcome.seconds < attempts * TIMEOUT_S + pauses + SLACK_S


def test_a_gallery_call_to_a_milvus_that_stopped_answering_fails_within_its_timeout(
    milvus_uri: str, unique_name: str
) -> None:
    target = urlsplit(milvus_uri)
    with FreezableRelay(target.hostname or "127.0.0.1", target.port or 19530) as relay:
        settings = MilvusSettings(uri=f"http://127.0.0.1:{relay.port}", timeout_s=2.0, index_type="FLAT")
        client = connect_with(settings)
        name = collection_name("ittimeout", unique_name)
        ensure_collection(client, name, 4, settings)
        gallery = MilvusGallery(client, name)
        query = np.ones((1, 4), dtype=np.float32) / 2
        assert gallery.search("t", query, top_k=1) == [[]]  # through the relay while it relays
        relay.freeze()
        outcome = timed(lambda: gallery.search("t", query, top_k=1))
        assert outcome.finished, "the search was still blocked after 30 s"
        assert outcome.seconds < settings.timeout_s + SLACK_S, f"failed after {outcome.seconds:.1f}s"
        # gRPC's DEADLINE_EXCEEDED (pymilvus passes it through): an outage to the worker, never poison.
        assert isinstance(outcome.error, grpc.RpcError | MilvusException), outcome
        assert classify(outcome.error) is FailureKind.OUTAGE
    direct = connect_with(MilvusSettings(uri=milvus_uri))
    direct.drop_collection(name)
