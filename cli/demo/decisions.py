"""Every decision the demo read back, checked against its probability and operating point.

The product's rule is one line: MATCH ⇔ p ≥ p*, where p* (``policy.min_probability``) is the operating
point's cut. The demo checks it on every verify and identify answer (and on every face of a group
photo) and lists two kinds of answer a reader may stumble on:

- a contradiction (MATCH below p*, or no match above it): there must be none;
- a rejection with p ≥ 0.5: not a contradiction, the operating point asks for more than even odds
  (p* > 0.5 at a strict FAR), but a reader sees "NO_MATCH, p = 0.8", so the report lists each with p*.

A non-match exactly at p* counts as a rounding tie, not a contradiction: the matcher decides on
log-odds, and two log-odds a hair apart can round to the same probability.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cli.demo.cases import DemoCase, Observed
from twinstream.contracts import Decision, MatchResult, Op


@dataclass(frozen=True, slots=True)
class DecisionCheck:
    """What the check found.

    Attributes:
        checked: Decisions checked (each face of a group photo counts once).
        contradictions: MATCH with p < p*, or NO_MATCH / UNKNOWN with p > p* (must be empty).
        unknown_above_p_star: The identify part of ``contradictions`` (listed on its own, as asked).
        rejected_above_half: NO_MATCH / UNKNOWN with 0.5 ≤ p ≤ p*, each with p and p*.
    """

    checked: int
    contradictions: tuple[str, ...]
    unknown_above_p_star: tuple[str, ...]
    rejected_above_half: tuple[str, ...]


def _answers(result: MatchResult) -> list[tuple[str, Decision, float | None]]:
    """(label, decision, probability) of a result, or of each face of a group identify."""
    if result.faces:
        return [
            (f"{result.request_id} face {n} at ({f.box.left},{f.box.top})", f.decision, f.probability)
            for n, f in enumerate(result.faces)
        ]
    return [(result.request_id, result.decision, result.probability)]


def check_decisions(cases: Sequence[DemoCase], observed: dict[str, Observed]) -> DecisionCheck:
    """Check MATCH ⇔ p ≥ p* on every answered verify and identify request."""
    checked = 0
    contradictions: list[str] = []
    unknown: list[str] = []
    above_half: list[str] = []
    for case in cases:
        got = observed.get(case.request_id)
        if case.op not in (Op.VERIFY, Op.IDENTIFY) or got is None or got.result.policy is None:
            continue
        p_star = got.result.policy.min_probability
        for label, decision, p in _answers(got.result):
            if p is None:
                continue
            checked += 1
            line = f"{label}: {decision} p={p:.4f} p*={p_star:.4f}"
            matched = decision is Decision.MATCH
            if (matched and p < p_star) or (not matched and p > p_star):
                contradictions.append(line)
                if decision is Decision.UNKNOWN:
                    unknown.append(line)
            elif not matched and p >= 0.5:
                above_half.append(line)
    return DecisionCheck(checked, tuple(contradictions), tuple(unknown), tuple(above_half))
