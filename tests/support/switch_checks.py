"""Checks of the answers a model switch under traffic produced: failures, distances, version tags.

A verify or identify answered by one version end to end has the distances that version's own embedding
gives (its tower on the probe, its collection's vector of the enrolment image); the expected distances
are computed here, in process, with each version's tower on the same images.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from services.embedder.model import TowerEmbedder
from tests.support.switch_traffic import Exchange, PointerMove
from twinstream.config import Settings
from twinstream.contracts import Decision, ImageRequest, Op
from twinstream.images.prepared import prepare
from twinstream.images.preprocess import normalize

#: How far a served distance may be from the one computed here (float32 vectors, other batch sizes).
TOLERANCE = 1e-5


def pixels(tower: TowerEmbedder, images: list[bytes], settings: Settings) -> np.ndarray:
    """The images pre-processed as ingest does, for ``tower``'s input spec."""
    requests = [ImageRequest(f"r{i}", Op.IDENTIFY, png) for i, png in enumerate(images)]
    batch, refused = prepare(requests, tower.manifest.input, settings.limits)
    assert not refused
    return normalize(batch.pixels, tower.manifest.input)


class References:
    """Each version's own embedding of every test image."""

    def __init__(self, dirs: dict[str, Path], images: list[bytes], settings: Settings) -> None:
        self.vectors: dict[str, np.ndarray] = {}
        for version, model_dir in dirs.items():
            tower = TowerEmbedder.from_dir(model_dir)
            self.vectors[version] = tower.embed(pixels(tower, images, settings)).astype(np.float64)

    def distance(self, version: str, probe: int, enrolled: int) -> float:
        vectors = self.vectors[version]
        return float(np.linalg.norm(vectors[probe] - vectors[enrolled]))


def failures(exchanges: list[Exchange]) -> list[Exchange]:
    """Requests not answered with a 2xx or a result that is not a refusal."""
    return [
        e
        for e in exchanges
        if e.status not in (0, 200, 201) or e.result is None or e.result.decision is Decision.REJECTED
    ]


def describe(failed: list[Exchange], enrolled_in: dict[str, str]) -> str:
    """Failures counted by channel, op, reason and the phase their subject was enrolled in; then samples."""
    reasons = Counter(
        (str(e.channel), str(e.op), e.error[:40] or str(e.result and e.result.error_reason),
         enrolled_in.get(e.subject, "-"))
        for e in failed
    )  # fmt: skip
    return f"{dict(reasons)}; first: {failed[:2]}"


def distance_errors(
    exchanges: list[Exchange], refs: References, enrolled: dict[str, int], versions: tuple[str, str]
) -> tuple[list[str], int, int]:
    """Answers whose distances are not their tagged version's own.

    Returns:
        (errors, distances checked, distances that would also match the other version).
    """
    errors, checked, ambiguous = [], 0, 0
    for e in exchanges:
        r = e.result
        if r is None or e.op is Op.ENROLL:
            continue
        other = versions[1] if r.model_version == versions[0] else versions[0]
        pairs: list[tuple[str, float | None]]
        if e.op is Op.IDENTIFY:
            pairs = [(c.subject, c.distance) for c in r.candidates]
        else:
            pairs = [(e.subject, r.distance)]
        for subject, got in pairs:
            own = refs.distance(r.model_version, e.image, enrolled[subject])
            checked += 1
            if got is None or abs(got - own) > TOLERANCE:
                errors.append(f"{e.channel} {e.op} {r.request_id} on {r.model_version}: {got} != {own}")
            elif abs(got - refs.distance(other, e.image, enrolled[subject])) <= TOLERANCE:
                ambiguous += 1
    return errors, checked, ambiguous


def tag_errors(exchanges: list[Exchange], moves: list[PointerMove], a: str, b: str) -> list[str]:
    """Answers whose version contradicts the live pointer's moves (A→B, then B→A).

    A version answers only between the moves that bracket it: no B before the promote's move or for a
    request sent after the rollback's; only B for requests sent after the promote's move and answered
    before the rollback's.
    """
    assert [(m.old, m.new) for m in moves] == [(a, b), (b, a)], moves
    to_b, to_a = moves
    errors = []
    for e in exchanges:
        tag = e.result.model_version if e.result else None
        if e.answered_at < to_b.old_seen and tag != a:
            errors.append(f"{e.request_id} answered before the promote by {tag}")
        if e.sent_at > to_b.new_seen and e.answered_at < to_a.old_seen and tag != b:
            errors.append(f"{e.request_id} sent and answered while B was live, by {tag}")
        if e.sent_at > to_a.new_seen and tag != a:
            errors.append(f"{e.request_id} sent after the rollback, answered by {tag}")
        if tag == b and not (e.answered_at > to_b.old_seen and e.sent_at < to_a.new_seen):
            errors.append(f"{e.request_id} answered by B outside B's time")
    return errors
