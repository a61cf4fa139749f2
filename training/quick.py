"""Single-process training (no Ray) with the same engine, then a full artifact: fixtures and demos."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from training.compare import export_run
from training.config import CONV4, LossKind, MinerKind, TrainConfig
from training.engine import Engine, EpochRecord
from training.export import Trained
from training.finetune import freeze_summary, initial_tower, splits_for
from training.metrics_export import MetricsExport, exporting, run_name
from training.splits import DataSplits
from twinstream.memory import reuse_freed_memory


def train_in_process(
    cfg: TrainConfig,
    splits: DataSplits,
    show_progress: bool = False,
    metrics: MetricsExport | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> Trained:
    """Train ``cfg`` on ``splits`` in this process (`training.finetune` builds the starting tower).

    With ``metrics``, every epoch is also served to Prometheus while the run goes.
    """
    torch.manual_seed(cfg.seed)
    tower = initial_tower(cfg, splits.spec)
    engine = Engine(cfg, splits, tower)
    start = time.perf_counter()
    with Progress(
        TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(), disable=not show_progress,
    ) as progress, exporting(metrics, run_name(cfg.dataset, "local")) as export:  # fmt: skip
        task = progress.add_task("train", total=engine.steps, epoch=1, info="")
        info = ""
        while not engine.finished():
            progress.reset(task, total=engine.steps, epoch=engine.epoch + 1, info=info)
            rec = engine.train_epoch(on_step=lambda: progress.advance(task))
            export([rec.as_metrics()])
            info = f"loss {rec.loss:.4f} · val AUC {rec.val_auc:.4f} · {rec.images_per_s:.0f} img/s"
            progress.update(task, info=info)
            if on_epoch is not None:
                on_epoch(rec)
    epoch_s = [h["seconds"] for h in engine.history]
    extra = {"train_seconds": time.perf_counter() - start, "workers": 1,
             "mean_epoch_seconds": sum(epoch_s) / len(epoch_s), **freeze_summary(cfg, tower)}  # fmt: skip
    return Trained(tower, engine.history, extra)


def train_local(
    cfg: TrainConfig,
    models_dir: Path,
    target_far: float = 1e-3,
    show_progress: bool = False,
    metrics: MetricsExport | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> Path:
    """Train ``cfg`` in this process and export an artifact (a fine-tune: the winner of its comparison,
    `training.compare`, whose Conv-4 also trains in this process); returns its directory."""
    torch.set_num_threads(cfg.threads)
    reuse_freed_memory()  # reuse activation buffers instead of page-faulting them in every step

    def trainer(run_cfg: TrainConfig) -> tuple[Trained, DataSplits]:
        splits = splits_for(run_cfg)
        return train_in_process(run_cfg, splits, show_progress, metrics, on_epoch), splits

    trained, splits = trainer(cfg)
    return export_run(trained, splits, cfg, models_dir, trainer, target_far)


def train_quick(
    out_dir: Path,
    dataset: str = "digits",
    *,
    epochs: int = 15,
    seed: int = 0,
    loss: LossKind = LossKind.TRIPLET,
    miner: MinerKind = MinerKind.NONE,
    data_dir: Path = Path("../shared/datasets"),
) -> Path:
    """A small, fast training (digits: ~10-20 s on one core) producing a complete artifact.

    On digits, all triplets (miner ``none``) generalise to unseen digits better than semi-hard mining.
    Always a Conv-4 from scratch, face data sets included (a fine-tune with its comparison is not quick).

    Args:
        out_dir: Models directory; the artifact is written to ``out_dir/<version>/``.
        dataset: Data set name (``digits`` needs no files).
        epochs: Passes over the training split.
        seed: Seeds splits, sampling and initialisation.
        loss: Objective.
        miner: Miner.
        data_dir: Shared data sets (for data sets other than digits).

    Returns:
        The artifact directory (load it with ``twinstream.model.artifact.load_artifact``).
    """
    cfg = TrainConfig(
        dataset=dataset, data_dir=str(data_dir), loss=loss, miner=miner, epochs=epochs, seed=seed,
        threads=1, embedding_dim=32, architecture=CONV4,
    )  # fmt: skip
    return train_local(cfg, Path(out_dir))
