"""One training run from its config to a model artifact: Ray Train workers, or this process alone.

The driver only builds the run (Ray's `TorchTrainer(...).fit()` lives in `training.loop`), then
calibrates, evaluates and exports the tower on the driver (`training.export`).
"""

from __future__ import annotations

from pathlib import Path

from training.config import TrainConfig
from training.loop import RayRun
from training.metrics_export import MetricsExport


def train_with_ray(cfg: TrainConfig, run: RayRun, models_dir: Path, target_far: float) -> Path:
    """Ray Train on the workers, then calibration, evaluation and export on this driver."""
    from training.datasets import load_dataset
    from training.export import export_artifact
    from training.loop import run_ray_training

    splits = load_dataset(cfg.dataset, cfg.data_path, cfg.seed)
    result = run_ray_training(cfg, run, splits.spec)
    epoch_s = [h["seconds"] for h in result.history]
    extra = {"train_seconds": result.seconds, "workers": run.workers, "ray_run": result.run_name,
             "mean_epoch_seconds": sum(epoch_s) / len(epoch_s)}  # fmt: skip
    return export_artifact(
        result.tower, splits, cfg, result.history, models_dir, target_far=target_far, extra=extra
    )


def run_training(
    cfg: TrainConfig,
    models_dir: Path,
    *,
    run: RayRun | None,
    target_far: float = 1e-3,
    metrics: MetricsExport | None = None,
    show_progress: bool = True,
) -> Path:
    """Train ``cfg`` (on Ray when ``run`` is given, else in this process); returns the artifact directory."""
    if run is None:
        from training.quick import train_local

        return train_local(cfg, models_dir, target_far, show_progress=show_progress, metrics=metrics)
    return train_with_ray(cfg, run, models_dir, target_far)
