"""The Ray Serve embedder deployment: coalesces concurrent calls with `@serve.batch` into one forward.

Each call carries a whole batch (N, C, H, W) — one image for an HTTP request, a Kafka poll's worth for
the stream — so ``max_batch_size`` counts calls; their images are concatenated into one forward pass.
A call that is already a batch (``direct_min_rows`` images or more, e.g. a Kafka poll) skips the
coalescing queue: waiting up to ``batch_wait_timeout_s`` for company would only add latency to a forward
pass that is already efficient. Batch size, wait and that cut-off change at run time through
``user_config`` → `reconfigure`.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from ray import serve

from services.deployments import EMBEDDER_DEPLOYMENT
from services.embedder.model import TowerEmbedder
from twinstream.metrics import EmbedderMetrics, RayFactory

#: Calls with at least this many images run at once instead of waiting to be coalesced.
DIRECT_MIN_ROWS = 16


@dataclass(frozen=True, slots=True)
class _Call:
    """One caller's batch and when it joined the queue (for the queue-wait metric)."""

    batch: np.ndarray
    enqueued: float


@serve.deployment(name=EMBEDDER_DEPLOYMENT)
class EmbedderDeployment:
    """One replica: the tower of one artifact and its batching queue.

    Args:
        model_dir: The artifact directory (readable on every node that runs a replica).
        threads: torch intra-op threads for this replica.
    """

    def __init__(self, model_dir: str, threads: int = 1) -> None:
        self._model = TowerEmbedder.from_dir(model_dir, threads=threads)
        self._metrics = EmbedderMetrics.create(RayFactory())
        # One forward pass at a time, off the event loop: a replica uses the ``threads`` cores it asked
        # Ray for, never more, however many callers arrive at once (scale out with replicas).
        self._forward_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="forward")
        self._direct_min_rows = DIRECT_MIN_ROWS

    def reconfigure(self, config: dict[str, Any]) -> None:
        """Apply ``user_config``: ``max_batch_size``, ``batch_wait_timeout_s``, ``direct_min_rows`` (live)."""
        if "direct_min_rows" in config:
            self._direct_min_rows = int(config["direct_min_rows"])
        if "max_batch_size" in config:
            self._embed_batched.set_max_batch_size(int(config["max_batch_size"]))  # type: ignore[attr-defined]
        if "batch_wait_timeout_s" in config:
            self._embed_batched.set_batch_wait_timeout_s(float(config["batch_wait_timeout_s"]))  # type: ignore[attr-defined]

    def model_version(self) -> str:
        """The version of the model this replica serves."""
        return self._model.manifest.version

    async def _forward(self, batch: np.ndarray) -> np.ndarray:
        return await asyncio.get_running_loop().run_in_executor(self._forward_pool, self._model.embed, batch)

    async def embed(self, batch: np.ndarray) -> np.ndarray:
        """Embed one caller's batch (N, C, H, W) → (N, D); concurrent small calls share forward passes."""
        if len(batch) >= self._direct_min_rows:
            started = time.monotonic()
            vectors = await self._forward(batch)
            self._metrics.observe_forward(len(batch), 1, time.monotonic() - started, [0.0])
            return vectors
        result: np.ndarray = await self._embed_batched(_Call(batch, time.monotonic()))
        return result

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01)
    async def _embed_batched(self, calls: list[_Call]) -> list[np.ndarray]:
        """Embed several callers' batches in one forward pass; each caller gets its own rows back."""
        started = time.monotonic()
        batches = [call.batch for call in calls]
        sizes = [len(b) for b in batches]
        merged = np.concatenate(batches) if len(batches) > 1 else batches[0]
        # Off the event loop, so the next batch can gather while this one runs (torch releases the GIL).
        vectors = await self._forward(merged)
        waits = [started - call.enqueued for call in calls]
        self._metrics.observe_forward(len(merged), len(calls), time.monotonic() - started, waits)
        bounds = np.cumsum([0, *sizes])
        return [vectors[bounds[i] : bounds[i + 1]] for i in range(len(sizes))]
