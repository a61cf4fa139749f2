"""Waiting for a condition under a deadline: the one way tests synchronise with real services.

A fixed ``time.sleep`` either wastes time on a fast machine or is too short on a slow one; polling the
awaited condition is as fast as the system allows and fails with a message that says what never happened.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeoutError(AssertionError):
    """The awaited condition did not hold before the deadline (an assertion: the test fails, not errors)."""


def wait_until(
    predicate: Callable[[], T],
    timeout_s: float,
    what: str,
    *,
    interval_s: float = 0.1,
    describe: Callable[[], str] | None = None,
) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that.

    Args:
        predicate: The awaited condition; its truthy result is returned (e.g. the records found).
        timeout_s: Deadline from now; the predicate is evaluated at least once, even when 0.
        what: What is awaited, for the failure message ("the worker's first retry").
        interval_s: Pause between polls (a polling period, not a synchronisation).
        describe: Called on timeout to add the last observed state to the message.

    Raises:
        WaitTimeoutError: If the predicate is still falsy at the deadline.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            state = f"; last state: {describe()}" if describe is not None else ""
            raise WaitTimeoutError(f"timed out after {timeout_s:.1f}s waiting for {what}{state}")
        time.sleep(min(interval_s, remaining))
