"""Retry with capped exponential back-off, interruptible by a stop event (a dependency is down)."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


class StopRequestedError(Exception):
    """The worker was asked to stop while waiting for a dependency; the batch is abandoned uncommitted."""


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
