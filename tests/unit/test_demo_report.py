"""The demo's plan, figures, decision check and class-photo score, on hand-made results (no services)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pytest
from PIL import Image

from cli.demo.cases import DemoCase, Observed
from cli.demo.class_photo import ClassPhoto, Seat, score_class_photo
from cli.demo.decisions import check_decisions
from cli.demo.models import choose_dataset
from cli.demo.plan import build_cases, png_bomb, subject_id
from cli.demo.report import compute_figures
from cli.demo.summary import summary_rows
from twinstream.config import load_settings
from twinstream.contracts import (
    Candidate,
    Decision,
    FaceAnswer,
    FaceBox,
    MatchResult,
    Op,
    OperatingPoint,
    PolicyKind,
    RejectReason,
)

VERIFY_POINT = OperatingPoint(PolicyKind.FAR, 1e-3, 0.4, 0.9, 1)
IDENTIFY_POINT = OperatingPoint(PolicyKind.FPIR, 1e-2, 0.4, 0.6, 3)


def test_class_names_become_subject_ids_the_gallery_accepts():
    assert subject_id("Angelic/character01") == "Angelic.character01"
    assert subject_id("s1") == "s1"


def test_png_bomb_is_small_on_the_wire_but_fifty_megapixels():
    bomb = png_bomb()
    assert len(bomb) < 200_000
    with Image.open(io.BytesIO(bomb)) as img:
        assert img.size[0] * img.size[1] == 50_000_000


def test_plan_enrols_first_then_sends_each_photo_as_one_identify_and_two_claims_half_genuine(tmp_path: Path):
    images = [Image.new("L", (8, 8), color=i * 10) for i in range(12)]
    labels = [0] * 4 + [1] * 4 + [2] * 4
    plan = build_cases(images, labels, ["a/x", "b", "c"], tmp_path, run_id="r", enrol_images=2)
    enrol = [c for c in plan.cases if c.op is Op.ENROLL]
    assert plan.cases[: len(enrol)] == enrol and len(enrol) == 6  # two images each, all first
    assert set(plan.enrolled) == {"a.x", "b", "c"}
    assert {s: len(p) for s, p in plan.arrivals.items()} == {"a.x": 2, "b": 2, "c": 2}
    enrolled_paths = {c.image_path for c in enrol}
    assert not enrolled_paths & {p for paths in plan.arrivals.values() for p in paths}
    verify = [c for c in plan.cases if c.op is Op.VERIFY]
    assert len([c for c in plan.cases if c.op is Op.IDENTIFY]) == 6 and len(verify) == 12
    assert sum(c.claimed_subject == c.true_subject for c in verify) == 6  # exactly half genuine


def _result(rid: str, op: Op, decision: Decision, p: float, **kw: object) -> MatchResult:
    point = VERIFY_POINT if op is Op.VERIFY else IDENTIFY_POINT
    return MatchResult(rid, op, decision, probability=p, distance=1.0 - p, policy=point, **kw)  # type: ignore[arg-type]


def _obs(result: MatchResult, produced: int = 0, answered: int = 100) -> Observed:
    return Observed(result, produced, answered)


def test_figures_count_right_answers_poison_latency_and_carry_their_chance_levels():
    cases = [
        DemoCase("e1", Op.ENROLL, None, "a", "a"),
        DemoCase("e2", Op.ENROLL, None, "b", "b"),
        DemoCase("i1", Op.IDENTIFY, None, "a"),
        DemoCase("i2", Op.IDENTIFY, None, "b"),
        DemoCase("v1", Op.VERIFY, None, "a", "a"),
        DemoCase("v2", Op.VERIFY, None, "b", "a"),
        DemoCase("p1", Op.IDENTIFY, None, "", poison=str(RejectReason.UNKNOWN_OP)),
    ]
    cand = (Candidate("a", 0.2, 0.9),)
    observed = {
        "e1": _obs(MatchResult("e1", Op.ENROLL, Decision.ENROLLED, subject="a")),
        "e2": _obs(MatchResult("e2", Op.ENROLL, Decision.ENROLLED, subject="b")),
        "i1": _obs(_result("i1", Op.IDENTIFY, Decision.MATCH, 0.9, subject="a", candidates=cand), 0, 100),
        "i2": _obs(_result("i2", Op.IDENTIFY, Decision.UNKNOWN, 0.3, candidates=cand), 0, 200),
        "v1": _obs(_result("v1", Op.VERIFY, Decision.MATCH, 0.95), 0, 300),
        "v2": _obs(_result("v2", Op.VERIFY, Decision.NO_MATCH, 0.1), 0, 400),
        "p1": _obs(MatchResult("p1", None, Decision.REJECTED, error_reason=RejectReason.UNKNOWN_OP), 0, 500),
    }
    timed = ["i1", "i2", "v1", "v2", "p1"]
    figs = compute_figures(cases, observed, timed)
    assert (figs.subjects, figs.enrolled) == (2, 2)
    assert (figs.identify_correct, figs.identify_rank1, figs.identify_unknown) == (1, 1, 1)
    assert (figs.verify_correct, figs.verify_total, figs.verify_auc) == (2, 2, 1.0)
    assert figs.identify_chance == 0.5 and figs.verify_chance == 0.5
    assert figs.dlq_by_reason == {"unknown-op": 1}
    assert figs.poison_refused_right == figs.poison_total == 1
    assert figs.throughput_per_s == pytest.approx(5 / 0.5)
    assert figs.latency_p50_s == pytest.approx(0.3)
    assert figs.mistakes == ["identify b/: b → UNKNOWN"]
    assert figs.decisions.checked == 4 and figs.decisions.contradictions == ()
    assert figs.ece_low <= figs.ece <= figs.ece_high
    chance = {row[0]: row[2] for row in summary_rows(figs)}
    assert chance["verification AUC"] == "0.5"
    assert chance["identification, nearest of 2 enrolled (closed set)"] == "50.0%"


def test_traffic_ece_has_an_identity_bootstrap_interval():
    subjects = [f"s{i}" for i in range(6)]
    cases, observed = [], {}
    for n, s in enumerate(subjects * 4):
        other = subjects[(subjects.index(s) + 1) % 6]
        for kind, claimed, p in (("g", s, 0.97 - 0.01 * (n % 3)), ("i", other, 0.02 + 0.01 * (n % 4))):
            rid = f"v{n}{kind}"
            cases.append(DemoCase(rid, Op.VERIFY, None, s, claimed))
            decision = Decision.MATCH if p >= VERIFY_POINT.min_probability else Decision.NO_MATCH
            observed[rid] = _obs(_result(rid, Op.VERIFY, decision, p))
    figs = compute_figures(cases, observed)
    assert figs.verify_genuine_share == 0.5
    assert 0.0 < figs.ece < 0.1 and figs.ece_low <= figs.ece <= figs.ece_high
    assert not math.isnan(figs.ece_low) and figs.ece_high < 0.2


def test_decision_check_finds_contradictions_and_lists_rejections_above_even_odds():
    cases = [
        DemoCase(f"r{n}", op, None, "a", "a") for n, op in enumerate([Op.VERIFY] * 3 + [Op.IDENTIFY] * 2)
    ]
    observed = {
        "r0": _obs(_result("r0", Op.VERIFY, Decision.MATCH, 0.95)),  # fine
        "r1": _obs(_result("r1", Op.VERIFY, Decision.NO_MATCH, 0.7)),  # 0.5 <= p < p* = 0.9: listed, fine
        "r2": _obs(_result("r2", Op.VERIFY, Decision.MATCH, 0.8)),  # MATCH below p*: contradiction
        "r3": _obs(_result("r3", Op.IDENTIFY, Decision.UNKNOWN, 0.65)),  # UNKNOWN above p* = 0.6
        "r4": _obs(_result("r4", Op.IDENTIFY, Decision.UNKNOWN, 0.6)),  # a tie at p*: not a contradiction
    }
    check = check_decisions(cases, observed)
    assert check.checked == 5
    assert [line.split(":")[0] for line in check.contradictions] == ["r2", "r3"]
    assert [line.split(":")[0] for line in check.unknown_above_p_star] == ["r3"]
    assert [line.split(":")[0] for line in check.rejected_above_half] == ["r1", "r4"]
    assert "p*=0.9000" in check.rejected_above_half[0]


def _photo() -> ClassPhoto:
    seats = (Seat("a", FaceBox(0, 0, 100, 100)), Seat("b", FaceBox(200, 0, 300, 100)))
    return ClassPhoto(Image.new("RGB", (300, 100)), seats)


def _faces(*answers: tuple[FaceBox, Decision, str]) -> MatchResult:
    faces = tuple(FaceAnswer(box, d, s, 0.1, 0.99) for box, d, s in answers)
    return MatchResult("c", Op.IDENTIFY, Decision.MATCH, faces_found=len(faces), faces=faces)


def test_class_photo_everyone_present_when_every_seat_is_named_right():
    result = _faces(
        (FaceBox(10, 10, 90, 90), Decision.MATCH, "a"), (FaceBox(210, 10, 290, 90), Decision.MATCH, "b")
    )
    score = score_class_photo(_photo(), result, ["a", "b", "c"])
    assert score.everyone_present and score.identified == 2
    assert score.present == ("a", "b") and score.absent == ("c",)


def test_class_photo_reports_who_was_missed_and_who_was_wrongly_marked_present():
    result = _faces(
        (FaceBox(10, 10, 90, 90), Decision.MATCH, "c"), (FaceBox(120, 10, 180, 90), Decision.UNKNOWN, "")
    )
    score = score_class_photo(_photo(), result, ["a", "b", "c"])
    assert not score.everyone_present
    assert score.missed == ("a → c", "b → no face found")
    assert score.wrongly_present == ("c",) and len(score.strays) == 1
    assert score_class_photo(_photo(), None, ["a", "b"]).missed == ("a → no face found", "b → no face found")


def test_the_demo_picks_faces_only_when_the_att_photos_are_there(tmp_path: Path):
    settings = load_settings(data_dir=tmp_path)
    dataset, why = choose_dataset(settings)
    assert dataset == "digits" and str(tmp_path / "att_faces") in why
    (tmp_path / "att_faces" / "s1").mkdir(parents=True)
    (tmp_path / "att_faces" / "s1" / "1.pgm").write_bytes(b"P5")
    dataset, why = choose_dataset(settings)
    import importlib.util

    faces_installed = all(importlib.util.find_spec(m) for m in ("dlib", "face_recognition_models"))
    assert dataset == ("att-faces" if faces_installed else "digits"), why
