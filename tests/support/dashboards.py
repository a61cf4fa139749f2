"""The Grafana dashboards in deploy/grafana/dashboards as data: panels, their queries, Grafana variables.

Shared by the dashboard unit tests and the live system proof, which evaluate every panel query outside
Grafana and so must fill Grafana's variables the way Grafana would.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DASHBOARD_DIR = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards"
DASHBOARDS = ("pipeline", "embedder-gallery", "training")
#: What Grafana puts in place of its built-in variables; template variables become "match anything".
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}


@dataclass(frozen=True)
class PanelQuery:
    """One target of one panel, with Grafana variables filled in."""

    dashboard: str
    panel: str
    ref_id: str
    expr: str

    @property
    def label(self) -> str:
        return f"{self.dashboard} / {self.panel} / {self.ref_id}"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DASHBOARD_DIR / f"{name}.json").read_text())
    return data


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel that shows data (rows excluded, collapsed rows' children included)."""
    out: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            out.extend(panel.get("panels", []))
        else:
            out.append(panel)
    return out


def fill(expr: str) -> str:
    """``expr`` with Grafana's variables replaced (template variables such as ``$run`` match anything)."""
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    return re.sub(r"\$\{?(\w+)\}?", ".*", expr)


def queries(names: tuple[str, ...] = DASHBOARDS) -> list[PanelQuery]:
    """Every panel query of the named dashboards."""
    return [
        PanelQuery(name, panel["title"], target["refId"], fill(target["expr"]))
        for name in names
        for panel in panels(load(name))
        for target in panel.get("targets", [])
    ]
