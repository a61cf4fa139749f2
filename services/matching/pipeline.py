"""The matching pipeline for a batch of requests: validate, embed once, match round by round, decide.

Shared by the stream (the Serve handle's ``process``) and the HTTP API. Refused inputs become REJECTED
results and never raise; a failing dependency (embedder, Milvus, Redis) raises so the caller can retry.
Blocking client calls run in threads so the replica's event loop keeps serving.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import numpy as np

from services.matching.matcher import Matcher
from services.matching.ports import EmbeddingCache, Enrollment, Gallery
from services.matching.rounds import schedule
from twinstream.config import LimitsSettings
from twinstream.contracts import (
    MAX_TOP_K,
    OPS_NEEDING_SUBJECT,
    OPS_WITHOUT_IMAGE,
    ImageRequest,
    InputError,
    MatchResult,
    Op,
    RejectReason,
    Timings,
)
from twinstream.images.decode import decode_image, image_digest
from twinstream.images.prepared import PreparedBatch, StaleInputSpecError
from twinstream.images.preprocess import normalize, preprocess
from twinstream.names import check_name, image_id
from twinstream.ports import ResultStore

EmbedFn = Callable[[np.ndarray], Awaitable[np.ndarray]]
_NO_STAGES = (0.0, 0.0, 0.0)


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
        results: Where every result is stored (Redis), or None. The stream's entries also read it: a
            request whose id already has a result there for the same Kafka record (topic, partition,
            offset, timestamp) is a replay and gets that result back unchanged.
        cache: Embedding cache, or None.
    """

    def __init__(
        self,
        embed: EmbedFn,
        gallery: Gallery,
        matcher: Matcher,
        limits: LimitsSettings,
        *,
        results: ResultStore | None = None,
        cache: EmbeddingCache | None = None,
    ) -> None:
        self._embed = embed
        self.gallery = gallery
        self.matcher = matcher
        self._limits = limits
        self._results = results
        self._cache = cache
        self.model_version = matcher.manifest.version

    async def process(
        self, requests: Sequence[ImageRequest], *, replay_safe: bool = False
    ) -> list[MatchResult]:
        """Results for ``requests``, in order, one each; also stored in the result store.

        With ``replay_safe`` (the stream), a request whose Kafka record already has a stored result is
        answered with it: a batch replayed after a crash republishes identical results (an enrolment
        stays ENROLLED, not DUPLICATE) and touches the gallery no more.
        """
        started = time.perf_counter()
        out: list[MatchResult | None] = [None] * len(requests)
        if replay_safe:
            out = await self._answered(requests)
        replayed = {i for i, r in enumerate(out) if r is not None}
        valid: list[_Valid] = []
        for index, request in enumerate(requests):
            if out[index] is not None:
                continue
            try:
                valid.append(self._validate(index, request))
            except InputError as exc:
                out[index] = _rejected(request, exc)
        return await self._decide(out, valid, started, replayed)

    async def process_prepared(self, batch: PreparedBatch) -> list[MatchResult]:
        """`process` (replay-safe) for a batch whose images the caller decoded and resized.

        Raises:
            StaleInputSpecError: If the batch was prepared for another input spec than this model's.
        """
        spec = self.matcher.manifest.input
        if batch.spec != spec:
            raise StaleInputSpecError(
                f"batch prepared for {batch.spec}; model {self.model_version} takes {spec}"
            )
        started = time.perf_counter()
        tensors = normalize(batch.pixels, spec)  # the whole batch in one vectorised pass
        out = await self._answered(batch.requests)
        replayed = {i for i, r in enumerate(out) if r is not None}
        valid: list[_Valid] = []
        rows = iter(tensors)
        for index, (request, digest, decode_s) in enumerate(
            zip(batch.requests, batch.digests, batch.decode_s, strict=True)
        ):
            tensor = next(rows) if digest else None
            if out[index] is not None:
                continue
            try:
                self._check(request)
            except InputError as exc:
                out[index] = _rejected(request, exc)
                continue
            valid.append(_Valid(index, request, digest, tensor, decode_s))
        return await self._decide(out, valid, started, replayed)

    async def _decide(
        self, out: list[MatchResult | None], valid: list[_Valid], started: float, replayed: set[int]
    ) -> list[MatchResult]:
        """Embed the valid requests, run them round by round (one gallery call per op and round), fill
        ``out``; store and return it.

        Rounds (`services.matching.rounds.schedule`) keep effects on one subject in record order: a
        request sees every earlier request's effect on its subject (its tenant, for identify) and none of
        the later ones'. Slots of ``out`` filled on entry are refusals, or replays (``replayed``).
        """
        vectors, embed_s = await self._vectors(valid)
        stages: dict[int, tuple[float, float, float]] = {}
        rounds = schedule([v.request for v in valid])
        for round_ in sorted(set(rounds)):
            for op in Op:
                group = [v for v, r in zip(valid, rounds, strict=True) if r == round_ and v.request.op == op]
                if not group:
                    continue
                t0 = time.perf_counter()
                decided = await self._run_op(op, group, vectors)
                gallery_s = time.perf_counter() - t0
                for item, result in zip(group, decided, strict=True):
                    out[item.index] = result
                    embedded = embed_s if item.tensor is not None else 0.0
                    stages[item.index] = (item.decode_s, embedded, gallery_s)
        total = time.perf_counter() - started
        final = [
            r if i in replayed else r.with_timings(Timings(*stages.get(i, _NO_STAGES), total_s=total))
            for i, r in enumerate(out)
            if r is not None  # every slot is filled: replayed, rejected before or decided per op
        ]
        if self._results is not None and len(replayed) < len(final):
            fresh = [r for i, r in enumerate(final) if i not in replayed]
            await asyncio.to_thread(self._results.put_many, fresh)
        return final

    async def _answered(self, requests: Sequence[ImageRequest]) -> list[MatchResult | None]:
        """Per request, the result already stored under its id for the same request, else None."""
        if self._results is None or not requests:
            return [None] * len(requests)
        stored = await asyncio.to_thread(self._results.get_many, [r.request_id for r in requests])
        return [
            found if found is not None and _same_request(found, request) else None
            for request, found in zip(requests, stored, strict=True)
        ]

    async def embed_image(self, request: ImageRequest) -> np.ndarray:
        """The embedding of one request's image, without touching the gallery (raises `InputError`)."""
        vectors, _ = await self._vectors([self._validate(0, request)])
        return vectors[0]

    @staticmethod
    def _check(request: ImageRequest) -> None:
        """Check the names and the top-k of a request (raises `InputError`)."""
        check_name("tenant", request.tenant)
        if request.op in OPS_NEEDING_SUBJECT:
            check_name("subject", request.subject)
        if request.op == Op.IDENTIFY and not 1 <= request.top_k <= MAX_TOP_K:
            raise InputError(RejectReason.BAD_HEADER, f"top-k must be 1..{MAX_TOP_K}, got {request.top_k}")

    def _validate(self, index: int, request: ImageRequest) -> _Valid:
        """Check the request; decode and pre-process its image (raises `InputError`)."""
        self._check(request)
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
            answers = self.matcher.identified_many([v.request for v in items], hits)
            decided.update((v.index, answer) for v, answer in zip(items, answers, strict=True))
        return [decided[v.index] for v in group]


def _same_request(result: MatchResult, request: ImageRequest) -> bool:
    """Whether a stored result answers this very Kafka record (a replay), not another use of its id.

    The record's coordinates (topic, partition, offset, timestamp) must match: a producer that reuses a
    request id, or a topic recreated from offset 0, gets a fresh answer.
    """
    return request.source is not None and result.source == request.source and result.op == request.op


def _rejected(request: ImageRequest, exc: InputError) -> MatchResult:
    return MatchResult.rejected(
        request.request_id,
        exc.as_rejection(),
        op=request.op,
        tenant=request.tenant,
        subject=request.subject,
        source=request.source,
    )
