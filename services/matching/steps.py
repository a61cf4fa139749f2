"""One round of gallery work for the requests of one op: enrol, verify, identify or delete, then decide.

Each function makes one gallery call for its whole group (per tenant for identify, which searches one
tenant at a time) and turns the answers into results with the `Matcher`. Face models add where the face
was (`MatchResult.face`, ``faces_found``) and, for a group identify, one answer per face (``faces``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from services.matching.matcher import Matcher
from services.matching.ports import (
    Enrollment,
    EnrolmentLog,
    Eraser,
    ErasureLedger,
    Gallery,
    Hit,
    LoggedEnrolment,
)
from twinstream.contracts import (
    Decision,
    FaceAnswer,
    FaceBox,
    ImageRequest,
    MatchResult,
    Op,
    Rejection,
    RejectReason,
    TenantPolicy,
)
from twinstream.names import image_id


@dataclass(frozen=True, slots=True)
class Item:
    """A valid request of a batch: its position, its image digest and tower rows, and its faces.

    Attributes:
        index: Position in the batch.
        request: The request.
        digest: SHA-256 of its image bytes ("" for ops without an image).
        rows: Its tower inputs (k, C, H, W), or None for ops without an image.
        boxes: Face models: the box of each row.
        found: Face models: how many faces the image held.
        decode_s: Seconds spent decoding and cutting its image.
    """

    index: int
    request: ImageRequest
    digest: str = ""
    rows: np.ndarray | None = None
    boxes: tuple[FaceBox, ...] = ()
    found: int = 0
    decode_s: float = 0.0

    def cache_keys(self) -> list[str]:
        """Embedding-cache keys of its rows: the image digest, plus the face's rank for face models."""
        if not self.boxes:
            return [self.digest]
        return [f"{self.digest}#{rank}" for rank in range(len(self.boxes))]

    def with_face(self, result: MatchResult) -> MatchResult:
        """``result`` with where the (first) face is and how many the image held (face models)."""
        if not self.boxes:
            return result
        return replace(result, face=self.boxes[0], faces_found=self.found)


Vectors = dict[int, np.ndarray]  # batch index → (k, D) embeddings of its rows
PolicyMap = Mapping[str, TenantPolicy]  # tenant → its operating points


@dataclass(frozen=True)
class Stores:
    """What a round works with: the served version's gallery and rules, and the lifecycle ports.

    Attributes:
        gallery: The live version's gallery.
        matcher: The live version's decision rules.
        log: The enrolment log (every accepted enrolment, tombstones on erasure), or None.
        eraser: Erases a subject everywhere on delete; None: delete from ``gallery`` only.
        ledger: Erased subjects: an enrolment written before the erasure is refused; or None.
    """

    gallery: Gallery
    matcher: Matcher
    log: EnrolmentLog | None = None
    eraser: Eraser | None = None
    ledger: ErasureLedger | None = None


async def run_op(
    op: Op, group: list[Item], vectors: Vectors, stores: Stores, policies: PolicyMap
) -> list[MatchResult]:
    """One gallery round for every request of one op; results in the order of ``group``."""
    if op is Op.ENROLL:
        return await _enroll(group, vectors, stores)
    if op is Op.VERIFY:
        return await _verify(group, vectors, stores.gallery, stores.matcher, policies)
    if op is Op.IDENTIFY:
        return await _identify(group, vectors, stores.gallery, stores.matcher, policies)
    keys = list(dict.fromkeys((v.request.tenant, v.request.subject) for v in group))
    eraser = stores.eraser
    await asyncio.to_thread(eraser.erase if eraser is not None else stores.gallery.delete, keys)
    return [stores.matcher.deleted(v.request) for v in group]


async def _enroll(group: list[Item], vectors: Vectors, stores: Stores) -> list[MatchResult]:
    """Refuse enrolments of erased subjects written before the erasure; upsert the rest; log them."""
    erased = await _erased(group, stores.ledger)
    accepted = [v for v in group if v.index not in erased]
    items = [
        Enrollment(image_id(v.request.tenant, v.request.subject, v.digest), v.request.tenant,
                   v.request.subject, vectors[v.index][0])
        for v in accepted
    ]  # fmt: skip
    fresh = await asyncio.to_thread(stores.gallery.enroll, items) if items else []
    if stores.log is not None and items:
        # New and duplicate images alike: a replay after a crash between the two writes heals the log.
        now_ms = int(time.time() * 1000)
        logged = [
            LoggedEnrolment(item.image_id, item.tenant, item.subject, v.request.image, v.request.content_type,
                            now_ms, v.request.request_id)
            for item, v in zip(items, accepted, strict=True)
        ]  # fmt: skip
        await asyncio.to_thread(stores.log.append, logged)
    answers = {
        v.index: stores.matcher.enrolled(v.request, new) for v, new in zip(accepted, fresh, strict=True)
    }
    return [v.with_face(answers[v.index]) if v.index in answers else erased[v.index] for v in group]


