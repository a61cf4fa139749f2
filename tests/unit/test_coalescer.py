"""HTTP request coalescing (`services.api.coalescer`): batches form when a slot frees, and grow with load."""

from __future__ import annotations

import asyncio

import pytest

from services.api.coalescer import Coalescer


class Gate:
    """A batch function that records its batches and holds each one until released."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release: list[asyncio.Event] = []
        self.started = asyncio.Event()

    async def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(items)
        gate = asyncio.Event()
        self.release.append(gate)
        self.started.set()
        await gate.wait()
        if -1 in items:
            raise ValueError("bad item")
        return [2 * i for i in items]

    async def running(self, count: int) -> None:
        while len(self.batches) < count:
            self.started.clear()
            await self.started.wait()


async def _settle() -> None:
    for _ in range(5):  # let every ready task run its next step
        await asyncio.sleep(0)


def test_a_lone_request_runs_at_once_and_waiting_ones_form_the_next_batch() -> None:
    async def scenario() -> None:
        gate = Gate()
        coalesce: Coalescer[int, int] = Coalescer(gate, max_batch_size=4)
        first = asyncio.create_task(coalesce(0))
        await gate.running(1)
        assert gate.batches == [[0]]
        rest = [asyncio.create_task(coalesce(i)) for i in range(1, 7)]
        await _settle()
        assert len(gate.batches) == 1  # one slot: the others wait for it
        gate.release[0].set()
        await gate.running(2)
        assert gate.batches[1] == [1, 2, 3, 4]  # everything waiting, up to max_batch_size
        gate.release[1].set()
        await gate.running(3)
        assert gate.batches[2] == [5, 6]
        gate.release[2].set()
        assert await first == 0 and await asyncio.gather(*rest) == [2, 4, 6, 8, 10, 12]

    asyncio.run(scenario())


def test_concurrent_slots_run_batches_side_by_side() -> None:
    async def scenario() -> None:
        gate = Gate()
        coalesce: Coalescer[int, int] = Coalescer(gate, max_batch_size=8, max_concurrent=2)
        calls = [asyncio.create_task(coalesce(0))]
        await gate.running(1)
        calls.append(asyncio.create_task(coalesce(1)))
        await gate.running(2)  # the second slot takes it while the first batch still runs
        calls += [asyncio.create_task(coalesce(i)) for i in (2, 3)]
        await _settle()
        assert gate.batches == [[0], [1]]
        gate.release[1].set()
        await gate.running(3)
        assert gate.batches[2] == [2, 3]
        for event in gate.release:
            event.set()
        assert await asyncio.gather(*calls) == [0, 2, 4, 6]

    asyncio.run(scenario())


def test_a_failing_batch_fails_its_own_callers_only() -> None:
    async def scenario() -> None:
        gate = Gate()
        coalesce: Coalescer[int, int] = Coalescer(gate, max_batch_size=8)
        blocker = asyncio.create_task(coalesce(0))
        await gate.running(1)
        bad = [asyncio.create_task(coalesce(i)) for i in (-1, 5)]
        await _settle()
        gate.release[0].set()
        await gate.running(2)
        gate.release[1].set()
        results = await asyncio.gather(*bad, return_exceptions=True)
        assert all(isinstance(r, ValueError) for r in results)
        after = asyncio.create_task(coalesce(7))
        await gate.running(3)
        gate.release[2].set()
        assert await blocker == 0 and await after == 14

    asyncio.run(scenario())


def test_a_caller_that_went_away_is_left_out_of_its_batch() -> None:
    async def scenario() -> None:
        gate = Gate()
        coalesce: Coalescer[int, int] = Coalescer(gate, max_batch_size=8)
        blocker = asyncio.create_task(coalesce(0))
        await gate.running(1)
        gone, kept = asyncio.create_task(coalesce(1)), asyncio.create_task(coalesce(2))
        await _settle()
        gone.cancel()
        await _settle()
        gate.release[0].set()
        await gate.running(2)
        assert gate.batches[1] == [2]
        gate.release[1].set()
        assert await blocker == 0 and await kept == 4 and gone.cancelled()

    asyncio.run(scenario())


def test_with_a_wait_a_lone_request_waits_for_company_but_a_full_batch_does_not() -> None:
    async def scenario() -> None:
        seen: list[list[int]] = []

        async def echo(items: list[int]) -> list[int]:
            seen.append(items)
            return items

        coalesce: Coalescer[int, int] = Coalescer(echo, max_batch_size=3, wait_s=30.0)
        first = asyncio.create_task(coalesce(1))
        await _settle()
        assert seen == []  # waiting for company (up to 30 s)
        assert await asyncio.gather(first, coalesce(2), coalesce(3)) == [1, 2, 3]
        assert seen == [[1, 2, 3]]  # full: it did not wait out the 30 s

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_impossible_sizes_are_refused() -> None:
    async def nothing(items: list[int]) -> list[int]:
        return items

    for kwargs in ({"max_batch_size": 0}, {"max_concurrent": 0}, {"wait_s": -1.0}):
        with pytest.raises(ValueError):
            Coalescer(nothing, **kwargs)  # type: ignore[arg-type]
