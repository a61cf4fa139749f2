"""The demo's figures: computed from the results topic, each beside its chance level.

Every figure comes from the `MatchResult`s the demo read back from Kafka in the same run, joined with
the ground truth the demo published; nothing is taken from the artifact's own evaluation except where
the report says so. A figure without its chance level means little (three unseen digits are guessed
right a third of the time), so each carries one: `DemoFigures.chance`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from cli.demo.calibration import traffic_ece, traffic_pairs
from cli.demo.cases import DemoCase, Observed
from cli.demo.class_photo import ClassPhotoScore
from cli.demo.decisions import DecisionCheck, check_decisions
from twinstream.contracts import Decision, Op


@dataclass
class DemoFigures:
    """What the report prints; every number is from this run."""

    requests: int
    answered: int
    subjects: int  # identities enrolled
    enrolled: int  # enrolment images answered ENROLLED or DUPLICATE
    identify_total: int
    identify_correct: int  # open set: MATCH naming the right subject
    identify_rank1: int  # closed set: the nearest enrolled subject is the right one
    identify_unknown: int
    verify_total: int
    verify_correct: int
    verify_tar: float  # genuine claims accepted, on this traffic
    verify_far: float  # impostor claims accepted, on this traffic
    verify_genuine_share: float
    verify_auc: float
    ece: float
    ece_low: float
    ece_high: float
    throughput_per_s: float
    latency_p50_s: float
    latency_p99_s: float
    dlq_by_reason: dict[str, int]
    poison_refused_right: int
    poison_total: int
    decisions: DecisionCheck
    class_photo: ClassPhotoScore | None = None
    mistakes: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)

    @property
    def identify_accuracy(self) -> float:
        return self.identify_correct / self.identify_total if self.identify_total else math.nan

    @property
    def identify_rank1_accuracy(self) -> float:
        return self.identify_rank1 / self.identify_total if self.identify_total else math.nan

    @property
    def verify_accuracy(self) -> float:
        return self.verify_correct / self.verify_total if self.verify_total else math.nan

    @property
    def identify_chance(self) -> float:
        """A guess among the enrolled subjects (every identify photo shows one of them)."""
        return 1.0 / self.subjects if self.subjects else math.nan

    @property
    def verify_chance(self) -> float:
        """Always answering the more frequent kind of claim (50 % when half the claims are genuine)."""
        g = self.verify_genuine_share
        return max(g, 1.0 - g) if not math.isnan(g) else math.nan

    def as_json(self) -> dict[str, Any]:
        """Every field and derived figure, JSON-able."""
        out = asdict(self)
        out |= {
            "identify_accuracy": self.identify_accuracy,
            "identify_rank1_accuracy": self.identify_rank1_accuracy,
            "verify_accuracy": self.verify_accuracy,
            "identify_chance": self.identify_chance,
            "verify_chance": self.verify_chance,
        }
        if self.class_photo is not None:
            score = self.class_photo
            out["class_photo"] |= {
                "identified": score.identified,
                "missed": score.missed,
                "absent": score.absent,
                "wrongly_present": score.wrongly_present,
                "everyone_present": score.everyone_present,
            }
        return out


def _auc(scores: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores)) if 0 < labels.sum() < len(labels) else math.nan


@dataclass
class _Identify:
    total: int = 0
    correct: int = 0
    rank1: int = 0
    unknown: int = 0


def _identify(
    cases: Sequence[DemoCase], observed: dict[str, Observed], mistakes: list[str], present: set[str]
) -> _Identify:
    out = _Identify()
    for case in cases:
        if case.op is not Op.IDENTIFY or case.poison or case.all_faces:
            continue
        out.total += 1
        got = observed.get(case.request_id)
        if got is None:
            continue
        r = got.result
        out.rank1 += bool(r.candidates) and r.candidates[0].subject == case.true_subject
        if r.decision is Decision.MATCH and r.subject == case.true_subject:
            out.correct += 1
            present.add(case.true_subject)
        else:
            out.unknown += r.decision is Decision.UNKNOWN
            said = r.subject if r.decision is Decision.MATCH else str(r.decision)
            name = case.image_path.name if case.image_path else ""
            mistakes.append(f"identify {case.true_subject}/{name}: {case.true_subject} → {said}")
    return out


@dataclass
class _Verify:
    total: int = 0
    right: int = 0
    genuine: int = 0
    genuine_accepted: int = 0
    impostor: int = 0
    impostor_accepted: int = 0


def _verify(cases: Sequence[DemoCase], observed: dict[str, Observed], mistakes: list[str]) -> _Verify:
    """Verify requests answered with a probability: how many were decided right, TAR and FAR counts."""
    out = _Verify()
    for case in cases:
        got = observed.get(case.request_id)
        if case.op is not Op.VERIFY or case.poison or got is None or got.result.probability is None:
            continue
        r, genuine = got.result, case.claimed_subject == case.true_subject
        accepted = r.decision is Decision.MATCH
        out.total += 1
        out.genuine += genuine
        out.genuine_accepted += genuine and accepted
        out.impostor += not genuine
        out.impostor_accepted += accepted and not genuine
        if accepted == genuine:
            out.right += 1
        else:
            p_star = f" p*={r.policy.min_probability:.3f}" if r.policy else ""
            mistakes.append(
                f"verify {case.true_subject} as {case.claimed_subject}: {r.decision} "
                f"(p={r.probability:.3f}{p_star})"
            )
    return out


def _timing(observed: dict[str, Observed], timed_ids: set[str]) -> tuple[float, float, float]:
    """(throughput per second, latency p50, latency p99) of the timed requests."""
    window = [observed[i] for i in timed_ids if i in observed]
    if not window:
        return math.nan, math.nan, math.nan
    lat = np.asarray([o.latency_s for o in window])
    span_ms = max(o.answered_ms for o in window) - min(o.produced_ms for o in window)
    rate = len(window) / (span_ms / 1000) if span_ms > 0 else math.nan
    return rate, float(np.percentile(lat, 50)), float(np.percentile(lat, 99))


def compute_figures(
    cases: Sequence[DemoCase],
    observed: dict[str, Observed],
    timed: Sequence[str] | None = None,
    *,
    class_photo: ClassPhotoScore | None = None,
    prior: float = 0.5,
) -> DemoFigures:
    """Join ground truth with the results read back from Kafka.

    Args:
        cases: What was published, with the right answers.
        observed: Results by request id, with Kafka timestamps.
        timed: Request ids whose latency and throughput are reported (default: all answered).
        class_photo: The class photo's score, when one was sent.
        prior: The prior the model's probabilities are stated for (the calibration's ECE is weighted to it).
    """
    mistakes: list[str] = []
    present: set[str] = set()
    ident = _identify(cases, observed, mistakes, present)
    ver = _verify(cases, observed, mistakes)
    traffic = traffic_pairs(cases, observed)
    ece = traffic_ece(traffic, prior)
    answered = [observed[c.request_id] for c in cases if c.request_id in observed]
    rate, p50, p99 = _timing(observed, set(timed) if timed is not None else {c.request_id for c in cases})
    reasons = Counter(str(o.result.error_reason) for o in answered if o.result.decision is Decision.REJECTED)
    poison = [c for c in cases if c.poison]
    enrolments = [c for c in cases if c.op is Op.ENROLL]
    enrolled = sum(
        1
        for c in enrolments
        if (o := observed.get(c.request_id)) and o.result.decision in (Decision.ENROLLED, Decision.DUPLICATE)
    )
    return DemoFigures(
        requests=len(cases),
        answered=len(answered),
        subjects=len({c.claimed_subject for c in enrolments}),
        enrolled=enrolled,
        identify_total=ident.total,
        identify_correct=ident.correct,
        identify_rank1=ident.rank1,
        identify_unknown=ident.unknown,
        verify_total=ver.total,
        verify_correct=ver.right,
        verify_tar=ver.genuine_accepted / ver.genuine if ver.genuine else math.nan,
        verify_far=ver.impostor_accepted / ver.impostor if ver.impostor else math.nan,
        verify_genuine_share=traffic.genuine_share,
        verify_auc=_auc(traffic.probabilities, traffic.pairs.same.astype(float)),
        ece=ece.value if ece else math.nan,
        ece_low=ece.low if ece else math.nan,
        ece_high=ece.high if ece else math.nan,
        throughput_per_s=rate,
        latency_p50_s=p50,
        latency_p99_s=p99,
        dlq_by_reason=dict(sorted(reasons.items())),
        poison_refused_right=sum(
            1 for c in poison if (o := observed.get(c.request_id)) and str(o.result.error_reason) == c.poison
        ),
        poison_total=len(poison),
        decisions=check_decisions(cases, observed),
        class_photo=class_photo,
        mistakes=mistakes,
        present=sorted(present),
    )
