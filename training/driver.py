"""One training run from its config to a model artifact: Ray Train workers, or this process alone.

The driver only builds the run (Ray's `TorchTrainer(...).fit()` lives in `training.loop`), then
calibrates, evaluates and exports the tower on the driver (`training.export`).
"""

from __future__ import annotations

from pathlib import Path

from training.config import TrainConfig
from training.export import Trained
from training.loop import RayRun
from training.metrics_export import MetricsExport
from training.splits import DataSplits


def train_with_ray(cfg: TrainConfig, run: RayRun, models_dir: Path, target_far: float) -> Path:
    """Ray Train on the workers, then calibration, evaluation and export on this driver.

    A fine-tune is compared with the pretrained tower and a Conv-4 from scratch, which also trains on
    Ray Train (`training.compare`); the winner on the validation identities is exported.
    """
    from training.compare import export_run

    def trainer(run_cfg: TrainConfig) -> tuple[Trained, DataSplits]:
        from training.finetune import freeze_summary, splits_for
        from training.loop import run_ray_training

        splits = splits_for(run_cfg)  # on the driver first: face chips are cut once, then cached
        result = run_ray_training(run_cfg, run, splits.spec)
        epoch_s = [h["seconds"] for h in result.history]
        extra = {"train_seconds": result.seconds, "workers": run.workers, "ray_run": result.run_name,
                 "mean_epoch_seconds": sum(epoch_s) / len(epoch_s),
                 **freeze_summary(run_cfg, result.tower)}  # fmt: skip
        return Trained(result.tower, result.history, extra), splits

    trained, splits = trainer(cfg)
    return export_run(trained, splits, cfg, models_dir, trainer, target_far)


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
