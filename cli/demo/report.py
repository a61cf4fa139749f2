"""The demo's report: figures computed from the results topic, written as report.md and PNGs.

Every figure comes from the `MatchResult`s the demo read back from Kafka in the same run, joined with
the ground truth the demo published; nothing is taken from the artifact's own evaluation except where
the report says so (the "predicted" column).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from twinstream.contracts import Decision, MatchResult, Op


@dataclass(frozen=True, slots=True)
class DemoCase:
    """One published request and what the right answer is."""

    request_id: str
    op: Op
    image_path: Path | None
    true_subject: str  # "" for poison
    claimed_subject: str = ""  # the subject an enroll/verify names
    poison: str = ""  # the reason code a poison message must be refused with


@dataclass(frozen=True, slots=True)
class Observed:
    """A result read back from the results topic, with its Kafka timestamps."""

    result: MatchResult
    produced_ms: int
    answered_ms: int

    @property
    def latency_s(self) -> float:
        return max(0.0, (self.answered_ms - self.produced_ms) / 1000)


@dataclass
class DemoFigures:
    """What the report prints; every number is from this run."""

    requests: int
    answered: int
    enrolled: int
    identify_total: int
    identify_correct: int  # open set: MATCH naming the right subject
    identify_rank1: int  # closed set: the nearest enrolled subject is the right one
    identify_unknown: int
    verify_total: int
    verify_correct: int
    verify_auc: float
    ece: float
    throughput_per_s: float
    latency_p50_s: float
    latency_p99_s: float
    dlq_by_reason: dict[str, int]
    poison_refused_right: int
    poison_total: int
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


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    """ECE: |accuracy - confidence| averaged over equal-width probability bins, weighted by count."""
    if len(probs) == 0:
        return math.nan
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(probs, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = idx == b
        if mask.any():
            total += mask.sum() * abs(labels[mask].mean() - probs[mask].mean())
    return float(total / len(probs))


def _auc(scores: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores)) if 0 < labels.sum() < len(labels) else math.nan


def compute_figures(
    cases: Sequence[DemoCase], observed: dict[str, Observed], timed: Sequence[str] | None = None
) -> DemoFigures:
    """Join ground truth with the results read back from Kafka.

    Args:
        cases: What was published, with the right answers.
        observed: Results by request id, with Kafka timestamps.
        timed: Request ids whose latency and throughput are reported (default: all answered).
    """
    mistakes: list[str] = []
    present: set[str] = set()
    ident = [c for c in cases if c.op is Op.IDENTIFY and not c.poison]
    verify = [c for c in cases if c.op is Op.VERIFY and not c.poison]
    poison = [c for c in cases if c.poison]
    id_correct = id_unknown = id_rank1 = 0
    for case in ident:
        got = observed.get(case.request_id)
        if got is None:
            continue
        r = got.result
        id_rank1 += bool(r.candidates) and r.candidates[0].subject == case.true_subject
        if r.decision is Decision.MATCH and r.subject == case.true_subject:
            id_correct += 1
            present.add(case.true_subject)
        else:
            id_unknown += r.decision is Decision.UNKNOWN
            said = r.subject if r.decision is Decision.MATCH else str(r.decision)
            mistakes.append(f"identify {case.image_path.name if case.image_path else ''}: "
                            f"{case.true_subject} → {said}")  # fmt: skip
    probs, genuine, v_correct = [], [], 0
    for case in verify:
        got = observed.get(case.request_id)
        if got is None or got.result.probability is None:
            continue
        is_genuine = case.claimed_subject == case.true_subject
        probs.append(got.result.probability)
        genuine.append(is_genuine)
        if (got.result.decision is Decision.MATCH) == is_genuine:
            v_correct += 1
        else:
            mistakes.append(f"verify {case.true_subject} as {case.claimed_subject}: {got.result.decision} "
                            f"(p={got.result.probability:.2f})")  # fmt: skip
    p, y = np.asarray(probs, dtype=float), np.asarray(genuine, dtype=float)
    answered = [observed[c.request_id] for c in cases if c.request_id in observed]
    timed_ids = set(timed) if timed is not None else {c.request_id for c in cases}
    window = [observed[i] for i in timed_ids if i in observed]
    lat = np.asarray([o.latency_s for o in window]) if window else np.asarray([math.nan])
    span_ms = max(o.answered_ms for o in window) - min(o.produced_ms for o in window) if window else 0
    reasons = Counter(str(o.result.error_reason) for o in answered if o.result.decision is Decision.REJECTED)
    poison_right = sum(
        1 for c in poison if (o := observed.get(c.request_id)) and str(o.result.error_reason) == c.poison
    )
    enrolled = sum(
        1 for c in cases if c.op is Op.ENROLL and (o := observed.get(c.request_id))
        and o.result.decision in (Decision.ENROLLED, Decision.DUPLICATE)
    )  # fmt: skip
    return DemoFigures(
        requests=len(cases), answered=len(answered), enrolled=enrolled,
        identify_total=len(ident), identify_correct=id_correct, identify_rank1=id_rank1,
        identify_unknown=id_unknown,
        verify_total=len(p), verify_correct=v_correct, verify_auc=_auc(p, y),
        ece=expected_calibration_error(p, y),
        throughput_per_s=len(window) / (span_ms / 1000) if span_ms > 0 else math.nan,
        latency_p50_s=float(np.percentile(lat, 50)), latency_p99_s=float(np.percentile(lat, 99)),
        dlq_by_reason=dict(sorted(reasons.items())), poison_refused_right=poison_right,
        poison_total=len(poison), mistakes=mistakes, present=sorted(present),
    )  # fmt: skip
