"""`twinstream bench [serve|stream|reindex|train|all]`: the benchmarks of `cli.bench`, with same-run ratios.

Each benchmark is a module of this package (``python -m cli.bench.<name>``) that writes its own JSON +
PNG into `cli.bench.results_dir`; this command runs the chosen ones one after another (never at once:
they would share the cores), then writes ``<date>.json`` and ``<date>.png`` there with the ratios
measured in the same run: served vs raw forward throughput, HTTP vs handle, pipeline vs raw, 2 vs 1
training workers.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cli.bench import results_dir


@dataclass(frozen=True)
class Benchmark:
    name: str
    argv: tuple[str, ...]  # module of cli.bench, then its arguments
    output: str  # glob of the JSON it writes in results_dir()
    ratios: Callable[[dict[str, Any]], dict[str, float]]


def _serve_ratios(d: dict[str, Any]) -> dict[str, float]:
    served, raw = d["served"], d["raw"]
    which = "face" if raw["kind"] != "plain" else Path(d["model"]).name
    return {
        f"serve ({which}): HTTP 32 clients / raw (all cores), images/s": d["ratios"][
            "http_concurrency32_to_raw"
        ],
        f"serve ({which}): HTTP p99 at half load / raw image time": d["ratios"][
            "http_half_load_p99_to_raw_image_time"
        ],
        f"serve ({which}): HTTP 32 clients / handle batch 32, images/s": served["http_concurrency32"][
            "images_per_s"
        ]
        / served["handle_batch32"]["images_per_s"],
    }


def _stream_ratios(d: dict[str, Any]) -> dict[str, float]:
    model = d["model"]
    which = "face" if model["architecture"].startswith("dlib") else model["dataset"]
    return {f"stream ({which}): end to end / raw (all cores), images/s": float(d["ratio_pipeline_to_raw"])}


def _train_ratios(d: dict[str, Any]) -> dict[str, float]:
    runs = {(r["workers"], r["threads_per_worker"]): r for r in d["runs"]}
    two, one = runs[(2, 1)], runs[(1, 2)]
    return {
        "train: 2 workers × 1 thread / 1 worker × 2 threads, images/s": two["images_per_s"]
        / one["images_per_s"]
    }


def _reindex_ratios(d: dict[str, Any]) -> dict[str, float]:
    return {
        f"reindex ({d['dataset']}): re-index / raw forward, images/s": float(
            d["ratio_reindex_to_raw_forward"]
        )
    }


#: Each name runs one or more scripts. The face tower (``--model face``: detection, alignment and the
#: ResNet) is the product's; the digits tower (cheapest forward) shows the serving overhead in isolation.
BENCHMARKS: dict[str, tuple[Benchmark, ...]] = {
    "serve": (
        Benchmark(
            "serve-face",
            ("serve", "--model", "face", "--images", "att_faces", "--seconds", "10", "--tag", "face"),
            "serve-face-*.json",
            _serve_ratios,
        ),
        Benchmark(
            "serve-digits",
            ("serve", "--seconds", "8", "--tag", "digits"),
            "serve-digits-*.json",
            _serve_ratios,
        ),
    ),
    "stream": (
        Benchmark(
            "stream-face",
            ("stream", "--model", "face", "--dataset", "att-faces", "--images", "3000", "--tag", "face"),
            "stream-*-face.json",
            _stream_ratios,
        ),
        # 50,000 digits: ~15 s of drain at ~3,000 images/s once the backlog is published (a short drain
        # reads ±30 % run to run).
        Benchmark(
            "stream-digits",
            ("stream", "--tag", "digits", "--images", "50000"),
            "stream-*-digits.json",
            _stream_ratios,
        ),
    ),
    "reindex": (
        Benchmark(
            "reindex",
            ("reindex", "--dataset", "att-faces", "--images", "2000"),
            "reindex-*-att-faces.json",
            _reindex_ratios,
        ),
    ),
    "train": (
        Benchmark(
            "train",
            ("train_quality", "ray-scaling", "--images-per-epoch", "7680", "--epochs", "2"),
            "ray_scaling.json",
            _train_ratios,
        ),
    ),
}


def _newest(pattern: str) -> Path | None:
    found = sorted(results_dir().glob(pattern), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def run_benchmarks(names: list[str], echo: Callable[[str], None] = print) -> tuple[Path, dict[str, Any]]:
    """Run each benchmark script, then write the summary JSON and PNG; returns (json path, summary)."""
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.1"}
    summary: dict[str, Any] = {
        "machine": f"{platform.machine()} · {os.cpu_count()} CPUs · {platform.python_version()}",
        "at": time.strftime("%F %T"),
        "load_average_before": os.getloadavg(),
        "benchmarks": {},
        "ratios": {},
    }
    for bench in (b for name in names for b in BENCHMARKS[name]):
        name = bench.name
        started = time.time()
        module = f"cli.bench.{bench.argv[0]}"
        echo(f"── {name}: python -m {module} {' '.join(bench.argv[1:])}")
        done = subprocess.run([sys.executable, "-m", module, *bench.argv[1:]], check=False, env=env)
        out = _newest(bench.output)
        if done.returncode != 0 or out is None or out.stat().st_mtime < started:
            summary["benchmarks"][name] = {"error": f"exit code {done.returncode}; no fresh {bench.output}"}
            continue
        data = json.loads(out.read_text())
        summary["benchmarks"][name] = {"file": str(out), "seconds": time.time() - started}
        summary["ratios"].update(bench.ratios(data))
    stamp = time.strftime("%Y-%m-%d")
    path = results_dir() / f"{stamp}.json"
    path.write_text(json.dumps(summary, indent=2, default=float))
    _plot(summary["ratios"], results_dir() / f"{stamp}.png", summary["machine"])
    return path, summary


def _plot(ratios: dict[str, float], out: Path, machine: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 1.0 + 0.5 * max(1, len(ratios))))
    names = list(ratios)
    ax.barh(names, [ratios[n] for n in names], color="#4472c4")
    for y, name in enumerate(names):
        ax.text(ratios[name], y, f" {ratios[name]:.2f}", va="center", fontsize=8)
    ax.axvline(1.0, color="grey", ls=":")
    ax.set(xlabel="ratio (same run)", title=f"twinstream bench · {machine}")
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.subplots_adjust(left=0.42)  # the ratio names are long
    fig.savefig(out, dpi=110)
    plt.close(fig)
