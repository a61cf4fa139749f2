"""`twinstream report`: legends, the PNG, and queries kept in step with the pipeline dashboard."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.report import PANELS, ReportError, Series, draw, legend_for, render_report
from tests.support.dashboards import load, panels


def test_report_queries_are_the_pipeline_dashboards_own():
    dashboard = {p["title"]: {t["expr"] for t in p["targets"]} for p in panels(load("pipeline"))}
    for panel in PANELS:
        assert panel.title in dashboard, panel.title
        assert {expr for expr, _ in panel.queries} <= dashboard[panel.title], panel.title


def test_legend_templates_are_filled_from_series_labels():
    assert legend_for("{{op}} {{ outcome }}", {"op": "enroll", "outcome": "ENROLLED"}) == "enroll ENROLLED"
    assert legend_for("{{missing}}", {}) == "value"


def test_draw_writes_a_png_with_a_panel_per_key_chart_even_when_one_is_empty(tmp_path: Path):
    times = tuple(1_700_000_000.0 + 5 * i for i in range(20))
    line = Series("all records", times, tuple(float(i % 7) for i in range(20)))
    out = draw([[line], [line], [], [line]], tmp_path / "r.png", "test")
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 10_000


def test_an_unreachable_prometheus_is_a_clear_error(tmp_path: Path):
    with pytest.raises(ReportError, match="cannot read Prometheus"):
        render_report("http://127.0.0.1:9", tmp_path / "r.png", minutes=5, timeout_s=1)
