"""Traffic for the model-switch test: verify and identify over HTTP and Kafka without pause, new enrolments
on both paths, and the live pointer watched, every answer recorded with when it was sent and answered.

Subjects are verified once their enrolment has been answered for ``settle_s`` (the switch's promise is
that an enrolment lands in every version by the end of the switch, not at the instant of it).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

import httpx
import redis

from services.ingest.results_reader import build_reader, read_results
from services.lifecycle.registry import RegistryKeys
from tests.support.streams import producer_for
from twinstream.codec import request_headers
from twinstream.codec.results import result_from_json
from twinstream.config import Settings
from twinstream.contracts import Decision, ImageRequest, MatchResult, Op

PNG = {"Content-Type": "image/png"}


class Channel(StrEnum):
    HTTP = "http"
    KAFKA = "kafka"


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request and its answer (``status`` is the HTTP status, 0 on Kafka; ``result`` None on error)."""

    channel: Channel
    request_id: str
    op: Op
    subject: str
    image: int
    sent_at: float
    answered_at: float
    status: int
    result: MatchResult | None
    error: str = ""


@dataclass(frozen=True, slots=True)
class Sent:
    """A Kafka request waiting for its result."""

    op: Op
    subject: str
    image: int
    sent_at: float
    phase: str


@dataclass(frozen=True, slots=True)
class Enrolled:
    """A subject's one enrolment image, when it was answered and in which phase of the test."""

    image: int
    answered_at: float
    phase: str


@dataclass(frozen=True, slots=True)
class PointerMove:
    """The live pointer moved from ``old`` to ``new`` after ``old_seen`` and before ``new_seen``."""

    old: str | None
    new: str | None
    old_seen: float
    new_seen: float


