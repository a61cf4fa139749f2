"""`wait_until` returns as soon as the condition holds and fails clearly when it never does."""

from __future__ import annotations

import time

import pytest

from tests.support.waiting import WaitTimeoutError, wait_until


def test_returns_the_first_truthy_value_without_waiting_out_the_deadline():
    calls = iter([0, [], [3]])
    started = time.monotonic()
    assert wait_until(lambda: next(calls), timeout_s=30, what="a list", interval_s=0.01) == [3]
    assert time.monotonic() - started < 1


def test_times_out_with_what_was_awaited_and_the_last_state():
    with pytest.raises(
        WaitTimeoutError, match=r"timed out after 0\.2s waiting for the answer; last state: 7"
    ):
        wait_until(lambda: False, timeout_s=0.2, what="the answer", interval_s=0.05, describe=lambda: "7")


def test_a_zero_deadline_still_evaluates_the_condition_once():
    assert wait_until(lambda: "ready", timeout_s=0, what="ready") == "ready"
    with pytest.raises(AssertionError):  # a failed wait is a test failure, not an error
        wait_until(lambda: None, timeout_s=0, what="never")
