"""The matching pipeline for a batch of requests: prepare, embed once, match round by round, decide.

Shared by the stream (the Serve handle's ``process_prepared``, whose images the ingest workers prepared)
and the HTTP API (``process``, which prepares in a thread so the replica's event loop keeps serving).
Refused inputs become REJECTED results and never raise; a failing dependency (tower, Milvus, Redis)
raises so the caller can retry.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

import numpy as np

from services.matching.matcher import Matcher
from services.matching.ports import EmbeddingCache, EnrolmentLog, Eraser, ErasureLedger, Gallery, Policies
from services.matching.rounds import schedule
from services.matching.steps import Item, Stores, Vectors, run_op
from twinstream.config import LimitsSettings
from twinstream.contracts import (
    MAX_TOP_K,
    OPS_NEEDING_SUBJECT,
    Decision,
    ImageRequest,
    InputError,
    MatchResult,
    Op,
    RejectReason,
    TenantPolicy,
    Timings,
)
from twinstream.images.prepared import FaceFinder, PreparedBatch, StaleInputSpecError, prepare
from twinstream.images.preprocess import InputSpec, normalize
from twinstream.names import check_name
from twinstream.ports import ResultStore

EmbedFn = Callable[[np.ndarray], Awaitable[np.ndarray]]
#: Prepares a batch's images for a spec elsewhere (`twinstream.images.prepare_pool.PreparePool.prepare`).
PrepareFn = Callable[
    [Sequence[ImageRequest], InputSpec], Awaitable[tuple[PreparedBatch, dict[int, InputError]]]
]
_NO_STAGES = (0.0, 0.0, 0.0)
#: Decisions whose result ties its image to a subject (the cached embedding is that subject's).
_NAMES_SUBJECT = frozenset({Decision.ENROLLED, Decision.DUPLICATE, Decision.MATCH, Decision.NO_MATCH})


class MatchingPipeline:
    """Embed, match or store, and decide for a batch of requests (`twinstream.ports.MatchPipeline`).

    Args:
        embed: Async function embedding a pre-processed batch (N, C, H, W) → (N, D) unit vectors.
        gallery: The collection of the served model version (Milvus, usually behind its mirror).
        matcher: Decision rules of that model version.
        limits: Input safety limits.
        results: Where every result is stored (Redis), or None. It is also read: a request whose id
            already has a result there for the same Kafka record (topic, partition, offset, timestamp)
            is a replay and gets that result back unchanged.
        cache: Embedding cache, or None.
        faces: The face finder, for models whose input is a face chip.
        policies: Each tenant's operating points; None: every tenant has the default `TenantPolicy`.
        log: The enrolment log every accepted enrolment is written to, or None.
        eraser: What a delete goes through (every version, caches, results, the log); None: the gallery.
        ledger: Erased subjects, whose older enrolments are refused; or None.
        preparer: Where ``process`` decodes and cuts images (a process pool, for face models); None: a
            thread of this process.
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
        faces: FaceFinder | None = None,
        policies: Policies | None = None,
        log: EnrolmentLog | None = None,
        eraser: Eraser | None = None,
        ledger: ErasureLedger | None = None,
        preparer: PrepareFn | None = None,
    ) -> None:
        self._embed = embed
        self.gallery = gallery
        self.matcher = matcher
        self._limits = limits
        self._results = results
        self._cache = cache
        self._faces = faces
        self._preparer = preparer
        self._policies = policies
        self._stores = Stores(gallery, matcher, log, eraser, ledger)
        self.model_version = matcher.manifest.version

    async def prepare(self, requests: Sequence[ImageRequest]) -> tuple[PreparedBatch, dict[int, InputError]]:
        """Decode and cut the images of ``requests`` for this model, off the event loop: in the preparer's
        processes when there is one, else in a thread."""
        spec = self.matcher.manifest.input
        if self._preparer is not None:
            return await self._preparer(requests, spec)
        return await asyncio.to_thread(prepare, requests, spec, self._limits, self._faces)

    async def process(self, requests: Sequence[ImageRequest]) -> list[MatchResult]:
        """Results for ``requests`` (images attached), in order, one each; also stored."""
        batch, refused = await self.prepare(requests)
        answered = iter(await self.process_prepared(batch))
        out = [
            _rejected(request, refused[i]) if i in refused else next(answered)
            for i, request in enumerate(requests)
        ]
        if refused and self._results is not None:
            await asyncio.to_thread(self._results.put_many, [out[i] for i in refused])
        return out

    async def process_prepared(self, batch: PreparedBatch) -> list[MatchResult]:
        """Results for a batch whose images were prepared, in order; stored; replays answered as stored.

        A replayed batch (a worker crashed after the pipeline answered) republishes identical results (an
        enrolment stays ENROLLED, not DUPLICATE) and touches the gallery no more.

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
        items: list[Item] = []
        bounds = np.cumsum([0, *batch.rows])
        for index, request in enumerate(batch.requests):
            if out[index] is not None:
                continue
            try:
                _check(request)
            except InputError as exc:
                out[index] = _rejected(request, exc)
                continue
            rows = tensors[bounds[index] : bounds[index + 1]] if batch.rows[index] else None
            items.append(
                Item(index, request, batch.digests[index], rows, batch.faces[index], batch.faces_found[index],
                     batch.decode_s[index])
            )  # fmt: skip
        return await self._decide(out, items, started, replayed)

    async def _decide(
        self, out: list[MatchResult | None], items: list[Item], started: float, replayed: set[int]
    ) -> list[MatchResult]:
        """Embed the items, run them round by round (one gallery call per op and round), fill ``out``;
        store and return it.

        Rounds (`services.matching.rounds.schedule`) keep effects on one subject in record order: a
        request sees every earlier request's effect on its subject (its tenant, for identify) and none of
        the later ones'. Slots of ``out`` filled on entry are refusals, or replays (``replayed``).
        """
        vectors, embed_s = await self._vectors(items)
        policies = await self._policies_of(items)
        stages: dict[int, tuple[float, float, float]] = {}
        rounds = schedule([v.request for v in items])
        for round_ in sorted(set(rounds)):
            for op in Op:
                group = [v for v, r in zip(items, rounds, strict=True) if r == round_ and v.request.op is op]
                if not group:
                    continue
                t0 = time.perf_counter()
                decided = await run_op(op, group, vectors, self._stores, policies)
                gallery_s = time.perf_counter() - t0
                for item, result in zip(group, decided, strict=True):
                    out[item.index] = result
                    stages[item.index] = (item.decode_s, embed_s if item.rows is not None else 0.0, gallery_s)
        total = time.perf_counter() - started
        final = [
            r if i in replayed else r.with_timings(Timings(*stages.get(i, _NO_STAGES), total_s=total))
            for i, r in enumerate(out)
            if r is not None  # every slot is filled: replayed, rejected before or decided per op
        ]
        fresh = [r for i, r in enumerate(final) if i not in replayed]
        entries = [
            (result.tenant, result.subject, item.digest)
            for item in items
            if (result := final[item.index]).subject and item.digest and result.decision in _NAMES_SUBJECT
        ]
        await asyncio.to_thread(self._record, fresh, entries)  # one thread hop for both writes
        return final

    def _record(self, fresh: list[MatchResult], entries: list[tuple[str, str, str]]) -> None:
        """Store the batch's new results, and tell the cache which subject each image was enrolled,
        verified or identified as (for erasure)."""
        if self._results is not None and fresh:
            self._results.put_many(fresh)
        if self._cache is not None and entries:
            self._cache.index_subjects(entries)

    async def _policies_of(self, items: list[Item]) -> dict[str, TenantPolicy]:
        tenants = list(dict.fromkeys(v.request.tenant for v in items))
        if self._policies is None:
            return dict.fromkeys(tenants, TenantPolicy())
        return await self._policies.of(tenants)

    async def _answered(self, requests: Sequence[ImageRequest]) -> list[MatchResult | None]:
        """Per request, the result already stored under its id for the same Kafka record, else None."""
        if self._results is None or not any(r.source for r in requests):
            return [None] * len(requests)
        stored = await asyncio.to_thread(self._results.get_many, [(r.tenant, r.request_id) for r in requests])
        return [
            found if found is not None and _same_request(found, request) else None
            for request, found in zip(requests, stored, strict=True)
        ]

    async def embed_image(self, request: ImageRequest) -> np.ndarray:
        """The embedding of one request's image (its largest face, for face models); raises `InputError`."""
        batch, refused = await self.prepare([request])
        if refused:
            raise refused[0]
        vectors = await self._embed(normalize(batch.pixels, batch.spec))
        return vectors[0]

    async def _vectors(self, items: list[Item]) -> tuple[Vectors, float]:
        """Embeddings by batch index: cached ones from Redis, the rest from one forward pass."""
        todo = [v for v in items if v.rows is not None]
        if not todo:
            return {}, 0.0
        t0 = time.perf_counter()
        keys = [key for v in todo for key in v.cache_keys()]
        rows = np.concatenate([v.rows for v in todo if v.rows is not None])
        found: list[np.ndarray | None] = [None] * len(keys)
        if self._cache is not None:
            found = await asyncio.to_thread(self._cache.get_many, self.model_version, keys)
        missing = [i for i, vector in enumerate(found) if vector is None]
        if missing:
            fresh = await self._embed(rows[missing])
            for i, vector in zip(missing, fresh, strict=True):
                found[i] = vector
            if self._cache is not None:
                await asyncio.to_thread(
                    self._cache.put_many, self.model_version, [keys[i] for i in missing], fresh
                )
        flat = np.stack([vector for vector in found if vector is not None])
        bounds = np.cumsum([0, *(len(v.cache_keys()) for v in todo)])
        vectors = {v.index: flat[bounds[i] : bounds[i + 1]] for i, v in enumerate(todo)}
        return vectors, time.perf_counter() - t0


def _check(request: ImageRequest) -> None:
    """Check the names and the top-k of a request (raises `InputError`)."""
    check_name("tenant", request.tenant)
    if request.op in OPS_NEEDING_SUBJECT:
        check_name("subject", request.subject)
    if request.op is Op.IDENTIFY and not 1 <= request.top_k <= MAX_TOP_K:
        raise InputError(RejectReason.BAD_HEADER, f"top-k must be 1..{MAX_TOP_K}, got {request.top_k}")


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
