"""Contrastive and triplet objectives with online miners (pytorch-metric-learning), distributed-aware.

Under DDP the loss and miner are wrapped in pml's `DistributedLossWrapper` / `DistributedMinerWrapper`,
so each worker mines its anchors against the embeddings of *all* workers' batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from pytorch_metric_learning import losses, miners
from pytorch_metric_learning.utils.distributed import DistributedLossWrapper, DistributedMinerWrapper
from torch import nn

from training.config import LossKind, MinerKind

#: Margin of the semi-hard band when mining triplets for the contrastive loss.
CONTRASTIVE_SEMIHARD_MARGIN = 0.2


def build_loss(loss: LossKind, margin: float) -> losses.BaseMetricLossFunction:
    """Hadsell et al.'s contrastive loss (positives pulled to 0) or FaceNet's triplet margin loss."""
    if loss is LossKind.CONTRASTIVE:
        return losses.ContrastiveLoss(pos_margin=0.0, neg_margin=margin)
    return losses.TripletMarginLoss(margin=margin)


def build_miner(loss: LossKind, miner: MinerKind, margin: float) -> miners.BaseMiner | None:
    """The miner for a loss; ``None`` means every pair/triplet of the batch is used."""
    if miner is MinerKind.NONE:
        return None
    if miner is MinerKind.HARD:
        return miners.BatchHardMiner()
    if miner is MinerKind.SEMIHARD:
        band = margin if loss is LossKind.TRIPLET else CONTRASTIVE_SEMIHARD_MARGIN
        return miners.TripletMarginMiner(margin=band, type_of_triplets="semihard")
    if loss is LossKind.CONTRASTIVE:
        return miners.PairMarginMiner(pos_margin=0.0, neg_margin=margin)
    return miners.TripletMarginMiner(margin=margin, type_of_triplets="all")


@dataclass
class Objective:
    """A loss with its miner; call it on a batch of embeddings and labels."""

    loss: nn.Module
    miner: nn.Module | None

    def __call__(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        tuples = self.miner(embeddings, labels) if self.miner is not None else None
        return self.loss(embeddings, labels, tuples)


def build_objective(loss: LossKind, miner: MinerKind, margin: float, distributed: bool = False) -> Objective:
    """Loss + miner, wrapped for cross-worker mining when ``distributed``."""
    base_loss, base_miner = build_loss(loss, margin), build_miner(loss, miner, margin)
    if not distributed:
        return Objective(base_loss, base_miner)
    wrapped_miner = DistributedMinerWrapper(base_miner) if base_miner is not None else None
    return Objective(DistributedLossWrapper(base_loss), wrapped_miner)
