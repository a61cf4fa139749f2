"""Back-off retries: succeed after failures, propagate foreign errors, stop on request."""

from __future__ import annotations

import threading

import pytest

from services.ingest.retry import Backoff, StopRequestedError, retry_until_stopped

FAST = Backoff(initial_s=0.001, max_s=0.002)


def test_retries_until_the_dependency_answers() -> None:
    attempts: list[int] = []
    retries: list[int] = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 4:
            raise ConnectionError("down")
        return "ok"

    out = retry_until_stopped(
        flaky,
        retry_on=(ConnectionError,),
        backoff=FAST,
        stop=threading.Event(),
        on_retry=lambda: retries.append(1),
    )
    assert out == "ok" and len(attempts) == 4 and len(retries) == 3


def test_errors_that_are_not_dependency_failures_propagate_at_once() -> None:
    def broken() -> None:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        retry_until_stopped(broken, retry_on=(ConnectionError,), backoff=FAST, stop=threading.Event())


def test_a_stop_request_ends_the_wait() -> None:
    stop = threading.Event()

    def down() -> None:
        stop.set()
        raise ConnectionError("down")

    with pytest.raises(StopRequestedError):
        retry_until_stopped(down, retry_on=(ConnectionError,), backoff=Backoff(60, 60), stop=stop)


@pytest.mark.parametrize("attempt", [1, 2, 5, 30])
def test_backoff_delays_grow_but_stay_capped(attempt: int) -> None:
    policy = Backoff(initial_s=0.5, max_s=4.0)
    ceiling = min(4.0, 0.5 * 2 ** (attempt - 1))
    assert ceiling / 2 <= policy.delay(attempt) <= ceiling
