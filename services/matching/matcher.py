"""Decisions from distances: MATCH / NO_MATCH / UNKNOWN at the manifest's threshold, with probabilities.

Pure functions of the manifest and the gallery's answers; no I/O, so every rule is unit-tested.
A distance at or below the threshold is a match (the threshold was chosen at the target FAR).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter

import numpy as np

from services.matching.ports import Hit
from twinstream.contracts import Candidate, Decision, ImageRequest, MatchResult, Rejection, RejectReason
from twinstream.model.artifact import Manifest

_by_distance = attrgetter("distance")


@dataclass(frozen=True, slots=True)
class Matcher:
    """Turns gallery answers into `MatchResult`s for one model version."""

    manifest: Manifest

    def _base(
        self, request: ImageRequest, decision: Decision, subject: str | None = None, **fields: object
    ) -> MatchResult:
        return MatchResult(
            request_id=request.request_id,
            op=request.op,
            decision=decision,
            tenant=request.tenant,
            subject=request.subject if subject is None else subject,
            model_version=self.manifest.version,
            source=request.source,
            **fields,  # type: ignore[arg-type]
        )

    def _candidates(self, hits: list[Hit]) -> tuple[Candidate, ...]:
        if not hits:
            return ()
        probs = self.manifest.probability(np.array([h.distance for h in hits]))
        return tuple(Candidate(h.subject, h.distance, float(p)) for h, p in zip(hits, probs, strict=True))

    def enrolled(self, request: ImageRequest, is_new: bool) -> MatchResult:
        """ENROLLED for a new image id, DUPLICATE when that image was already enrolled for the subject."""
        return self._base(request, Decision.ENROLLED if is_new else Decision.DUPLICATE)

    def verified(self, request: ImageRequest, query: np.ndarray, enrolled: np.ndarray | None) -> MatchResult:
        """1:1 against every enrolled vector of the subject: the best distance decides."""
        if enrolled is None or len(enrolled) == 0:
            return MatchResult.rejected(
                request.request_id,
                Rejection(
                    RejectReason.UNKNOWN_SUBJECT, f"subject {request.subject!r} has no enrolled images"
                ),
                op=request.op,
                tenant=request.tenant,
                subject=request.subject,
                source=request.source,
            )
        distances = np.linalg.norm(enrolled.astype(np.float64) - query.astype(np.float64), axis=1)
        best = float(distances.min())
        (candidate,) = self._candidates([Hit(request.subject, best)])
        decision = Decision.MATCH if best <= self.manifest.threshold else Decision.NO_MATCH
        return self._base(
            request,
            decision,
            distance=best,
            probability=candidate.probability,
            threshold=self.manifest.threshold,
            candidates=(candidate,),
        )

    def identified(self, request: ImageRequest, hits: list[Hit]) -> MatchResult:
        """1:N: MATCH names the nearest subject if within the threshold, else UNKNOWN (open set)."""
        return self.identified_many([request], [hits])[0]

    def identified_many(
        self, requests: Sequence[ImageRequest], hits: Sequence[list[Hit]]
    ) -> list[MatchResult]:
        """`identified` for a batch: every candidate's probability comes from one calibration lookup."""
        ranked = [sorted(h, key=_by_distance)[: r.top_k] for r, h in zip(requests, hits, strict=True)]
        flat = [h.distance for top in ranked for h in top]
        probs = iter(self.manifest.probability(np.array(flat)).tolist() if flat else ())
        threshold = self.manifest.threshold
        out = []
        for request, top in zip(requests, ranked, strict=True):
            if not top:
                out.append(self._base(request, Decision.UNKNOWN, threshold=threshold))
                continue
            candidates = tuple(Candidate(h.subject, h.distance, next(probs)) for h in top)
            best = candidates[0]
            matched = best.distance <= threshold
            out.append(
                self._base(
                    request,
                    Decision.MATCH if matched else Decision.UNKNOWN,
                    subject=best.subject if matched else request.subject,
                    distance=best.distance,
                    probability=best.probability,
                    threshold=threshold,
                    candidates=candidates,
                )
            )
        return out

    def deleted(self, request: ImageRequest) -> MatchResult:
        """DELETED (also when nothing was left to delete: a replayed delete has the same outcome)."""
        return self._base(request, Decision.DELETED)
