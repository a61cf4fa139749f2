"""`twinstream bench [serve|stream|train|all]`: the benchmarks of `cli.bench` in one run, with their ratios.

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
    served, raw = d["served"], d["raw_forward"]
    return {
        "serve: HTTP (32 clients) / handle (batch 32) images/s": served["http_concurrency32"]["images_per_s"]
        / served["handle_batch32"]["images_per_s"],
        "serve: handle batch 32 / raw forward batch 32": served["handle_batch32"]["images_per_s"]
        / raw["forward_batch32"]["images_per_s"],
        "serve: HTTP (32 clients) / raw forward batch 32": served["http_concurrency32"]["images_per_s"]
        / raw["forward_batch32"]["images_per_s"],
    }


def _stream_ratios(d: dict[str, Any]) -> dict[str, float]:
    model = d.get("model", {})
    size = f"{model['input']['height']}x{model['input']['width']}" if "input" in model else "?"
    which = f"{model.get('dataset', 'digits')} {size}"
    out = {f"stream ({which}): pipeline / raw forward (replica threads)": float(d["ratio_pipeline_to_raw"])}
    if "ratio_pipeline_to_raw_all_cores" in d:
        out[f"stream ({which}): pipeline / raw forward (all cores)"] = float(
            d["ratio_pipeline_to_raw_all_cores"]
        )
    return out


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


#: Each name runs one or more scripts. The stream runs twice: the 16x16 digits tower (cheapest forward,
#: so the pipeline's own cost shows most) and a 56x46 face tower (the attendance use case).
BENCHMARKS: dict[str, tuple[Benchmark, ...]] = {
    "serve": (Benchmark("serve", ("serve", "--seconds", "8"), "serve-*.json", _serve_ratios),),
    "stream": (
        # 50,000 digits: ~15 s of drain at ~3,000 images/s once the backlog is published (a short drain
        # reads ±30 % run to run).
        Benchmark(
            "stream",
            ("stream", "--tag", "digits", "--images", "50000"),
            "stream-*-digits.json",
            _stream_ratios,
        ),
        Benchmark(
            "stream-faces",
            ("stream", "--dataset", "att-faces", "--images", "10000"),
            "stream-*-att-faces.json",
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
