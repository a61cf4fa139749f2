"""The Grafana dashboards are valid Grafana 11 models whose every query parses and names a real metric."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric

from tests.support.dashboards import DASHBOARDS, load, panels, queries
from twinstream.metrics import (
    EmbedderMetrics,
    IngestMetrics,
    PipelineMetrics,
    PrometheusFactory,
    TrainingMetrics,
)

RULES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "rules"
PANEL_TYPES = {"timeseries", "stat", "heatmap", "gauge", "bargauge", "table"}
#: Series the dashboards read that other exporters produce (Prometheus itself, Ray Serve).
EXTERNAL = {
    "up",
    "ray_serve_deployment_replica_healthy",
    "ray_serve_deployment_request_counter_total",
    "ray_serve_deployment_error_counter_total",
}
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def _exported(family: Metric) -> set[str]:
    return {family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",))}


def metric_catalogue() -> set[str]:
    """Every series name the twinstream bundles export and the recording rules record."""
    registry = CollectorRegistry()
    IngestMetrics.create(registry)
    TrainingMetrics.create(registry)
    EmbedderMetrics.create(PrometheusFactory(registry))
    PipelineMetrics.create(PrometheusFactory(registry))
    names = {name for family in registry.collect() for name in _exported(family)}
    for path in RULES_DIR.glob("*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            names |= {rule["record"] for rule in group["rules"] if "record" in rule}
    return names | EXTERNAL


def referenced_metrics(expr: str) -> set[str]:
    """Metric names in a PromQL expression (label values and strings removed first)."""
    bare = re.sub(r'"[^"]*"', '""', expr)
    return set(re.findall(r"\b(twinstream[a-z0-9_:]*|ray_[a-z0-9_]+|up)\b(?!\s*\()", bare))


@pytest.mark.parametrize("name", DASHBOARDS)
def test_dashboard_is_a_grafana_11_model_with_a_datasource_variable(name: str):
    dashboard = load(name)
    assert dashboard["uid"].startswith("twinstream-") and len(dashboard["uid"]) <= 40
    assert dashboard["schemaVersion"] >= 39
    assert dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"


@pytest.mark.parametrize("name", DASHBOARDS)
def test_every_panel_and_query_uses_the_datasource_variable(name: str):
    for panel in panels(load(name)):
        assert panel["type"] in PANEL_TYPES, panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            assert target["expr"].strip(), panel["title"]


@pytest.mark.parametrize("name", DASHBOARDS)
def test_panels_have_unique_ids_and_fit_the_24_column_grid(name: str):
    dashboard = load(name)
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        assert grid["h"] > 0 and grid["y"] >= 0, panel["title"]


def test_the_three_dashboards_show_what_the_issue_asks_for():
    titles = {name: {p["title"] for p in panels(load(name))} for name in DASHBOARDS}
    assert {"Throughput", "End-to-end latency", "Consumer lag per partition", "Dead letters by reason",
            "Decisions", "Workers"} <= titles["pipeline"]  # fmt: skip
    assert {"Forward-pass batch size", "Embed latency", "Replicas", "Embedding cache hit rate",
            "Gallery size", "Distance distribution"} <= titles["embedder-gallery"]  # fmt: skip
    assert {"Training loss", "Validation ROC AUC", "One-shot accuracy"} <= titles["training"]


def test_every_query_names_only_metrics_that_twinstream_or_its_exporters_produce():
    catalogue = metric_catalogue()
    unknown = {
        q.label: sorted(referenced_metrics(q.expr) - catalogue)
        for q in queries()
        if referenced_metrics(q.expr) - catalogue or not referenced_metrics(q.expr)
    }
    assert not unknown, f"queries naming no metric or unknown metrics: {unknown}"


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool is not installed (apt install prometheus)"
)
def test_every_panel_query_parses_as_promql(tmp_path: Path):
    # promtool parses each expression of a rules file: every panel query becomes one recording rule.
    rules = [{"record": f"dashboard:query:{i}", "expr": q.expr} for i, q in enumerate(queries())]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    checked = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{len(rules)} rules found" in checked.stdout
