"""The demo's plan and figures, on hand-made results (no services)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli.demo.plan import build_cases, png_bomb, subject_id
from cli.demo.report import DemoCase, Observed, compute_figures, expected_calibration_error
from twinstream.contracts import Candidate, Decision, MatchResult, Op, RejectReason


def test_class_names_become_subject_ids_the_gallery_accepts():
    assert subject_id("Angelic/character01") == "Angelic.character01"
    assert subject_id("s1") == "s1"


def test_png_bomb_is_small_on_the_wire_but_fifty_megapixels():
    bomb = png_bomb()
    assert len(bomb) < 200_000
    with Image.open(__import__("io").BytesIO(bomb)) as img:
        assert img.size[0] * img.size[1] == 50_000_000


def test_cases_enrol_one_image_per_identity_first(tmp_path: Path):
    images = [Image.new("L", (8, 8), color=i * 10) for i in range(9)]
    cases, enrolled = build_cases(
        images, [0, 0, 0, 1, 1, 1, 2, 2, 2], ["a/x", "b", "c"], tmp_path, run_id="r"
    )
    assert [c.op for c in cases[:3]] == [Op.ENROLL] * 3
    assert set(enrolled) == {"a.x", "b", "c"}
    assert all(c.op in (Op.VERIFY, Op.IDENTIFY) for c in cases[3:])
    assert len(cases) == 9


def test_ece_is_zero_for_perfectly_calibrated_bins_and_large_for_confident_mistakes():
    assert expected_calibration_error(np.array([1.0, 1.0, 0.0, 0.0]), np.array([1.0, 1.0, 0.0, 0.0])) == 0.0
    assert expected_calibration_error(np.array([0.95, 0.95]), np.array([0.0, 0.0])) == pytest.approx(0.95)


def _obs(result: MatchResult, produced: int, answered: int) -> Observed:
    return Observed(result, produced, answered)


def test_figures_count_right_answers_poison_and_latency():
    cases = [
        DemoCase("i1", Op.IDENTIFY, None, "a"),
        DemoCase("i2", Op.IDENTIFY, None, "b"),
        DemoCase("v1", Op.VERIFY, None, "a", "a"),
        DemoCase("v2", Op.VERIFY, None, "b", "a"),
        DemoCase("p1", Op.IDENTIFY, None, "", poison=str(RejectReason.UNKNOWN_OP)),
    ]
    cand = (Candidate("a", 0.2, 0.9),)
    observed = {
        "i1": _obs(MatchResult("i1", Op.IDENTIFY, Decision.MATCH, subject="a", candidates=cand), 0, 100),
        "i2": _obs(MatchResult("i2", Op.IDENTIFY, Decision.UNKNOWN, candidates=cand), 0, 200),
        "v1": _obs(MatchResult("v1", Op.VERIFY, Decision.MATCH, probability=0.9), 0, 300),
        "v2": _obs(MatchResult("v2", Op.VERIFY, Decision.NO_MATCH, probability=0.1), 0, 400),
        "p1": _obs(MatchResult("p1", None, Decision.REJECTED, error_reason=RejectReason.UNKNOWN_OP), 0, 500),
    }
    figs = compute_figures(cases, observed)
    assert (figs.identify_correct, figs.identify_rank1, figs.identify_unknown) == (1, 1, 1)
    assert (figs.verify_correct, figs.verify_total, figs.verify_auc) == (2, 2, 1.0)
    assert figs.dlq_by_reason == {"unknown-op": 1}
    assert figs.poison_refused_right == figs.poison_total == 1
    assert figs.throughput_per_s == pytest.approx(5 / 0.5)
    assert figs.latency_p50_s == pytest.approx(0.3)
    assert figs.mistakes == ["identify : b → UNKNOWN"]
