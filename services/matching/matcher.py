"""Decisions from distances under a tenant's operating point: one rule, MATCH ⇔ probability ≥ p*.

Verify: the tenant's target FAR maps (through the model's impostor model) to a distance threshold ``t``
for a subject with M enrolled images (the best of M comparisons must stay below the target), and
``p* = p1(t)``; the result's probability is p1 of the best distance. Identify (open set): the tenant's
target FPIR and its current gallery size N map to ``t_N``; each candidate's probability is p_N, the
probability that it is the person (`twinstream.model.operating_point`), and ``p* = p_N(t_N)``. Both
decide on the calibrated log-odds against the cut's, so a decision and its probability never disagree,
and every result says which operating point decided (``policy``).

Pure functions of the manifest, the policy and the gallery's answers: no I/O, so every rule is unit-tested.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import lru_cache
from operator import attrgetter

import numpy as np

from services.matching.ports import Hit
from twinstream.contracts import (
    Candidate,
    Decision,
    ImageRequest,
    MatchResult,
    OperatingPoint,
    PolicyKind,
    Rejection,
    RejectReason,
    TenantPolicy,
)
from twinstream.model.artifact import Manifest
from twinstream.model.operating_point import Cutoff, identify_log_odds, identify_point, verify_point

_by_distance = attrgetter("distance")
#: Identify cuts are cached per gallery size rounded UP to this geometric grid (4 % steps): a slightly
#: larger N is a slightly stricter threshold, so the FPIR stays at or below the target.
_SIZE_STEP = 1.04


def size_bucket(n: int) -> int:
    """``n`` rounded up to the cache grid (exact below 25, where the steps would be below one)."""
    if n <= 25:
        return max(1, n)
    return math.ceil(_SIZE_STEP ** math.ceil(math.log(n) / math.log(_SIZE_STEP) - 1e-9))


class Matcher:
    """Turns gallery answers into `MatchResult`s for one model version.

    Args:
        manifest: The model version's manifest (calibration, impostor model, version).
    """

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self._verify_cut = lru_cache(maxsize=256)(self._verify_cut_uncached)
        self._identify_cut = lru_cache(maxsize=4096)(self._identify_cut_uncached)

    def _verify_cut_uncached(self, far: float, images: int) -> Cutoff:
        cal, imp = self.manifest.calibration, self.manifest.impostors
        if images <= 1:
            return verify_point(cal, imp, far)
        # The best of M comparisons: a stranger passes if any of the M does (as identify with N = M).
        t = imp.threshold_at_fpir(far, images)
        lo = float(cal.log_odds(t))
        return Cutoff(t, float(1.0 / (1.0 + math.exp(-lo))), lo)

    def _identify_cut_uncached(self, fpir: float, n: int) -> Cutoff:
        return identify_point(self.manifest.calibration, self.manifest.impostors, fpir, n)

    def verify_policy(self, policy: TenantPolicy, images: int = 1) -> OperatingPoint:
        """The operating point a verify against a subject with ``images`` enrolled images is decided at."""
        cut = self._verify_cut(policy.verify_far, max(1, images))
        return OperatingPoint(PolicyKind.FAR, policy.verify_far, cut.threshold, cut.p_star, max(1, images))

    def identify_policy(self, policy: TenantPolicy, gallery_size: int) -> OperatingPoint:
        """The operating point an identify in a gallery of ``gallery_size`` vectors is decided at."""
        n = size_bucket(gallery_size)
        cut = self._identify_cut(policy.identify_fpir, n)
        return OperatingPoint(PolicyKind.FPIR, policy.identify_fpir, cut.threshold, cut.p_star, n)

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

    def enrolled(self, request: ImageRequest, is_new: bool) -> MatchResult:
        """ENROLLED for a new image id, DUPLICATE when that image was already enrolled for the subject."""
        return self._base(request, Decision.ENROLLED if is_new else Decision.DUPLICATE)

    def verified(
        self, request: ImageRequest, query: np.ndarray, enrolled: np.ndarray | None, policy: TenantPolicy
    ) -> MatchResult:
        """1:1 against every enrolled vector of the subject: the best distance, at the tenant's FAR."""
        if enrolled is None or len(enrolled) == 0:
            detail = f"subject {request.subject!r} has no enrolled images"
            refusal = Rejection(RejectReason.UNKNOWN_SUBJECT, detail)
            return MatchResult.rejected(
                request.request_id, refusal, op=request.op, tenant=request.tenant, subject=request.subject,
                source=request.source,
            )  # fmt: skip
        distances = np.linalg.norm(enrolled.astype(np.float64) - query.astype(np.float64), axis=1)
        best = float(distances.min())
        point = self.verify_policy(policy, len(enrolled))
        log_odds = float(self.manifest.calibration.log_odds(best))
        probability = float(self.manifest.calibration.probability(best))
        matched = log_odds >= self._verify_cut(policy.verify_far, point.gallery_size).log_odds_star
        return self._base(
            request,
            Decision.MATCH if matched else Decision.NO_MATCH,
            distance=best,
            probability=probability,
            threshold=point.threshold,
            candidates=(Candidate(request.subject, best, probability),),
            policy=point,
        )

    def identified_many(
        self,
        requests: Sequence[ImageRequest],
        hits: Sequence[list[Hit]],
        policies: Mapping[str, TenantPolicy],
        gallery_sizes: Mapping[str, int],
    ) -> list[MatchResult]:
        """1:N open set for a batch: MATCH names the nearest subject when p_N ≥ p*, else UNKNOWN.

        Args:
            requests: The identify requests.
            hits: Per request, the gallery's nearest subjects.
            policies: Per tenant, its operating points.
            gallery_sizes: Per tenant, how many vectors it holds now.
        """
        out = []
        cal = self.manifest.calibration
        for request, found in zip(requests, hits, strict=True):
            top = sorted(found, key=_by_distance)[: request.top_k]
            n = gallery_sizes.get(request.tenant, len(found))
            point = self.identify_policy(policies[request.tenant], n)
            if not top:
                out.append(self._base(request, Decision.UNKNOWN, threshold=point.threshold, policy=point))
                continue
            distances = np.array([h.distance for h in top])
            log_odds = identify_log_odds(cal, distances, point.gallery_size)
            probs = 1.0 / (1.0 + np.exp(-log_odds))
            candidates = tuple(
                Candidate(h.subject, h.distance, float(p)) for h, p in zip(top, probs, strict=True)
            )
            matched = bool(log_odds[0] >= self._identify_cut(point.target, point.gallery_size).log_odds_star)
            best = candidates[0]
            out.append(
                self._base(
                    request,
                    Decision.MATCH if matched else Decision.UNKNOWN,
                    subject=best.subject if matched else request.subject,
                    distance=best.distance,
                    probability=best.probability,
                    threshold=point.threshold,
                    candidates=candidates,
                    policy=point,
                )
            )
        return out

    def deleted(self, request: ImageRequest) -> MatchResult:
        """DELETED (also when nothing was left to delete: a replayed delete has the same outcome)."""
        return self._base(request, Decision.DELETED)
