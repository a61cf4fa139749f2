"""`twinstream report`: the pipeline dashboard's key panels, read from Prometheus, drawn to one PNG.

For a user without Grafana: throughput, end-to-end latency, decisions and dead letters over a time
window, with the same queries as ``deploy/grafana/dashboards/pipeline.json`` (a unit test keeps them
in step). Prometheus is read through its HTTP API (``/api/v1/query_range``).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

#: Grafana's ``$__rate_interval`` in the dashboards; the report uses this fixed window instead.
RATE_INTERVAL = "1m"


@dataclass(frozen=True, slots=True)
class Panel:
    """One chart: a title, a unit for the y axis and (PromQL, legend template) pairs."""

    title: str
    unit: str
    queries: tuple[tuple[str, str], ...]


PANELS: tuple[Panel, ...] = (
    Panel(
        "Throughput",
        "records/s",
        (
            ("twinstream:ingest_throughput:rate1m", "all records"),
            ("sum by (op) (rate(twinstream_ingest_messages_total[$__rate_interval]))", "{{op}}"),
        ),
    ),
    Panel(
        "End-to-end latency",
        "seconds",
        (
            ("twinstream:ingest_e2e_latency_seconds:p50_1m", "p50"),
            ("twinstream:ingest_e2e_latency_seconds:p95_1m", "p95"),
            ("twinstream:ingest_e2e_latency_seconds:p99_1m", "p99"),
        ),
    ),
    Panel(
        "Decisions", "results/s", (("sum by (outcome) (twinstream:ingest_messages:rate1m)", "{{outcome}}"),)
    ),
    Panel("Dead letters by reason", "records/s", (("twinstream:ingest_dlq:rate1m", "{{reason}}"),)),
)


@dataclass(frozen=True, slots=True)
class Series:
    """One line: its legend and its (unix time, value) points (NaN where Prometheus had no value)."""

    legend: str
    times: tuple[float, ...]
    values: tuple[float, ...]


class ReportError(RuntimeError):
    """Prometheus could not be read, or had no twinstream data in the window."""


def legend_for(template: str, labels: dict[str, str]) -> str:
    """Fill a Grafana legend template (``{{op}} {{decision}}``) from a series' labels."""
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template).strip() or "value"


def query_range(
    client: httpx.Client, expr: str, legend: str, *, start: float, end: float, step: float
) -> list[Series]:
    """Evaluate ``expr`` over [start, end] and return one `Series` per result series."""
    response = client.get(
        "/api/v1/query_range",
        params={"query": expr.replace("$__rate_interval", RATE_INTERVAL), "start": start, "end": end,
                "step": step},
    )  # fmt: skip
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    if body.get("status") != "success":
        raise ReportError(f"query {expr!r} failed: {body.get('error')}")
    out = []
    for result in body["data"]["result"]:
        points = [(float(t), float(v)) for t, v in result["values"]]
        out.append(Series(legend_for(legend, result["metric"]), *map(tuple, zip(*points, strict=True))))
    return out


def collect(client: httpx.Client, start: float, end: float, step: float) -> list[list[Series]]:
    """Every panel's series over the window."""
    return [
        [
            s
            for expr, legend in panel.queries
            for s in query_range(client, expr, legend, start=start, end=end, step=step)
        ]
        for panel in PANELS
    ]


def _worth_drawing(series: Sequence[Series]) -> list[Series]:
    """Lines that ever left zero (a DLQ reason that never happened is legend noise); all if none did."""
    moving = [s for s in series if any(math.isfinite(v) and v != 0 for v in s.values)]
    return moving or list(series)


def draw(panels: Sequence[Sequence[Series]], out: Path, title: str) -> Path:
    """Draw the panels as a 2×2 grid of line charts to ``out`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(14, 8), constrained_layout=True)
    for ax, panel, series in zip(axes.flat, PANELS, panels, strict=True):
        for s in _worth_drawing(series):
            ax.plot([datetime.fromtimestamp(t) for t in s.times], s.values, label=s.legend, linewidth=1.4)
        ax.set_title(panel.title)
        ax.set_ylabel(panel.unit)
        ax.grid(alpha=0.3)
        if not series:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="grey")
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        locator = mdates.AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle(title)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def render_report(
    prometheus_url: str,
    out: Path,
    *,
    minutes: float = 30.0,
    end: float | None = None,
    timeout_s: float = 30.0,
) -> Path:
    """Read the key panels from Prometheus for the last ``minutes`` and write them to ``out``.

    Raises:
        ReportError: If Prometheus cannot be reached or holds no twinstream data in the window.
    """
    end = end if end is not None else time.time()
    start = end - minutes * 60
    step = max(5.0, math.ceil(minutes * 60 / 300))  # ~300 points per line
    try:
        with httpx.Client(base_url=prometheus_url, timeout=timeout_s) as client:
            panels = collect(client, start, end, step)
    except httpx.HTTPError as exc:
        raise ReportError(f"cannot read Prometheus at {prometheus_url}: {exc}") from exc
    if not any(panels):
        raise ReportError(
            f"no twinstream series in Prometheus at {prometheus_url} in the last {minutes:g} min"
        )
    stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(end))
    return draw(panels, out, f"twinstream pipeline · {minutes:.0f} min to {stamp}")


def report_command(
    out: Annotated[Path, typer.Option(help="PNG to write")] = Path("twinstream-report.png"),
    minutes: Annotated[float, typer.Option(min=1, help="window ending now")] = 30.0,
    prometheus: Annotated[
        str | None, typer.Option(help="Prometheus base URL (default: the local stack's)")
    ] = None,
) -> None:
    """Render throughput, latency, decisions and dead letters from Prometheus to a PNG."""
    from twinstream.config import load_settings

    url = prometheus or f"http://127.0.0.1:{load_settings().metrics.prometheus_port}"
    try:
        path = render_report(url, out, minutes=minutes)
    except ReportError as exc:
        typer.echo(f"report failed: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"wrote {path}")
