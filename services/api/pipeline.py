"""The matching pipeline for a batch of requests: validate, embed once, one gallery call per op, decide.

Shared by the stream (the Serve handle's ``process``) and the HTTP API. Refused inputs become REJECTED
results and never raise; a failing dependency (embedder, Milvus, Redis) raises so the caller can retry.
Blocking client calls run in threads so the replica's event loop keeps serving.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import numpy as np

from services.gallery.matcher import Matcher
from services.gallery.milvus_gallery import Enrollment
from services.gallery.names import check_name, image_id
from services.gallery.ports import Gallery
from services.results.store import EmbeddingCache
from twinstream.config import LimitsSettings
from twinstream.contracts import (
    OPS_NEEDING_SUBJECT,
    OPS_WITHOUT_IMAGE,
    ImageRequest,
    InputError,
    MatchResult,
    Op,
    RejectReason,
    Timings,
)
from twinstream.imaging import decode_image, image_digest
from twinstream.ports import ResultSink
from twinstream.preprocess import preprocess

EmbedFn = Callable[[np.ndarray], Awaitable[np.ndarray]]
MAX_TOP_K = 100


@dataclass(frozen=True, slots=True)
class _Valid:
    """A request that passed validation, with its digest and (for image ops) its tower input."""

    index: int
    request: ImageRequest
    digest: str = ""
    tensor: np.ndarray | None = None
    decode_s: float = 0.0


class MatchingPipeline:
    """Embed, match or store, and decide for a batch of requests (`twinstream.ports.MatchPipeline`).

    Args:
        embed: Async function embedding a pre-processed batch (N, C, H, W) → (N, D) unit vectors.
        gallery: The collection of the served model version (Milvus, usually behind its mirror).
        matcher: Decision rules of that model version.
        limits: Input safety limits.
        results: Where every result is stored (Redis), or None.
        cache: Embedding cache, or None.
    """

    def __init__(
        self,
        embed: EmbedFn,
        gallery: Gallery,
        matcher: Matcher,
        limits: LimitsSettings,
        *,
        results: ResultSink | None = None,
        cache: EmbeddingCache | None = None,
    ) -> None:
        self._embed = embed
        self.gallery = gallery
        self.matcher = matcher
        self._limits = limits
        self._results = results
        self._cache = cache
        self.model_version = matcher.manifest.version

    async def process(self, requests: Sequence[ImageRequest]) -> list[MatchResult]:
        """Results for ``requests``, in order, one each; also stored in the result store."""
        started = time.perf_counter()
        out: list[MatchResult | None] = [None] * len(requests)
        valid: list[_Valid] = []
        for index, request in enumerate(requests):
            try:
                valid.append(self._validate(index, request))
            except InputError as exc:
                out[index] = _rejected(request, exc)
        vectors, embed_s = await self._vectors(valid)
        for op in Op:
            group = [v for v in valid if v.request.op == op]
            if not group:
                continue
            t0 = time.perf_counter()
            decided = await self._run_op(op, group, vectors)
            gallery_s = time.perf_counter() - t0
            for item, result in zip(group, decided, strict=True):
                timings = Timings(item.decode_s, embed_s if item.tensor is not None else 0.0, gallery_s)
                out[item.index] = dataclasses.replace(result, timings=timings)
        total = time.perf_counter() - started
        final = [
            dataclasses.replace(r, timings=dataclasses.replace(r.timings, total_s=total))
            for r in out
            if r is not None  # every slot is filled: rejected above or decided per op
        ]
        if self._results is not None:
            await asyncio.to_thread(self._results.put_many, final)
        return final

    async def embed_image(self, request: ImageRequest) -> np.ndarray:
        """The embedding of one request's image, without touching the gallery (raises `InputError`)."""
        vectors, _ = await self._vectors([self._validate(0, request)])
        return vectors[0]

    def _validate(self, index: int, request: ImageRequest) -> _Valid:
        """Check names and the image; decode and pre-process it (raises `InputError`)."""
        check_name("tenant", request.tenant)
        if request.op in OPS_NEEDING_SUBJECT:
            check_name("subject", request.subject)
        if request.op == Op.IDENTIFY and not 1 <= request.top_k <= MAX_TOP_K:
            raise InputError(RejectReason.BAD_HEADER, f"top-k must be 1..{MAX_TOP_K}, got {request.top_k}")
        if request.op in OPS_WITHOUT_IMAGE:
            return _Valid(index, request)
        t0 = time.perf_counter()
        img = decode_image(request.image, self._limits, request.content_type)
        tensor = preprocess(img, self.matcher.manifest.input).numpy()
        return _Valid(index, request, image_digest(request.image), tensor, time.perf_counter() - t0)

    async def _vectors(self, valid: list[_Valid]) -> tuple[dict[int, np.ndarray], float]:
        """Embeddings by request index: cached ones from Redis, the rest from one embedder call."""
        todo = [v for v in valid if v.tensor is not None]
        if not todo:
            return {}, 0.0
        t0 = time.perf_counter()
        cached: list[np.ndarray | None] = [None] * len(todo)
        if self._cache is not None:
            digests = [v.digest for v in todo]
            cached = await asyncio.to_thread(self._cache.get_many, self.model_version, digests)
        misses = [v for v, c in zip(todo, cached, strict=True) if c is None]
        vectors = {v.index: c for v, c in zip(todo, cached, strict=True) if c is not None}
        if misses:
            fresh = await self._embed(np.stack([m.tensor for m in misses if m.tensor is not None]))
            vectors.update({m.index: vec for m, vec in zip(misses, fresh, strict=True)})
            if self._cache is not None:
                await asyncio.to_thread(
                    self._cache.put_many, self.model_version, [m.digest for m in misses], fresh
                )
        return vectors, time.perf_counter() - t0

    async def _run_op(self, op: Op, group: list[_Valid], vectors: dict[int, np.ndarray]) -> list[MatchResult]:
        """One gallery round for every request of one op."""
        if op == Op.ENROLL:
            items = [
                Enrollment(
                    image_id(v.request.tenant, v.request.subject, v.digest),
                    v.request.tenant,
                    v.request.subject,
                    vectors[v.index],
                )
                for v in group
            ]
            fresh = await asyncio.to_thread(self.gallery.enroll, items)
            return [self.matcher.enrolled(v.request, new) for v, new in zip(group, fresh, strict=True)]
        if op == Op.VERIFY:
            keys = list(dict.fromkeys((v.request.tenant, v.request.subject) for v in group))
            enrolled = await asyncio.to_thread(self.gallery.vectors_of, keys)
            return [
                self.matcher.verified(
                    v.request, vectors[v.index], enrolled.get((v.request.tenant, v.request.subject))
                )
                for v in group
            ]
        if op == Op.IDENTIFY:
            return await self._identify(group, vectors)
        keys = list(dict.fromkeys((v.request.tenant, v.request.subject) for v in group))
        await asyncio.to_thread(self.gallery.delete, keys)
        return [self.matcher.deleted(v.request) for v in group]

    async def _identify(self, group: list[_Valid], vectors: dict[int, np.ndarray]) -> list[MatchResult]:
        """One search per tenant in the batch (Milvus takes one filter per call; the tenant is in it)."""
        by_tenant: dict[str, list[_Valid]] = {}
        for v in group:
            by_tenant.setdefault(v.request.tenant, []).append(v)
        decided: dict[int, MatchResult] = {}
        for tenant, items in by_tenant.items():
            top_k = max(v.request.top_k for v in items)
            query = np.stack([vectors[v.index] for v in items])
            hits = await asyncio.to_thread(self.gallery.search, tenant, query, top_k)
            for v, found in zip(items, hits, strict=True):
                decided[v.index] = self.matcher.identified(v.request, found)
        return [decided[v.index] for v in group]


def _rejected(request: ImageRequest, exc: InputError) -> MatchResult:
    return MatchResult.rejected(
        request.request_id,
        exc.as_rejection(),
        op=request.op,
        tenant=request.tenant,
        subject=request.subject,
        source=request.source,
    )
