"""Waiting for a condition under a deadline: how tests synchronise with services (never a fixed sleep)."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(condition: Callable[[], object], timeout_s: float, what: str, every_s: float = 0.2) -> None:
    """Return as soon as ``condition()`` is truthy; fail with ``what`` if it is not within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        if condition():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(every_s)
