"""Delivery guarantees on the real stack: nothing lost across kill -9 and a broker restart; rebalancing.

Workers run as separate processes (as `twinstream ingest --workers N` starts them) against the real
Serve app, Milvus and Redis; the broker is the test stack's, restarted through the `kafka_broker` fixture.
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import KafkaProducer

from services.gallery.client import connect as connect_milvus
from services.gallery.milvus_gallery import MilvusGallery
from services.gallery.names import collection_name
from services.ingest.clients import build_admin
from services.ingest.results_reader import build_reader
from services.ingest.status import GroupStatus, group_status
from tests.support.serving import ServedApp
from tests.support.streams import (
    WorkerProcess,
    by_request,
    collect_dead_letters,
    collect_results,
    digit_png,
    producer_for,
    start_worker_process,
    stream_settings,
)
from tests.support.waiting import wait_until
from twinstream.config import Settings

pytestmark = [pytest.mark.system, pytest.mark.slow]
Message = tuple[str, bytes, list[tuple[str, bytes]]]


def mixed_messages(tenant: str, seed: int = 0) -> tuple[list[Message], set[tuple[str, bytes]], set[str]]:
    """1,000 messages: 350 enrolls (300 distinct), 600 identifies, 20 verifies, 30 poison.

    Returns the messages, the distinct (subject, image) pairs enrolled, and the poison request ids.
    """
    rng = random.Random(seed)
    t = ("tenant", tenant.encode())
    enrolls = [(f"p{i % 40}", digit_png(i)) for i in range(300)]
    msgs: list[Message] = []
    for subject, image in enrolls + rng.sample(enrolls, 50):
        msgs.append(("", image, [("op", b"enroll"), ("subject", subject.encode()), t]))
    msgs += [("", digit_png(300 + j % 1497), [("op", b"identify"), t]) for j in range(600)]
    msgs += [
        ("", digit_png(j), [("op", b"verify"), ("subject", f"p{j % 40}".encode()), t]) for j in range(20)
    ]
    poison_kinds: list[tuple[bytes, list[tuple[str, bytes]]]] = [
        (os.urandom(512), [("op", b"identify"), t]),
        (digit_png(1), [("op", b"dance"), t]),
        (digit_png(2), [("op", b"enroll"), t]),
        (digit_png(3)[:40], [("op", b"identify"), t]),
    ]
    msgs += [("poison", *poison_kinds[j % 4]) for j in range(30)]
    rng.shuffle(msgs)
    numbered = [
        (f"m{k}-{kind}", value, [*headers, ("request-id", f"m{k}-{kind}".encode())])
        for k, (kind, value, headers) in enumerate(msgs)
    ]
    distinct = {(s, img) for s, img in enrolls}
    return numbered, distinct, {rid for rid, _, _ in numbered if rid.endswith("-poison")}


def publish(settings: Settings, messages: list[Message]) -> None:
    producer = producer_for(settings)
    for _, value, headers in messages:
        producer.send(settings.kafka.images_topic, value, headers=headers)
    producer.flush()
    producer.close()


def wait_for(predicate: Callable[[], object], timeout_s: float, what: str) -> None:
    wait_until(predicate, timeout_s, what, interval_s=0.5)


class SteadyPublisher(threading.Thread):
    """Keeps identify traffic flowing until `finish`: a chunk at a time, each once all but ``in_flight``
    of the records sent so far are answered. Records are in flight through every membership change
    however fast this machine is, and the topic is never flooded ahead of them."""

    def __init__(self, settings: Settings, tenant: str, chunk: int = 16, in_flight: int = 32) -> None:
        super().__init__(daemon=True)
        self._settings, self._tenant = settings, tenant
        self._chunk, self._in_flight = chunk, in_flight
        self._finish = threading.Event()
        self.sent: list[str] = []
        self.error: BaseException | None = None

    def finish(self) -> None:
        """Send one last chunk and stop."""
        self._finish.set()

    def run(self) -> None:
        producer = producer_for(self._settings)
        try:
            while True:
                last = self._finish.is_set()
                self._send_chunk(producer)
                if last or len(self.sent) >= 5000:
                    return
                wait_for(
                    lambda: self._finish.is_set() or self._answered() >= len(self.sent) - self._in_flight,
                    120, f"answers to {len(self.sent)} published records",
                )  # fmt: skip
        except BaseException as exc:  # surfaced by the test
            self.error = exc
        finally:
            producer.close()

    def _send_chunk(self, producer: KafkaProducer) -> None:
        t = ("tenant", self._tenant.encode())
        for _ in range(self._chunk):
            rid = f"r{len(self.sent)}"
            headers = [("op", b"identify"), t, ("request-id", rid.encode())]
            producer.send(
                self._settings.kafka.images_topic, digit_png(len(self.sent) % 1797), headers=headers
            )
            self.sent.append(rid)
        producer.flush()

    def _answered(self) -> int:
        return len(by_request(collect_results(self._settings, 0, 0)))


def gallery_size(app: ServedApp, tenant: str) -> int:
    client = connect_milvus(app.settings.milvus.uri)
    try:
        collection = collection_name(app.settings.milvus.collection_prefix, app.manifest.version)
        client.flush(collection)
        return sum(MilvusGallery(client, collection).subjects(tenant).values())
    finally:
        client.close()


def test_nothing_is_lost_across_kill_9_of_a_worker_and_a_broker_restart(
    served_app: ServedApp, kafka_broker: object, unique_name: str, tmp_path: Path
) -> None:
    settings = stream_settings(served_app.settings, unique_name, max_poll_records=32)
    messages, distinct, poison = mixed_messages(unique_name)
    publish(settings, messages[:500])
    first = start_worker_process(settings, 0, tmp_path)
    workers: list[WorkerProcess] = [first]
    try:
        wait_for(lambda: len(collect_results(settings, 0, 0)) >= 75, 90, "the first worker's results")
        first.kill()  # kill -9 mid-stream: its in-flight batch is uncommitted and must be replayed
        workers.append(start_worker_process(settings, 1, tmp_path))
        # The broker restarts once the second worker consumes every partition (the first one may have
        # answered 250 before it died: the count alone could restart the broker under a starting worker).
        wait_for(
            lambda: "partitions assigned: [0, 1, 2, 3]" in workers[1].log.read_text()
            and len(collect_results(settings, 0, 0)) >= 250,
            90, "the second worker to own every partition, and 250 results",
        )  # fmt: skip
        kafka_broker.restart()  # type: ignore[attr-defined]
        publish(settings, messages[500:])
        expected = {rid for rid, _, _ in messages}
        wait_for(lambda: expected <= set(by_request(collect_results(settings, 0, 0))), 150, "every result")
        assert workers[1].stop() == 0, workers[1].log.read_text()[-3000:]
    finally:
        for worker in workers:
            if worker.proc.poll() is None:
                worker.kill()
    results = by_request(collect_results(settings, 0, 0))
    assert set(results) == expected
    assert gallery_size(served_app, unique_name) == len(distinct)
    dead = collect_dead_letters(settings)
    assert {info.request_id for _, info in dead} == poison
    for rid, answers in results.items():
        assert len({a.decision for a in answers}) == 1, f"a replay changed the answer of {rid}"


def status_of(settings: Settings) -> GroupStatus:
    admin, reader = build_admin(settings.kafka), build_reader(settings.kafka)
    try:
        return group_status(admin, reader, settings.ingest.group_id, settings.kafka.images_topic)
    finally:
        admin.close()
        reader.close()


def members_own(settings: Settings, count: int) -> bool:
    status = status_of(settings)
    owned = sorted(p for m in status.members for p in m.partitions)
    return status.state == "Stable" and len(status.members) == count and owned == [0, 1, 2, 3]


def test_two_workers_share_four_partitions_and_a_third_joining_and_one_leaving_loses_nothing(
    served_app: ServedApp, kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    settings = stream_settings(served_app.settings, unique_name, max_poll_records=16)
    workers = [start_worker_process(settings, i, tmp_path) for i in range(2)]
    publisher = SteadyPublisher(settings, unique_name)
    try:
        wait_for(lambda: members_own(settings, 2), 90, "two members")
        assert sorted(len(m.partitions) for m in status_of(settings).members) == [2, 2]
        publisher.start()
        wait_for(lambda: len(publisher.sent) >= 64, 120, "traffic before the third worker joins")
        workers.append(start_worker_process(settings, 2, tmp_path))
        wait_for(lambda: members_own(settings, 3), 90, "three members")
        assert workers[0].stop() == 0, workers[0].log.read_text()[-3000:]
        wait_for(lambda: members_own(settings, 2), 60, "two members again")
        publisher.finish()
        publisher.join(timeout=180)
        assert publisher.error is None and not publisher.is_alive(), publisher.error
        expected = set(publisher.sent)
        wait_for(lambda: expected <= set(by_request(collect_results(settings, 0, 0))), 120, "every result")
    finally:
        for worker in workers:
            if worker.proc.poll() is None:
                worker.stop()
    assert set(by_request(collect_results(settings, 0, 0))) == expected
    assert collect_dead_letters(settings) == []
    assert status_of(settings).total_lag == 0
