"""Ray Train: the pure per-worker loop and the driver that builds ``TorchTrainer(...).fit()``.

Each worker loads the data itself, trains with DDP (gloo on CPU, NCCL on GPU), checkpoints every epoch
(rank 0) and reports metrics with ``ray.train.report``; after a worker failure Ray restarts the group
(``FailureConfig``) and the loop resumes from the latest checkpoint.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from training.config import TrainConfig
from training.engine import Engine
from training.finetune import initial_tower, splits_for
from training.metrics_export import MetricsExport
from twinstream.images.preprocess import InputSpec
from twinstream.memory import MALLOC_ENV, reuse_freed_memory
from twinstream.model.tower import build_tower

STATE_FILE = "state.pt"
#: Ray Train waits this long between health checks; the default (2 s) stalls every ``report``.
RAY_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.1", **MALLOC_ENV}


class InjectedFailureError(RuntimeError):
    """Raised by ``crash_after_epoch`` to exercise resumption from checkpoints."""


def _resume(engine: Engine) -> bool:
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return False
    with checkpoint.as_directory() as ckpt_dir:
        state = torch.load(Path(ckpt_dir) / STATE_FILE, map_location=engine.device, weights_only=True)
        engine.load_state_dict(state)
    return True


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: ``config`` is `TrainConfig.to_dict()` plus ``crash_after_epoch``."""
    import ray.train
    import ray.train.torch

    config = dict(config)
    crash_after = int(config.pop("crash_after_epoch", 0))
    cfg = TrainConfig.from_dict(config)
    torch.set_num_threads(cfg.threads)
    reuse_freed_memory()  # reuse activation buffers instead of page-faulting them in every step
    torch.manual_seed(cfg.seed)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    splits = splits_for(cfg, with_test=False)  # face chips come from the cache the driver filled
    model = ray.train.torch.prepare_model(initial_tower(cfg, splits.spec))
    engine = Engine(cfg, splits, model, rank=rank, world_size=world)
    resumed = _resume(engine)
    while True:
        record = engine.train_epoch()
        stop = engine.finished()  # epochs done or budget spent, agreed by all workers
        metrics = record.as_metrics()
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            if rank == 0:
                torch.save(engine.state_dict(), Path(tmp) / STATE_FILE)
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=checkpoint)
        if crash_after and not resumed and engine.epoch == crash_after and rank == 0:
            raise InjectedFailureError(f"injected failure after epoch {engine.epoch}")
        if stop:
            break


@dataclass(frozen=True)
class RayRun:
    """How to run on Ray: workers, devices, where checkpoints go, fault tolerance."""

    workers: int = 2
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    storage_path: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "twinstream-train")
    max_failures: int = 2
    crash_after_epoch: int = 0  # fault injection for resume tests; 0 = off
    metrics: MetricsExport | None = None  # serve the run's metrics to Prometheus while it runs


@dataclass(frozen=True)
class RayResult:
    """The trained tower (from the last checkpoint), its history and the run's wall time."""

    tower: nn.Module
    history: list[dict[str, float]]
    seconds: float
    run_name: str


def run_ray_training(cfg: TrainConfig, run: RayRun, spec: InputSpec) -> RayResult:
    """Train ``cfg`` with Ray Train and return the tower of the latest checkpoint.

    Connects to ``RAY_ADDRESS`` when set (a cluster or a submitted job); otherwise starts a local Ray.
    """
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from training.metrics_callback import PrometheusCallback
    from training.progress import EpochPrinter

    for key, value in RAY_ENV.items():
        os.environ.setdefault(key, value)  # propagated by Ray Train to its controller and workers
    if not ray.is_initialized():
        # Inside a submitted job (RAY_ADDRESS set) the job's runtime_env applies and may not be merged
        # with another; Ray Train forwards the env vars above to its controller and workers anyway.
        joining = bool(os.environ.get("RAY_ADDRESS"))
        ray.init(runtime_env=None if joining else {"env_vars": dict(RAY_ENV)})
    name = f"twinstream-{cfg.dataset.split(':')[0]}-{time.strftime('%Y%m%d-%H%M%S')}-{os.urandom(3).hex()}"
    loop_config = {**cfg.to_dict(), "crash_after_epoch": run.crash_after_epoch}
    exporting = [PrometheusCallback(run.metrics, name, final_epoch=cfg.epochs)] if run.metrics else []
    callbacks = [EpochPrinter(cfg.epochs), *exporting]
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config,
        torch_config=TorchConfig(backend="nccl" if run.use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=run.workers, use_gpu=run.use_gpu, resources_per_worker={"CPU": run.cpus_per_worker}
        ),
        run_config=RunConfig(
            name=name, storage_path=str(run.storage_path),
            failure_config=FailureConfig(max_failures=run.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            callbacks=callbacks,  # type: ignore[arg-type]  # UserCallback is a Callback
        ),
    )  # fmt: skip
    start = time.perf_counter()
    try:
        result = trainer.fit()
    finally:
        if run.metrics is not None:
            run.metrics.unregister(name)
    seconds = time.perf_counter() - start
    if result.checkpoint is None:
        raise RuntimeError(f"Ray Train run {name} produced no checkpoint: {result.error}")
    with result.checkpoint.as_directory() as ckpt_dir:
        state = torch.load(Path(ckpt_dir) / STATE_FILE, map_location="cpu", weights_only=True)
    tower = build_tower(cfg.architecture, spec, cfg.embedding_dim)
    tower.load_state_dict(state["tower"])
    return RayResult(tower=tower, history=list(state["history"]), seconds=seconds, run_name=name)
