"""The typed configuration of one training run, shared by the Ray driver, its workers and quick training."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from training.freeze import DEFAULT_FACE_FREEZE, NONE, FreezeSpec


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

#: ``architecture`` / ``freeze``: chosen from the data set and the architecture.
AUTO = "auto"
CONV4 = "conv4"
#: `twinstream.model.tower.FACE_RESNET`, spelt here so the CLI can build configs without importing torch
#: (tests/unit/test_finetune.py checks they agree).
FACE_ARCHITECTURE = "dlib-face-resnet-v1"
#: Data sets of faces: ``architecture=auto`` gives them the pretrained face tower.
FACE_DATASETS = frozenset({"att-faces"})
#: Embedding sizes per architecture (``embedding_dim=0``); the face tower's is fixed by its weights.
DEFAULT_EMBEDDING_DIM = {CONV4: 64, FACE_ARCHITECTURE: 128}
#: Adam learning rates (``lr=0``): from scratch, and fine-tuning published weights. 1e-3 on the face
#: tower's last level raised AT&T's validation EER from 0 to 2 % in 10 epochs; 1e-4 kept it at 0.
SCRATCH_LR, FINE_TUNE_LR = 1e-3, 1e-4


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
        lr: Adam learning rate (cosine-decayed to 5 % over the run); 0 takes `SCRATCH_LR`, or
            `FINE_TUNE_LR` for a pretrained tower.
        embedding_dim: Size of the embedding; 0 takes the architecture's (`DEFAULT_EMBEDDING_DIM`).
        architecture: Tower architecture name; ``auto`` takes the face tower for face data sets
            (`FACE_DATASETS`) and ``conv4`` otherwise.
        augment: Whether to apply the data set's training augmentations.
        seed: Seeds class splits, sampling and initialisation.
        threads: torch intra-op threads per worker.
        time_budget_s: Stop after the epoch that crosses this wall time (0 = no budget).
        steps_per_epoch: Override the derived number of steps per epoch (0 = derived).
        val_every: Validate every N epochs (and always after the last).
        test_time_shifts: Pixels of the shifted views the exported tower averages in eval mode
            (0 = off); ``None`` takes the data set's default (1 for Omniglot, 0 otherwise).
        pretrained: Start from the architecture's published weights where it has them (the face tower);
            architectures without any (Conv-4) always start from random weights, recorded as False.
        freeze: Stages of a pretrained tower left fixed (`training.freeze`: ``none``, ``levels:N`` or
            stage names); ``auto`` takes `DEFAULT_FACE_FREEZE` for a pretrained tower, ``none`` otherwise.
        baseline_budget_s: A pretrained run is compared, on the same identities, with the pretrained
            tower alone and with a Conv-4 trained from scratch for this many seconds (0: no Conv-4).
    """

    dataset: str = "digits"
    data_dir: str = "../shared/datasets"
    loss: LossKind = LossKind.TRIPLET
    miner: MinerKind = MinerKind.SEMIHARD
    margin: float | None = None
    epochs: int = 10
    classes_per_batch: int = 0
    samples_per_class: int = 0
    lr: float = 0.0
    embedding_dim: int = 0
    architecture: str = AUTO
    augment: bool = True
    seed: int = 0
    threads: int = 1
    time_budget_s: float = 0.0
    steps_per_epoch: int = 0
    val_every: int = 1
    test_time_shifts: int | None = None
    pretrained: bool = True
    freeze: str = AUTO
    baseline_budget_s: float = 120.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "loss", LossKind(self.loss))
        object.__setattr__(self, "miner", MinerKind(self.miner))
        self._resolve_recipe()
        if self.test_time_shifts is not None and self.test_time_shifts < 0:
            raise ValueError(f"test_time_shifts must be >= 0, got {self.test_time_shifts}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")

    def _resolve_recipe(self) -> None:
        """Replace the ``auto``/0 values by the data set's and architecture's; idempotent."""
        arch = self.architecture
        if arch == AUTO:
            arch = FACE_ARCHITECTURE if self.dataset in FACE_DATASETS else CONV4
        pretrained = self.pretrained and arch == FACE_ARCHITECTURE  # the only published weights
        freeze = self.freeze if self.freeze != AUTO else (DEFAULT_FACE_FREEZE if pretrained else NONE)
        if FreezeSpec.parse(freeze).stages and not pretrained:
            raise ValueError(f"freeze {freeze!r} needs a pretrained tower; {arch} starts from scratch")
        dim = self.embedding_dim or DEFAULT_EMBEDDING_DIM.get(arch, DEFAULT_EMBEDDING_DIM[CONV4])
        if arch == FACE_ARCHITECTURE and dim != DEFAULT_EMBEDDING_DIM[arch]:
            raise ValueError(f"{arch} gives {DEFAULT_EMBEDDING_DIM[arch]}-d embeddings, not {dim}")
        if self.lr < 0 or self.baseline_budget_s < 0:
            raise ValueError(f"lr and baseline_budget_s must be >= 0: {self.lr}, {self.baseline_budget_s}")
        resolved = {
            "architecture": arch, "pretrained": pretrained, "freeze": freeze, "embedding_dim": dim,
            "lr": self.lr or (FINE_TUNE_LR if pretrained else SCRATCH_LR),
            "baseline_budget_s": self.baseline_budget_s if pretrained else 0.0,
        }  # fmt: skip
        for name, value in resolved.items():
            object.__setattr__(self, name, value)

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
