"""`twinstream bench serve` against the test stack: it measures a running app, or stops within its deadline
naming why its own app cannot start (never waits silently)."""

from __future__ import annotations

import io
import json
import math
import time
from pathlib import Path

import pytest
from rich.console import Console

from cli.bench.common import BenchError
from cli.bench.serve import run
from tests.support.serving import ServedApp

pytestmark = pytest.mark.system


def test_bench_serve_measures_the_running_app(
    served_app: ServedApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unique_name: str
) -> None:
    monkeypatch.setenv("TWINSTREAM_BENCH_OUT", str(tmp_path))
    serve = served_app.settings.serve
    stem = run(
        served_app.settings, str(served_app.model_dir), "digits", seconds=0.5, subjects=5,
        app_name=serve.app_name, route=serve.route_prefix, tag=unique_name,
        console=Console(file=io.StringIO()),
    )  # fmt: skip

    result = json.loads(stem.with_suffix(".json").read_text())
    assert stem.with_suffix(".png").stat().st_size > 0
    assert result["app"] == serve.app_name
    for scenario in ("http_concurrency1", "http_concurrency32", "http_half_load", "handle_batch32"):
        assert result["served"][scenario]["images_per_s"] > 0, scenario
        assert result["served"][scenario]["p99_ms"] >= result["served"][scenario]["p50_ms"] > 0
    assert result["raw"]["cut_ms_per_image"] > 0 and result["raw"]["forward_batch32_ms_per_image"] > 0
    assert all(math.isfinite(v) and v > 0 for v in result["ratios"].values())


def test_bench_serve_stops_within_its_deadline_naming_the_cause(served_app: ServedApp) -> None:
    settings = served_app.settings.model_copy(deep=True)
    settings.serve = settings.serve.model_copy(update={"cpus_per_replica": 64.0})  # more than the cluster has
    started = time.monotonic()
    with pytest.raises(BenchError) as caught:
        run(settings, str(served_app.model_dir), "digits", seconds=0.5, subjects=5, deadline_s=5.0)
    assert time.monotonic() - started < 60
    message = str(caught.value)
    assert "did not start within 5 s" in message
    assert "needs 64 CPU per replica" in message and served_app.settings.serve.app_name in message
    assert "--app" in message
