"""Serve-side metrics wiring that needs service types: an embedding cache that counts hits and misses."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import redis

from services.results.store import EmbeddingCache
from twinstream.metrics import PipelineMetrics


class CountingEmbeddingCache(EmbeddingCache):
    """`EmbeddingCache` that records each lookup batch's hits and misses in ``metrics``."""

    def __init__(self, client: redis.Redis, ttl_s: int, metrics: PipelineMetrics) -> None:
        super().__init__(client, ttl_s)
        self._metrics = metrics

    def get_many(self, model_version: str, digests: Sequence[str]) -> list[np.ndarray | None]:
        found = super().get_many(model_version, digests)
        hits = sum(vector is not None for vector in found)
        self._metrics.observe_cache(hits, len(found) - hits)
        return found
