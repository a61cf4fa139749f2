"""One round of gallery work for the requests of one op: enrol, verify, identify or delete, then decide.

Each function makes one gallery call for its whole group (per tenant for identify, which searches one
tenant at a time) and turns the answers into results with the `Matcher`. Face models add where the face
was (`MatchResult.face`, ``faces_found``) and, for a group identify, one answer per face (``faces``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from services.matching.matcher import Matcher
from services.matching.ports import Enrollment, Gallery, Hit
from twinstream.contracts import Decision, FaceAnswer, FaceBox, ImageRequest, MatchResult, Op, TenantPolicy
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


async def run_op(
    op: Op, group: list[Item], vectors: Vectors, gallery: Gallery, matcher: Matcher, policies: PolicyMap
) -> list[MatchResult]:
    """One gallery round for every request of one op; results in the order of ``group``."""
    if op is Op.ENROLL:
        return await _enroll(group, vectors, gallery, matcher)
    if op is Op.VERIFY:
        return await _verify(group, vectors, gallery, matcher, policies)
    if op is Op.IDENTIFY:
        return await _identify(group, vectors, gallery, matcher, policies)
    keys = list(dict.fromkeys((v.request.tenant, v.request.subject) for v in group))
    await asyncio.to_thread(gallery.delete, keys)
    return [matcher.deleted(v.request) for v in group]


async def _enroll(
    group: list[Item], vectors: Vectors, gallery: Gallery, matcher: Matcher
) -> list[MatchResult]:
    items = [
        Enrollment(
            image_id(v.request.tenant, v.request.subject, v.digest),
            v.request.tenant,
            v.request.subject,
            vectors[v.index][0],
        )
        for v in group
    ]
    fresh = await asyncio.to_thread(gallery.enroll, items)
    return [v.with_face(matcher.enrolled(v.request, new)) for v, new in zip(group, fresh, strict=True)]


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
