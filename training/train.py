"""``python -m training.train --dataset … --workers N``: the driver that ``ray job submit … --`` runs.

Its options are generated from `TrainConfig` and the job's own options, so they are the same names as
`twinstream train`'s (the friendlier command line, with help texts) and cannot drift from the config.
It prints ``artifact: <path>`` as its last line for callers to parse.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

from training.config import TrainConfig
from training.driver import run_training
from training.loop import RayRun
from training.metrics_export import MetricsExport
from twinstream.config import load_settings


def _plain_type(hint: Any) -> Any:
    """``int | None`` → ``int``; other hints unchanged."""
    if get_origin(hint) in (Union, types.UnionType):
        return next(arg for arg in get_args(hint) if arg is not type(None))
    return hint


def _add_field(parser: argparse.ArgumentParser, name: str, hint: Any, default: Any) -> None:
    flag = "--" + name.replace("_", "-")
    kind = _plain_type(hint)
    if kind is bool:
        parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
    elif isinstance(kind, type) and issubclass(kind, enum.Enum):
        parser.add_argument(flag, choices=[m.value for m in kind], default=default)
    else:
        parser.add_argument(flag, type=kind, default=default)


def parser() -> argparse.ArgumentParser:
    """Every `TrainConfig` field as ``--field-name``, plus where and how the job runs."""
    out = argparse.ArgumentParser(prog="python -m training.train", description=__doc__)
    hints = get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if f.name != "data_dir":
            _add_field(out, f.name, hints[f.name], f.default)
    out.add_argument("--data-dir", type=Path, default=None, help="shared data sets (TWINSTREAM_DATA_DIR)")
    out.add_argument("--workers", type=int, default=2, help="Ray Train workers; 0 trains in this process")
    out.add_argument("--gpu", action=argparse.BooleanOptionalAction, default=False)
    out.add_argument("--cpus-per-worker", type=float, default=1.0)
    out.add_argument("--max-failures", type=int, default=2)
    out.add_argument("--crash-after-epoch", type=int, default=0, help=argparse.SUPPRESS)
    out.add_argument("--storage", type=Path, default=None, help="Ray Train checkpoint storage")
    out.add_argument("--out", type=Path, default=None, help="models directory")
    out.add_argument("--target-far", type=float, default=1e-3)
    return out


def main(argv: Sequence[str] | None = None) -> Path:
    """Parse, train, print the artifact path."""
    args = vars(parser().parse_args(argv))
    settings = load_settings()
    job = {k: args.pop(k) for k in ("workers", "gpu", "cpus_per_worker", "max_failures",
                                     "crash_after_epoch", "storage", "out", "target_far")}  # fmt: skip
    data_dir = args.pop("data_dir") or settings.datasets_dir
    cfg = TrainConfig(data_dir=str(data_dir), **args)
    metrics = MetricsExport.from_settings(settings)
    run = None
    if job["workers"] > 0:
        where = {"storage_path": job["storage"].resolve()} if job["storage"] else {}
        run = RayRun(workers=job["workers"], use_gpu=job["gpu"], cpus_per_worker=job["cpus_per_worker"],
                     max_failures=job["max_failures"], crash_after_epoch=job["crash_after_epoch"],
                     metrics=metrics, **where)  # fmt: skip
    models_dir = (job["out"] or settings.paths.models_dir).resolve()
    path = run_training(cfg, models_dir, run=run, target_far=job["target_far"], metrics=metrics)
    print(f"artifact: {path}", flush=True)
    return path


if __name__ == "__main__":
    main()
