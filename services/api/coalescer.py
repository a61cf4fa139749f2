"""HTTP requests answered together: single-image calls of concurrent clients coalesced into batches.

A batch forms when a batch slot is free, from every request waiting then (up to ``max_batch_size``):
a lone request runs at once, and under load the requests that arrive while the slots are busy make
the next batch, which grows with the load. Serve's ``@serve.batch`` forms its next batch as soon as
the previous one has started (and then waits for a free slot with it), so with no wait time its
batches stay at one request however loaded the replica is; a wait time buys batches with latency at
every load. ``max_concurrent`` > 1 lets a batch's images be decoded and cut while the previous
batch is in the tower.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Coalescer(Generic[T, R]):
    """Call ``fn`` on batches of the items that concurrent callers pass one at a time.

    Args:
        fn: Answers a batch, one result per item, in order.
        max_batch_size: Largest batch.
        max_concurrent: Batches in flight at once.
        wait_s: How long the first item of a batch waits for company once a slot is free (0: none).
    """

    def __init__(
        self,
        fn: Callable[[list[T]], Awaitable[Sequence[R]]],
        max_batch_size: int = 32,
        max_concurrent: int = 1,
        wait_s: float = 0.0,
    ) -> None:
        if max_batch_size < 1 or max_concurrent < 1 or wait_s < 0:
            raise ValueError("max_batch_size and max_concurrent must be ≥ 1 and wait_s ≥ 0")
        self._fn = fn
        self.max_batch_size = max_batch_size
        self.wait_s = wait_s
        self._max_concurrent = max_concurrent
        self._waiting: deque[tuple[T, asyncio.Future[R]]] = deque()
        self._arrived: asyncio.Event | None = None
        self._slots: asyncio.Semaphore | None = None
        self._runner: asyncio.Task[None] | None = None
        self._batches: set[asyncio.Task[None]] = set()
        self.batch_sizes: deque[int] = deque(maxlen=1024)  # the latest batches' sizes, for tests and logs

    async def __call__(self, item: T) -> R:
        """``fn``'s answer for ``item``, computed in a batch with whatever else is waiting."""
        if self._runner is None or self._runner.done():
            self._arrived, self._slots = asyncio.Event(), asyncio.Semaphore(self._max_concurrent)
            self._runner = asyncio.get_running_loop().create_task(self._run())
        assert self._arrived is not None
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        self._arrived.set()
        return await future

    async def _run(self) -> None:
        assert self._arrived is not None and self._slots is not None
        while True:
            await self._slots.acquire()
            while not self._waiting:
                self._arrived.clear()
                await self._arrived.wait()
            if self.wait_s > 0 and len(self._waiting) < self.max_batch_size:
                await self._company(self.wait_s)
            batch = [self._waiting.popleft() for _ in range(min(len(self._waiting), self.max_batch_size))]
            task = asyncio.get_running_loop().create_task(self._answer(batch))
            self._batches.add(task)  # a reference until done: the loop keeps only weak ones
            task.add_done_callback(self._batches.discard)

    async def _company(self, wait_s: float) -> None:
        """Wait up to ``wait_s`` for the batch to fill."""
        assert self._arrived is not None
        deadline = asyncio.get_running_loop().time() + wait_s
        while len(self._waiting) < self.max_batch_size:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                return

    async def _answer(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        assert self._slots is not None
        try:
            live = [(item, future) for item, future in batch if not future.done()]  # callers gone: skip
            if not live:
                return
            self.batch_sizes.append(len(live))
            try:
                results = await self._fn([item for item, _ in live])
                if len(results) != len(live):
                    raise RuntimeError(f"a batch of {len(live)} got {len(results)} results")
            except Exception as exc:  # every caller of the batch gets the error
                for _, future in live:
                    if not future.done():
                        future.set_exception(exc)
                return
            for (_, future), result in zip(live, results, strict=True):
                if not future.done():
                    future.set_result(result)
        finally:
            self._slots.release()