async def _erased(group: list[Item], ledger: ErasureLedger | None) -> dict[int, MatchResult]:
    """Refusals of enrolments whose subject was erased after they were written (replays of old records)."""
    if ledger is None:
        return {}
    keys = list(dict.fromkeys((v.request.tenant, v.request.subject) for v in group))
    erased_at = await asyncio.to_thread(ledger.erased_before, keys)
    if not erased_at:
        return {}
    now_ms = int(time.time() * 1000)
    out = {}
    for v in group:
        when = erased_at.get((v.request.tenant, v.request.subject))
        if when is not None and _written_ms(v.request, now_ms) <= when:
            detail = f"subject {v.request.subject!r} was erased after this enrolment was written"
            out[v.index] = MatchResult.rejected(
                v.request.request_id, Rejection(RejectReason.ERASED_SUBJECT, detail), op=v.request.op,
                tenant=v.request.tenant, subject=v.request.subject, source=v.request.source,
            )  # fmt: skip
    return out


def _written_ms(request: ImageRequest, now_ms: int) -> int:
    """When a request was written: its Kafka record's timestamp, else the producer's, else now (HTTP)."""
    if request.source is not None and request.source.timestamp_ms > 0:
        return request.source.timestamp_ms
    return request.produced_at_ms or now_ms


async def _verify(
    group: list[Item], vectors: Vectors, gallery: Gallery, matcher: Matcher, policies: PolicyMap
) -> list[MatchResult]:
    keys = list(dict.fromkeys((v.request.tenant, v.request.subject) for v in group))
    enrolled = await asyncio.to_thread(gallery.vectors_of, keys)
    out = []
    for v in group:
        claimed = enrolled.get((v.request.tenant, v.request.subject))
        policy = policies[v.request.tenant]
        out.append(v.with_face(matcher.verified(v.request, vectors[v.index][0], claimed, policy)))
    return out


async def _identify(
    group: list[Item], vectors: Vectors, gallery: Gallery, matcher: Matcher, policies: PolicyMap
) -> list[MatchResult]:
    """One search per tenant (Milvus takes one filter per call); every face of every request in it.

    The tenant's gallery size is read with its search: the open-set threshold depends on it.
    """
    by_tenant: dict[str, list[Item]] = {}
    for v in group:
        by_tenant.setdefault(v.request.tenant, []).append(v)
    decided: dict[int, MatchResult] = {}
    for tenant, items in by_tenant.items():
        top_k = max(v.request.top_k for v in items)
        query = np.concatenate([vectors[v.index] for v in items])
        found, size = await asyncio.to_thread(_search, gallery, tenant, query, top_k)
        hits = iter(found)
        for v in items:
            per_face = [next(hits) for _ in range(len(vectors[v.index]))]
            answers = matcher.identified_many([v.request] * len(per_face), per_face, policies, {tenant: size})
            decided[v.index] = _one_answer(v, answers) if v.request.all_faces else v.with_face(answers[0])
    return [decided[v.index] for v in group]


def _search(gallery: Gallery, tenant: str, query: np.ndarray, top_k: int) -> tuple[list[list[Hit]], int]:
    return gallery.search(tenant, query, top_k), gallery.size(tenant)


def _one_answer(item: Item, answers: list[MatchResult]) -> MatchResult:
    """A group identify: one answer per face; at the top, the face that matched best (or the largest)."""
    faces = tuple(
        FaceAnswer(box, a.decision, a.subject if a.decision is Decision.MATCH else "", a.distance,
                   a.probability, a.candidates)
        for box, a in zip(item.boxes, answers, strict=True)
    )  # fmt: skip
    matched = [i for i, a in enumerate(answers) if a.decision is Decision.MATCH]
    best = min(matched, key=lambda i: answers[i].distance or 0.0) if matched else 0
    return replace(answers[best], face=item.boxes[best], faces_found=item.found, faces=faces)
