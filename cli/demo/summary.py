"""The demo's figures in words: one table (console and report.md share it) and the report page.

Each row is (figure, value, chance level). The chance level is what a guess scores on the same traffic,
so a reader can tell a working model from a coin: identification among S enrolled subjects is right
1/S of the time by chance, a verify claim that is genuine half the time 50 %, an AUC 0.5.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from cli.demo.report import DemoFigures


def _pct(x: float) -> str:
    return "–" if math.isnan(x) else f"{x:.1%}"


def _class_photo_row(figs: DemoFigures) -> tuple[str, str, str] | None:
    score = figs.class_photo
    if score is None:
        return None
    verdict = (
        "everyone marked present" if score.everyone_present else f"missed: {', '.join(score.missed) or '–'}"
    )
    return (
        f"class photo: {len(score.students)} students in one identify (faces: all)",
        f"{score.identified}/{len(score.students)} named right, {score.faces_found} faces found — {verdict}",
        f"{_pct(figs.identify_chance)} per face",
    )


def summary_rows(figs: DemoFigures) -> list[tuple[str, str, str]]:
    """(figure, value, chance level) rows, in the order the console and the report print them."""
    checks = figs.decisions
    rows = [
        ("requests answered", f"{figs.answered}/{figs.requests}", ""),
        (
            f"identification, nearest of {figs.subjects} enrolled (closed set)",
            f"{_pct(figs.identify_rank1_accuracy)} ({figs.identify_rank1}/{figs.identify_total})",
            _pct(figs.identify_chance),
        ),
        (
            "identification at the tenant's FPIR (open set)",
            f"{_pct(figs.identify_accuracy)} ({figs.identify_correct}/{figs.identify_total}, "
            f"{figs.identify_unknown} UNKNOWN)",
            _pct(figs.identify_chance),
        ),
        (
            f"verification at the tenant's FAR ({_pct(figs.verify_genuine_share)} of claims genuine)",
            f"{_pct(figs.verify_accuracy)} ({figs.verify_correct}/{figs.verify_total})",
            _pct(figs.verify_chance),
        ),
        (
            "  genuine claims accepted (TAR) / impostor claims accepted (FAR), measured",
            f"{_pct(figs.verify_tar)} / {_pct(figs.verify_far)}",
            "",
        ),
        ("verification AUC", f"{figs.verify_auc:.4f}", "0.5"),
        (
            "calibration of verify p (ECE, 95 % interval over identities)",
            f"{figs.ece:.4f} [{figs.ece_low:.4f}, {figs.ece_high:.4f}]",
            "0 is perfect; read with the AUC",
        ),
        (
            f"decisions contradicting MATCH ⇔ p ≥ p* (of {checks.checked})",
            str(len(checks.contradictions)),
            "must be 0",
        ),
        ("  of them UNKNOWN above p*", str(len(checks.unknown_above_p_star)), "must be 0"),
        ("  not matched with p ≥ 0.5 (p* above 0.5; listed)", str(len(checks.rejected_above_half)), ""),
    ]
    if (photo := _class_photo_row(figs)) is not None:
        rows.append(photo)
    rows += [
        ("throughput (arrivals and poison)", f"{figs.throughput_per_s:.1f} requests/s", ""),
        ("latency p50 / p99", f"{figs.latency_p50_s * 1000:.0f} / {figs.latency_p99_s * 1000:.0f} ms", ""),
        ("poison refused with the right reason", f"{figs.poison_refused_right}/{figs.poison_total}", ""),
        ("DLQ by reason", ", ".join(f"{k}={v}" for k, v in figs.dlq_by_reason.items()) or "none", ""),
    ]
    return rows


def _section(title: str, items: Sequence[str], empty: str = "none") -> list[str]:
    return ["", f"## {title} ({len(items)})", "", *([f"- {i}" for i in items] or [f"- {empty}"])]


def _class_photo_lines(figs: DemoFigures) -> list[str]:
    score = figs.class_photo
    if score is None:
        return [
            "",
            "## Class photo",
            "",
            "Not sent: this model is not a face model (group photos need faces).",
        ]
    lines = [
        "",
        "## Class photo",
        "",
        f"{len(score.students)} enrolled students' test photos (never their enrolment photos) pasted on one "
        f"canvas, sent as ONE identify request with the Kafka header `faces: all`. The service found "
        f"{score.faces_found} faces and named {score.identified} of {len(score.students)} students right.",
        "",
    ]
    if score.everyone_present:
        lines.append("**Everyone in the photo was marked present, and nobody else.**")
    else:
        lines.append(
            f"**Not everyone was marked present.** Missed: {', '.join(score.missed) or 'none'}; "
            f"marked present but not in the photo: {', '.join(score.wrongly_present) or 'none'}; "
            f"answers on no student: {', '.join(score.strays) or 'none'}."
        )
    lines += [
        "",
        f"- present ({len(score.present)}): {', '.join(score.present) or 'nobody'}",
        f"- absent ({len(score.absent)}): {', '.join(score.absent) or 'nobody'}",
    ]
    return lines


def write_markdown(
    figs: DemoFigures, context: dict[str, str], notes: Sequence[str], pictures: Sequence[Path], out: Path
) -> Path:
    """report.md: context, the figures with their chance levels, what they mean, the lists, the pictures."""
    lines = ["# twinstream demo report", ""]
    lines += [f"- **{k}**: {v}" for k, v in context.items()]
    lines += ["", "| figure | value | chance level |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in summary_rows(figs)]
    lines += ["", "## What the numbers mean", "", *[f"- {n}" for n in notes]]
    lines += _class_photo_lines(figs)
    checks = figs.decisions
    lines += _section("Decisions contradicting MATCH ⇔ p ≥ p* (must be none)", checks.contradictions)
    lines += _section("UNKNOWN above p* (must be none)", checks.unknown_above_p_star)
    lines += _section(
        "NO_MATCH / UNKNOWN with p ≥ 0.5 (not contradictions: p* is above 0.5)", checks.rejected_above_half
    )
    lines += ["", "## DLQ by reason", ""]
    lines += [f"- `{k}`: {v}" for k, v in figs.dlq_by_reason.items()] or ["- none"]
    lines += [
        "",
        f"## Subjects identified right by at least one single-face identify ({len(figs.present)})",
        "",
        ", ".join(figs.present) or "nobody",
    ]
    lines += _section("Mistakes", figs.mistakes)
    lines += ["", *[f"![{p.stem}]({p.name})" for p in pictures], ""]
    out.write_text("\n".join(lines))
    return out
