"""The per-process training engine: epochs of P×K batches, validation and checkpoint state.

Ray Train workers (``training.loop``) and single-process quick training (``training.quick``) both drive
this class, so the tower, objective, sampler and schedule are the same code in both paths.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from training.augment import augment, rotate_quarters
from training.config import TrainConfig
from training.evaluate import embed, one_shot_accuracy, sample_pairs, verification_metrics
from training.objectives import build_objective
from training.samplers import PKBatches, steps_per_epoch
from training.splits import DataSplits
from twinstream.images.preprocess import preprocess_batch


@dataclass(frozen=True, slots=True)
class EpochRecord:
    """What one epoch did; reported to Ray Train and kept in the artifact's history."""

    epoch: int
    loss: float
    seconds: float
    images_per_s: float
    lr: float
    val_auc: float = float("nan")
    val_eer: float = float("nan")
    val_oneshot: float = float("nan")
    val_oneshot_ways: int = 0
    world_size: int = 1
    resumed: bool = False  # this epoch ran in a worker group restarted from a checkpoint

    def as_metrics(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def validation_metrics(emb: np.ndarray, labels: np.ndarray, seed: int) -> dict[str, float]:
    """Fast per-epoch validation: AUC, EER and (≤20)-way one-shot accuracy on validation identities."""
    ver = verification_metrics(sample_pairs(emb, labels, seed=seed, max_neg=50_000))
    ways = min(20, len(np.unique(labels)))
    return {
        "val_auc": ver["auc"],
        "val_eer": ver["eer"],
        "val_oneshot": one_shot_accuracy(emb, labels, ways, trials=400, seed=seed),
        "val_oneshot_ways": float(ways),
    }


def agree_any(flag: bool) -> bool:
    """True on every worker if it is true on any (a no-op outside torch.distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    value = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


class Engine:
    """Trains ``model`` (the tower, or its DDP wrapper) on ``splits.train``; validates on ``splits.val``."""

    def __init__(
        self, cfg: TrainConfig, splits: DataSplits, model: nn.Module, rank: int = 0, world_size: int = 1
    ) -> None:
        self.cfg, self.splits, self.model = cfg, splits, model
        self.rank, self.world_size = rank, world_size
        self.aug = splits.augmentation
        self.rotations = self.aug.rotations_as_classes and splits.spec.height == splits.spec.width
        p, k = splits.default_pk
        self.batches = PKBatches(
            splits.train.labels, cfg.classes_per_batch or p, cfg.samples_per_class or k,
            steps=1, rotations=self.rotations, seed=cfg.seed * 1009 + rank,
        )  # fmt: skip
        self.steps = cfg.steps_per_epoch or steps_per_epoch(
            len(splits.train.labels), self.batches.batch_size, world_size, self.rotations
        )
        self.batches.steps = self.steps
        self.device = next(model.parameters()).device
        self.x_train = preprocess_batch(list(splits.train.images), splits.spec).to(self.device)
        self.x_val = preprocess_batch(list(splits.val.images), splits.spec) if rank == 0 else None
        self.objective = build_objective(cfg.loss, cfg.miner, cfg.effective_margin, world_size > 1)
        # Frozen stages (requires_grad False, `training.freeze`) are left out: no state, no updates.
        trainable = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(trainable, lr=cfg.lr)
        self.gen = torch.Generator().manual_seed(cfg.seed * 7919 + rank)
        self.epoch, self.step, self.elapsed_s = 0, 0, 0.0
        self.history: list[dict[str, float]] = []
        self.resumed = False
        self.out_of_time = False
        self._epoch_start = 0.0

    @property
    def tower(self) -> nn.Module:
        """The bare tower (DDP unwrapped)."""
        return getattr(self.model, "module", self.model)

    def _progress(self) -> float:
        by_steps = self.step / (self.cfg.epochs * self.steps)
        by_time = self._elapsed() / self.cfg.time_budget_s if self.cfg.time_budget_s else 0.0
        return min(1.0, max(by_steps, by_time))

    def _lr(self) -> float:
        """Cosine decay to 5 % of the base rate over the run (steps or time budget, whichever ends first)."""
        return self.cfg.lr * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * self._progress())))

    def _train_step(self, indices: np.ndarray, quarters: np.ndarray, labels: np.ndarray) -> float:
        x = self.x_train[torch.from_numpy(indices).to(self.device)]
        if self.rotations:
            x = rotate_quarters(x, torch.from_numpy(quarters).to(self.device))
        if self.cfg.augment:
            x = augment(x, self.aug, self.gen)
        emb = self.model(x.contiguous(memory_format=torch.channels_last))
        loss = self.objective(emb, torch.from_numpy(labels).to(self.device))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def _budget_spent(self, step_in_epoch: int) -> bool:
        """Whether the time budget ran out; all workers agree (under DDP: every 8 steps and at the
        epoch's last step, which every worker reaches together, so epochs shorter than 8 steps stop too)."""
        spaced = step_in_epoch % 8 and step_in_epoch != self.steps
        if not self.cfg.time_budget_s or (self.world_size > 1 and spaced):
            return False
        return agree_any(self._elapsed() >= self.cfg.time_budget_s)

    def _elapsed(self) -> float:
        return self.elapsed_s + (time.perf_counter() - self._epoch_start if self._epoch_start else 0.0)

    def train_epoch(self, on_step: Any = None) -> EpochRecord:
        """One epoch of ``self.steps`` P×K batches (fewer if the budget runs out); rank 0 validates."""
        self._epoch_start, losses = time.perf_counter(), []
        self.model.train()
        for i, batch in enumerate(self.batches.epoch(self.epoch), start=1):
            for group in self.optimizer.param_groups:
                group["lr"] = self._lr()
            losses.append(self._train_step(batch.indices, batch.quarters, batch.labels))
            self.step += 1
            if on_step is not None:
                on_step()
            if self._budget_spent(i):
                self.out_of_time = True
                break
        seconds = time.perf_counter() - self._epoch_start
        self.elapsed_s, self._epoch_start = self.elapsed_s + seconds, 0.0
        self.epoch += 1
        record = EpochRecord(
            epoch=self.epoch, loss=float(np.mean(losses)), seconds=seconds,
            images_per_s=len(losses) * self.batches.batch_size / seconds, lr=self._lr(),
            world_size=self.world_size, resumed=self.resumed,
        )  # fmt: skip
        if self.rank == 0 and (self.epoch % self.cfg.val_every == 0 or self.finished()):
            record = EpochRecord(**{**asdict(record), **self.validate()})
        self.history.append(record.as_metrics())
        return record

    def validate(self) -> dict[str, Any]:
        """Validation metrics of the current tower (rank 0 holds the validation images)."""
        assert self.x_val is not None, "only rank 0 validates"
        metrics = validation_metrics(embed(self.tower, self.x_val), self.splits.val.labels, self.cfg.seed)
        metrics["val_oneshot_ways"] = int(metrics["val_oneshot_ways"])
        return metrics

    def finished(self) -> bool:
        """All epochs done, or the time budget spent."""
        return self.epoch >= self.cfg.epochs or self.out_of_time

    def state_dict(self) -> dict[str, Any]:
        """Checkpoint state (plain tensors and numbers: loads with ``weights_only=True``)."""
        return {
            "tower": self.tower.state_dict(), "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch, "step": self.step, "elapsed_s": self.elapsed_s, "history": self.history,
        }  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from `state_dict` output."""
        self.tower.load_state_dict(state["tower"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.elapsed_s, self.history = float(state["elapsed_s"]), list(state["history"])
        self.resumed = True
