"""A shortened `twinstream demo` on the test stack; its report's figures checked against the results topic.

The demo trains with Ray Train (2 workers, 2 epochs), deploys on Serve, runs ingest workers as processes,
publishes enrolments, arrivals and poison to Kafka and reads the answers back. This test then reads the
results topic itself and recomputes what the report claims.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from rich.console import Console

from tests.support.serving import serving_settings
from tests.support.streams import stream_settings
from twinstream.config import Settings
from twinstream.contracts import Decision, MatchResult

pytestmark = [pytest.mark.system, pytest.mark.slow, pytest.mark.timeout(900)]


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
    return settings


def test_shortened_demo_reports_figures_that_match_the_results_topic(demo_settings: Settings, tmp_path: Path):
    from cli.demo.run import DemoOptions, run_demo

    opts = DemoOptions(
        dataset="digits",
        keep_running=True,
        epochs=2,
        workers=2,
        max_per_identity=12,
        out_dir=tmp_path / "runs",
    )
    try:
        figures = run_demo(demo_settings, opts, Console(width=120))
    finally:
        from cli.stack.process import ManagedProcess

        for pid_file in (demo_settings.paths.state_dir / "demo").glob("ingest-*.pid"):
            ManagedProcess(pid_file.stem, pid_file.parent).stop()
    (run_dir,) = (tmp_path / "runs").iterdir()
    saved = json.loads((run_dir / "figures.json").read_text())
    report = (run_dir / "report.md").read_text()
    for picture in ("roc.png", "identify_confusion.png", "latency.png", "sample_matches.png"):
        assert (run_dir / picture).stat().st_size > 1000, picture
        assert picture in report

    topic = _topic_results(demo_settings, saved["run_id"])
    # every request answered, exactly once per processing
    assert figures.answered == figures.requests == len(topic)
    assert all(len(results) == 1 for results in topic.values())
    results = [r[0] for r in topic.values()]
    enrolled = sum(r.decision in (Decision.ENROLLED, Decision.DUPLICATE) for r in results)
    assert figures.enrolled == enrolled == 3  # digits: 3 unseen identities
    identify = [r for r in results if "-identify-" in r.request_id]
    assert figures.identify_total == len(identify)
    assert figures.identify_correct == sum(
        r.decision is Decision.MATCH and r.subject == _truth(r, run_dir) for r in identify
    )
    rejected = Counter(str(r.error_reason) for r in results if r.decision is Decision.REJECTED)
    assert figures.dlq_by_reason == dict(rejected)
    assert figures.poison_refused_right == figures.poison_total == 5
    assert f"{figures.verify_auc:.4f}" in report
    assert 0.0 <= figures.ece <= 1.0 and figures.latency_p50_s <= figures.latency_p99_s


def _truth(result: MatchResult, run_dir: Path) -> str:
    """The identity an identify request really showed: its image sits under images/<identity>/<index>.png."""
    index = result.request_id.rsplit("-", 1)[1]
    (path,) = run_dir.glob(f"images/*/{index}.png")
    return path.parent.name
