"""Benchmarks (not tests): `twinstream bench` runs them one after another and prints same-run ratios.

Every benchmark writes its JSON and PNG into `results_dir()`: ``$TWINSTREAM_BENCH_OUT`` when set, else
``runs/bench`` under the current directory (an installed package writes nothing into itself).
"""

from __future__ import annotations

import os
from pathlib import Path


def results_dir() -> Path:
    """Where benchmark figures go (created on first use)."""
    out = Path(os.environ.get("TWINSTREAM_BENCH_OUT") or Path.cwd() / "runs" / "bench")
    out.mkdir(parents=True, exist_ok=True)
    return out
