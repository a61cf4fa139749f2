"""Retry with capped exponential back-off, interruptible by a stop event.

`retry_until_stopped` retries a fixed set of errors without limit (a dependency is down).
`retry_classified` asks for each failure whether it is an outage (retried without limit, as above) or
the records' fault, which is retried ``max_record_attempts`` times and then raised as `RecordFailedError`
for the caller to isolate and dead-letter.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from services.ingest.failures import FailureKind

T = TypeVar("T")
log = logging.getLogger(__name__)


class StopRequestedError(Exception):
    """The worker was asked to stop while waiting for a dependency; the batch is abandoned uncommitted."""


class RecordFailedError(Exception):
    """The records failed ``attempts`` times while every dependency answered; ``cause`` is the last error."""

    def __init__(self, what: str, attempts: int, cause: Exception) -> None:
        super().__init__(f"{what} failed {attempts} time(s) with its dependencies up: {cause!r}")
        self.attempts = attempts
        self.cause = cause


@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped exponential back-off with full jitter (delays between ``initial_s`` and ``max_s``)."""

    initial_s: float = 0.5
    max_s: float = 15.0
    factor: float = 2.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        ceiling = min(self.max_s, self.initial_s * self.factor ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)


def retry_until_stopped(
    action: Callable[[], T],
    *,
    retry_on: tuple[type[BaseException], ...],
    backoff: Backoff,
    stop: threading.Event,
    on_retry: Callable[[], None] = lambda: None,
    what: str = "call",
) -> T:
    """Run ``action`` until it succeeds; on ``retry_on`` errors back off and try again, forever.

    Args:
        action: The call to make.
        retry_on: Exceptions that mean "a dependency is down"; anything else propagates.
        backoff: Delay policy between attempts.
        stop: When set, waiting ends and `StopRequestedError` is raised (nothing is committed).
        on_retry: Called once per failed attempt (metrics).
        what: Name used in log lines.

    Raises:
        StopRequestedError: If ``stop`` is set while retrying.
    """
    attempt = 0
    while True:
        try:
            return action()
        except retry_on as exc:
            attempt += 1
            on_retry()
            wait = backoff.delay(attempt)
            log.warning("%s failed (attempt %d): %s; retrying in %.1fs", what, attempt, exc, wait)
            if stop.wait(wait):
                raise StopRequestedError(what) from exc


def retry_classified(
    action: Callable[[], T],
    *,
    classify: Callable[[Exception], FailureKind],
    max_record_attempts: int,
    backoff: Backoff,
    stop: threading.Event,
    on_retry: Callable[[FailureKind], None] = lambda kind: None,
    what: str = "call",
) -> T:
    """Run ``action``; retry outages without limit and record failures up to ``max_record_attempts`` times.

    Args:
        action: The call to make.
        classify: Whether a failure is an outage or the records' fault (`services.ingest.failures`).
        max_record_attempts: Attempts (the first included) before record failures are given up on.
        backoff: Delay policy between attempts (outages and record failures share the attempt count).
        stop: When set, waiting ends and `StopRequestedError` is raised (nothing is committed).
        on_retry: Called with the kind of each failure that is retried (metrics).
        what: Name used in log lines.

    Raises:
        RecordFailedError: After ``max_record_attempts`` record failures.
        StopRequestedError: If ``stop`` is set while waiting.
    """
    attempt = record_failures = 0
    while True:
        try:
            return action()
        except Exception as exc:  # classified below: nothing is retried blindly
            kind = classify(exc)
            attempt += 1
            if kind is FailureKind.RECORD:
                record_failures += 1
                if record_failures >= max_record_attempts:
                    raise RecordFailedError(what, record_failures, exc) from exc
            on_retry(kind)
            wait = backoff.delay(attempt)
            log.warning("%s failed (%s, attempt %d): %r; retrying in %.1fs", what, kind, attempt, exc, wait)
            if stop.wait(wait):
                raise StopRequestedError(what) from exc
