"""The typed configuration of one training run, shared by the Ray driver, its workers and quick training."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from enum import StrEnum
from pathlib import Path
from typing import Any


class LossKind(StrEnum):
    """The two objectives of the classic Siamese literature."""

    CONTRASTIVE = "contrastive"
    TRIPLET = "triplet"


class MinerKind(StrEnum):
    """Online mining inside each (global) batch."""

    SEMIHARD = "semihard"  # FaceNet: negatives farther than the positive but inside the margin
    HARD = "hard"  # batch-hard: hardest positive and hardest negative per anchor
    ALL = "all"  # every tuple that still violates the margin
    NONE = "none"  # every tuple in the batch


#: Per-loss default margins for L2-normalised embeddings (distances in [0, 2]).
DEFAULT_MARGIN = {LossKind.CONTRASTIVE: 1.0, LossKind.TRIPLET: 0.2}


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """One training run. Plain values only, so it crosses Ray's process boundary as a dict.

    Attributes:
        dataset: ``digits`` | ``omniglot`` | ``att-faces`` | ``folder:PATH``.
        data_dir: Root of the shared data sets.
        loss: Objective.
        miner: Mining strategy.
        margin: Loss margin; ``None`` picks `DEFAULT_MARGIN` for the loss.
        epochs: Passes over the training split (each worker sees 1/world of it per epoch).
        classes_per_batch: P of the P×K batch (per worker).
        samples_per_class: K of the P×K batch.
        lr: Adam learning rate (cosine-decayed to 5 % over the run).
        embedding_dim: Size of the embedding.
        architecture: Tower architecture name.
        augment: Whether to apply the data set's training augmentations.
        seed: Seeds class splits, sampling and initialisation.
        threads: torch intra-op threads per worker.
        time_budget_s: Stop after the epoch that crosses this wall time (0 = no budget).
        steps_per_epoch: Override the derived number of steps per epoch (0 = derived).
        val_every: Validate every N epochs (and always after the last).
        test_time_shifts: Pixels of the shifted views the exported tower averages in eval mode
            (0 = off); ``None`` takes the data set's default (1 for Omniglot, 0 otherwise).
    """

    dataset: str = "digits"
    data_dir: str = "../shared/datasets"
    loss: LossKind = LossKind.TRIPLET
    miner: MinerKind = MinerKind.SEMIHARD
    margin: float | None = None
    epochs: int = 10
    classes_per_batch: int = 0
    samples_per_class: int = 0
    lr: float = 1e-3
    embedding_dim: int = 64
    architecture: str = "conv4"
    augment: bool = True
    seed: int = 0
    threads: int = 1
    time_budget_s: float = 0.0
    steps_per_epoch: int = 0
    val_every: int = 1
    test_time_shifts: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "loss", LossKind(self.loss))
        object.__setattr__(self, "miner", MinerKind(self.miner))
        if self.test_time_shifts is not None and self.test_time_shifts < 0:
            raise ValueError(f"test_time_shifts must be >= 0, got {self.test_time_shifts}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")

    @property
    def effective_margin(self) -> float:
        """The margin in use: the explicit one or the loss's default."""
        return self.margin if self.margin is not None else DEFAULT_MARGIN[self.loss]

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for ``TorchTrainer(train_loop_config=...)``."""
        out = asdict(self)
        out["loss"], out["miner"] = str(self.loss), str(self.miner)
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainConfig:
        """Inverse of `to_dict`; unknown keys are refused."""
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown training config keys: {sorted(unknown)}")
        return cls(**raw)

    def with_(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed."""
        return replace(self, **changes)
