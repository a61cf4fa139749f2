"""Decoding and face finding for one process's HTTP requests, spread over worker processes.

dlib's detector and landmark predictor hold the GIL, so face finding in threads takes turns on one core;
a pool of processes (spawned: the parent may be a multi-threaded Ray worker) cuts a batch's images in
parallel, each worker with its own face finders, and sends back the uint8 chips. The stream does not
need it: its ingest workers are processes already.
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import os
import signal
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from twinstream.config import FacesSettings, LimitsSettings
from twinstream.contracts import ImageRequest, InputError
from twinstream.images.face_finder import FaceFinders
from twinstream.images.prepared import PreparedBatch, merge, prepare
from twinstream.images.preprocess import InputSpec

_finders: FaceFinders | None = None  # each worker process's own
_all_started: Any = None  # a barrier of every worker, for `PreparePool.warm`


def _start(settings: FacesSettings, barrier: Any) -> None:
    global _finders, _all_started
    _die_with_parent()
    _finders = FaceFinders(settings)
    _all_started = barrier


def _die_with_parent() -> None:
    """Ask Linux to end this worker when its parent dies (a replica killed with SIGKILL leaves no
    orphans); elsewhere the worker ends when it next finds its queue closed."""
    if sys.platform != "linux":
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _prepare(
    requests: Sequence[ImageRequest], spec: InputSpec, limits: LimitsSettings
) -> tuple[PreparedBatch, dict[int, InputError]]:
    assert _finders is not None, "the pool's initializer did not run"
    return prepare(requests, spec, limits, _finders.for_spec(spec))


def _pid_once_all_run(timeout_s: float) -> int:
    _all_started.wait(timeout_s)  # holds this worker busy, so the pool starts the next one
    return os.getpid()


class PreparePool:
    """``processes`` worker processes that decode and cut images (`twinstream.images.prepared.prepare`).

    Args:
        processes: Worker processes; 0 means one per core of the machine.
        limits: Input safety limits.
        faces: How faces are looked for.
    """

    def __init__(self, processes: int, limits: LimitsSettings, faces: FacesSettings) -> None:
        self.processes = processes or os.cpu_count() or 1
        self._limits = limits
        context = multiprocessing.get_context("spawn")
        self._executor = ProcessPoolExecutor(
            self.processes, mp_context=context, initializer=_start,
            initargs=(faces, context.Barrier(self.processes)),
        )  # fmt: skip

    def warm(self, timeout_s: float = 120.0) -> set[int]:
        """Start every worker before the first request (each imports its modules once); their pids."""
        return set(self._executor.map(_pid_once_all_run, [timeout_s] * self.processes))

    async def prepare(
        self, requests: Sequence[ImageRequest], spec: InputSpec
    ) -> tuple[PreparedBatch, dict[int, InputError]]:
        """`prepare` for ``requests``, cut in consecutive slices on the workers at once."""
        slices = _slices(len(requests), self.processes)
        loop = asyncio.get_running_loop()
        parts = await asyncio.gather(
            *(
                loop.run_in_executor(self._executor, _prepare, requests[start:end], spec, self._limits)
                for start, end in slices
            )
        )
        return merge(parts, [end - start for start, end in slices])

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _slices(n: int, parts: int) -> list[tuple[int, int]]:
    """``n`` items as at most ``parts`` consecutive slices of near-equal length (one empty slice for 0)."""
    parts = max(1, min(parts, n))
    bounds = [round(i * n / parts) for i in range(parts + 1)]
    return list(itertools.pairwise(bounds))
