"""Outage or poison record: how the worker classifies a failure, and how bounded retries end."""

from __future__ import annotations

import threading

import grpc
import pytest
import ray.exceptions
import redis
from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError
from pymilvus.exceptions import MilvusException
from ray.serve.exceptions import DeploymentUnavailableError

from services.ingest.failures import AllDependencies, FailureKind, classify
from services.ingest.retry import Backoff, RecordFailedError, StopRequestedError, retry_classified
from twinstream.images.prepared import StaleInputSpecError

FAST = Backoff(initial_s=0.001, max_s=0.002)


class Probe:
    def __init__(self, healthy: bool | Exception) -> None:
        self.healthy, self.calls = healthy, 0

    def dependencies_healthy(self) -> bool:
        self.calls += 1
        if isinstance(self.healthy, Exception):
            raise self.healthy
        return self.healthy


def in_serve(cause: Exception) -> Exception:
    """What a Serve handle raises when the replica raised ``cause``."""
    return ray.exceptions.RayTaskError("process", "traceback", cause).as_instanceof_cause()


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(111, "refused"),
        ConnectionResetError(104, "reset"),
        TimeoutError("timed out"),
        redis.ConnectionError("Error 111 connecting"),
        redis.TimeoutError("Timeout reading from socket"),
        redis.exceptions.BusyLoadingError("LOADING"),
        KafkaTimeoutError("no ack"),
        DeploymentUnavailableError("twinstream"),
        ray.exceptions.ActorDiedError(),
        MilvusException(grpc.StatusCode.UNAVAILABLE, "connection refused"),
        MilvusException(grpc.StatusCode.DEADLINE_EXCEEDED, "Retry timeout: 30s"),
        StaleInputSpecError("redeployed"),
        in_serve(redis.ConnectionError("Redis is down")),
        in_serve(MilvusException(grpc.StatusCode.UNAVAILABLE, "Milvus is down")),
    ],
    ids=repr,
)
def test_dependency_errors_are_outages_whatever_the_probe_says(exc: Exception) -> None:
    probe = Probe(healthy=True)
    assert classify(exc, probe) is FailureKind.OUTAGE
    assert probe.calls == 0  # the type alone decides


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("cannot embed"),
        in_serve(ValueError("cannot embed")),
        MessageSizeTooLargeError("record too large"),
        MilvusException(1, "invalid filter expression"),
        KeyError("bug"),
    ],
    ids=repr,
)
def test_other_errors_are_the_records_fault_when_every_dependency_answers(exc: Exception) -> None:
    assert classify(exc, Probe(healthy=True)) is FailureKind.RECORD
    assert classify(exc, None) is FailureKind.RECORD


def test_an_unexplained_error_is_an_outage_when_a_dependency_does_not_answer() -> None:
    assert classify(ValueError("?"), Probe(healthy=False)) is FailureKind.OUTAGE
    assert classify(ValueError("?"), Probe(healthy=OSError("probe broke"))) is FailureKind.OUTAGE
    assert classify(ValueError("?"), AllDependencies([Probe(True), Probe(False)])) is FailureKind.OUTAGE
    assert classify(ValueError("?"), AllDependencies([Probe(True), Probe(True)])) is FailureKind.RECORD


def test_record_failures_are_retried_a_bounded_number_of_times() -> None:
    calls: list[int] = []

    def poison() -> None:
        calls.append(1)
        raise ValueError("always")

    with pytest.raises(RecordFailedError) as failed:
        retry_classified(
            poison, classify=classify, max_record_attempts=3, backoff=FAST,
            stop=threading.Event(),
        )  # fmt: skip
    assert len(calls) == 3 and failed.value.attempts == 3
    assert isinstance(failed.value.cause, ValueError)


def test_outages_do_not_use_up_the_record_attempts() -> None:
    errors = [ConnectionError("down")] * 5 + [ValueError("poison")] * 2
    retried: list[FailureKind] = []

    def flaky() -> str:
        if errors:
            raise errors.pop(0)
        return "ok"

    out = retry_classified(
        flaky, classify=classify, max_record_attempts=3, backoff=FAST,
        stop=threading.Event(), on_retry=retried.append,
    )  # fmt: skip
    assert out == "ok"
    assert retried == [FailureKind.OUTAGE] * 5 + [FailureKind.RECORD] * 2


def test_a_stop_request_ends_an_outage_wait() -> None:
    stop = threading.Event()

    def down() -> None:
        stop.set()
        raise ConnectionError("down")

    with pytest.raises(StopRequestedError):
        retry_classified(
            down,
            classify=classify,
            max_record_attempts=1,
            backoff=Backoff(60, 60),
            stop=stop,
        )