class Traffic:
    """Threads sending requests until `stop`; everything they saw is kept for the assertions.

    Args:
        settings: The app's settings (Serve URL, stream topics, registry keys).
        url: The HTTP API's base URL.
        tenant: The tenant of every request.
        images: PNG bytes by index.
        probes: Indexes of images used as verify and identify probes (never enrolled).
        fresh: Indexes of images for new enrolments (one subject each).
        settle_s: How long after its enrolment a subject is verified by the traffic.
        enrol_every_s: Pause between new enrolments (alternately HTTP and Kafka).
        kafka_every_s: Pause between Kafka verify/identify records.
    """

    def __init__(
        self,
        settings: Settings,
        url: str,
        tenant: str,
        images: Sequence[bytes],
        probes: Sequence[int],
        fresh: Iterator[int],
        *,
        settle_s: float = 5.0,
        enrol_every_s: float = 0.4,
        kafka_every_s: float = 0.1,
    ) -> None:
        self._settings, self._url, self.tenant = settings, url, tenant
        self._images, self._probes, self._fresh = images, probes, fresh
        self._settle_s, self._enrol_every_s, self._kafka_every_s = settle_s, enrol_every_s, kafka_every_s
        self.phase = "before"
        self.enrolled: dict[str, Enrolled] = {}
        self.exchanges: list[Exchange] = []
        self.sent: dict[str, Sent] = {}
        self.pointer_moves: list[PointerMove] = []
        self._lock = threading.Lock()
        self._stop, self._stop_sending = threading.Event(), threading.Event()
        self._producer = producer_for(settings)
        self._threads: list[threading.Thread] = []
        self._ids = itertools.count()

    # --- life cycle --------------------------------------------------------------------------------

    def seed(self, subjects: Mapping[str, int], answered_at: float) -> None:
        """Subjects enrolled before the traffic starts."""
        with self._lock:
            for subject, image in subjects.items():
                self.enrolled[subject] = Enrolled(image, answered_at, "before")

    def start(self) -> None:
        loops = (self._http_loop, self._kafka_loop, self._enrol_loop, self._results_loop, self._pointer_loop)
        self._threads = [threading.Thread(target=loop, daemon=True, name=loop.__name__) for loop in loops]
        for thread in self._threads:
            thread.start()

    def stop_sending(self) -> None:
        """Stop the senders (the results reader keeps reading until `stop`)."""
        self._stop_sending.set()
        for thread in self._threads:
            if thread.name in ("_http_loop", "_kafka_loop", "_enrol_loop"):
                thread.join(timeout=120)
        self._producer.flush()

    def stop(self) -> None:
        self._stop_sending.set()
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=120)
        self._producer.close()

    # --- what happened -----------------------------------------------------------------------------

    def unanswered(self) -> list[str]:
        """Kafka request ids sent whose result has not arrived."""
        with self._lock:
            answered = {e.request_id for e in self.exchanges if e.channel is Channel.KAFKA}
            return sorted(set(self.sent) - answered)

    def answered(self, version: str, *, since: float = 0.0) -> int:
        """Answers tagged ``version`` that were sent after ``since``."""
        with self._lock:
            return sum(
                1
                for e in self.exchanges
                if e.result is not None and e.result.model_version == version and e.sent_at > since
            )

    def settled(self) -> list[str]:
        """Subjects whose enrolment was answered at least ``settle_s`` ago, the latest last."""
        edge = time.time() - self._settle_s
        with self._lock:
            found = [(e.answered_at, s) for s, e in self.enrolled.items() if e.answered_at <= edge]
        return [s for _, s in sorted(found)]

    @staticmethod
    def _pick(pool: list[str], i: int) -> str:
        """Every other pick is the subject settled last (what a switch is most likely to have missed)."""
        return pool[-1] if i % 2 else pool[(i // 2) % len(pool)]

    def enrolled_now(self) -> dict[str, Enrolled]:
        with self._lock:
            return dict(self.enrolled)

    # --- the loops ---------------------------------------------------------------------------------

    def _request_id(self, kind: str) -> str:
        return f"{kind}-{next(self._ids)}"

    def _http_loop(self) -> None:
        """Verify and identify back to back (a closed loop: the next as soon as one is answered)."""
        with httpx.Client(base_url=self._url, timeout=60.0) as http:
            for i in itertools.count():
                if self._stop_sending.is_set():
                    return
                pool = self.settled()
                probe = self._probes[i % len(self._probes)]
                if i % 2 == 0 and pool:
                    subject = self._pick(pool, i // 2)
                    self._http(http, Op.VERIFY, f"/v1/subjects/{subject}/verify", subject, probe)
                else:
                    self._http(http, Op.IDENTIFY, "/v1/identify", "", probe)

    def _http(self, http: httpx.Client, op: Op, path: str, subject: str, image: int) -> Exchange:
        sent = time.time()
        headers = {**PNG, "X-Tenant": self.tenant}
        try:
            answer = http.post(path, content=self._images[image], headers=headers)
        except httpx.HTTPError as exc:
            done = Exchange(Channel.HTTP, "", op, subject, image, sent, time.time(), -1, None, repr(exc))
        else:
            ok = answer.status_code in (200, 201)
            result = result_from_json(answer.content) if ok else None
            done = Exchange(
                Channel.HTTP, result.request_id if result else "", op, subject, image, sent, time.time(),
                answer.status_code, result, "" if ok else answer.text[:300],
            )  # fmt: skip
        with self._lock:
            self.exchanges.append(done)
        return done

    def _kafka_loop(self) -> None:
        """Verify and identify records at a steady rate, whatever the answers."""
        for i in itertools.count():
            if self._stop_sending.wait(self._kafka_every_s):
                return
            pool = self.settled()
            probe = self._probes[(7 * i) % len(self._probes)]
            if i % 2 == 0 and pool:
                self._send(Op.VERIFY, self._pick(pool, i // 2), probe)
            else:
                self._send(Op.IDENTIFY, "", probe)

    def _send(self, op: Op, subject: str, image: int) -> None:
        request_id = self._request_id(f"k{op.value}")
        request = ImageRequest(
            request_id, op, self._images[image], self.tenant, subject, content_type="image/png"
        )
        with self._lock:
            self.sent[request_id] = Sent(op, subject, image, time.time(), self.phase)
        self._producer.send(
            self._settings.kafka.images_topic,
            key=request_id.encode(),
            value=request.image,
            headers=request_headers(request),
        )

    def _enrol_loop(self) -> None:
        """A new subject every ``enrol_every_s``, alternately over HTTP and Kafka."""
        with httpx.Client(base_url=self._url, timeout=60.0) as http:
            for n in itertools.count():
                if self._stop_sending.wait(self._enrol_every_s):
                    return
                image = next(self._fresh, None)
                if image is None:
                    return
                subject = f"late-{n}"
                if n % 2:
                    self._send(Op.ENROLL, subject, image)
                    continue
                phase = self.phase
                done = self._http(http, Op.ENROLL, f"/v1/subjects/{subject}/images", subject, image)
                if done.status == 201:
                    with self._lock:
                        self.enrolled[subject] = Enrolled(image, done.answered_at, phase)

    def _results_loop(self) -> None:
        """Follow the results topic; a Kafka enrolment counts once its ENROLLED result is read."""
        consumer = build_reader(self._settings.kafka)
        try:
            for record in read_results(
                consumer, self._settings.kafka.results_topic, follow=True, stop=self._stop, poll_ms=200
            ):
                self._on_result(record.result, record.timestamp_ms / 1000 + 0.001)  # ms floor: round up
        finally:
            consumer.close()

    def _on_result(self, result: MatchResult, answered_at: float) -> None:
        with self._lock:
            sent = self.sent.get(result.request_id)
            if sent is None:
                return
            exchange = Exchange(
                Channel.KAFKA, result.request_id, sent.op, sent.subject, sent.image, sent.sent_at,
                answered_at, 0, result,
            )  # fmt: skip
            self.exchanges.append(exchange)
            if sent.op is Op.ENROLL and result.decision is Decision.ENROLLED:
                self.enrolled[sent.subject] = Enrolled(sent.image, answered_at, sent.phase)

    def _pointer_loop(self) -> None:
        """Poll the live pointer every 10 ms; record each move between the times that bracket it.

        The old value's time is taken before the GET that read it and the new value's after the GET that
        read it, so "answered before the first" and "sent after the second" are safe conclusions.
        """
        client = redis.Redis.from_url(self._settings.redis.url)
        key = RegistryKeys.for_settings(self._settings).live
        last_at = time.time()
        last = _text(client.get(key))
        while not self._stop.wait(0.01):
            before = time.time()
            now = _text(client.get(key))
            after = time.time()
            if now != last:
                self.pointer_moves.append(PointerMove(last, now, last_at, after))
                last = now
            last_at = before
        client.close()


def _text(raw: object) -> str | None:
    return raw.decode() if isinstance(raw, bytes) else None
