"""Losses and miners on hand-made embeddings with known distances."""

from __future__ import annotations

import math

import pytest
import torch

from training.config import LossKind, MinerKind
from training.objectives import build_miner, build_objective


def _unit(angle_deg: float) -> list[float]:
    a = math.radians(angle_deg)
    return [math.cos(a), math.sin(a)]


def test_triplet_loss_of_one_triplet_with_known_distances() -> None:
    # anchor at 0°, positive at 60° (distance 1.0), negative at 90° (distance sqrt(2))
    emb = torch.tensor([_unit(0), _unit(60), _unit(90)])
    labels = torch.tensor([0, 0, 1])
    objective = build_objective(LossKind.TRIPLET, MinerKind.NONE, margin=0.5)
    tuples = (torch.tensor([0]), torch.tensor([1]), torch.tensor([2]))
    loss = objective.loss(emb, labels, tuples)
    assert loss.item() == pytest.approx(1.0 - math.sqrt(2) + 0.5, abs=1e-5)


def test_triplet_loss_is_zero_when_the_negative_is_beyond_the_margin() -> None:
    emb = torch.tensor([_unit(0), _unit(10), _unit(180)])
    objective = build_objective(LossKind.TRIPLET, MinerKind.NONE, margin=0.2)
    loss = objective.loss(
        emb, torch.tensor([0, 0, 1]), (torch.tensor([0]), torch.tensor([1]), torch.tensor([2]))
    )
    assert loss.item() == pytest.approx(0.0, abs=1e-6)


def test_contrastive_loss_pulls_positives_and_pushes_close_negatives() -> None:
    # positive pairs (0,1) and (1,3) at distance 1.0; negative pairs (0,2) at 1.0 and (3,2) at 2.0
    emb = torch.tensor([_unit(0), _unit(60), _unit(-60), _unit(120)])
    labels = torch.tensor([0, 0, 1, 0])
    objective = build_objective(LossKind.CONTRASTIVE, MinerKind.NONE, margin=1.5)
    pairs = (torch.tensor([0, 1]), torch.tensor([1, 3]), torch.tensor([0, 3]), torch.tensor([2, 2]))
    loss = objective.loss(emb, labels, pairs)
    # pml averages the non-zero pos and neg terms separately, then sums: 1.0 + (1.5 - 1.0); the
    # negative beyond the margin contributes nothing
    assert loss.item() == pytest.approx(1.0 + 0.5, abs=1e-5)


def test_semihard_miner_keeps_only_negatives_inside_the_margin_band() -> None:
    # anchor 0°, positive 30° (d≈0.518); negatives at 35° (d≈0.601, semi-hard), 20° (hard), 120° (easy)
    emb = torch.tensor([_unit(0), _unit(30), _unit(35), _unit(20), _unit(120)])
    labels = torch.tensor([0, 0, 1, 2, 3])
    miner = build_miner(LossKind.TRIPLET, MinerKind.SEMIHARD, margin=0.2)
    assert miner is not None
    anchors, positives, negatives = miner(emb, labels)
    mined = {(int(a), int(p), int(n)) for a, p, n in zip(anchors, positives, negatives, strict=True)}
    assert (0, 1, 2) in mined
    assert (0, 1, 3) not in mined  # hard: closer than the positive
    assert (0, 1, 4) not in mined  # easy: beyond the margin


def test_batch_hard_miner_picks_the_farthest_positive_and_closest_negative() -> None:
    emb = torch.tensor([_unit(0), _unit(10), _unit(50), _unit(70), _unit(170)])
    labels = torch.tensor([0, 0, 0, 1, 1])
    miner = build_miner(LossKind.TRIPLET, MinerKind.HARD, margin=0.2)
    assert miner is not None
    anchors, positives, negatives = miner(emb, labels)
    first = [(int(p), int(n)) for a, p, n in zip(anchors, positives, negatives, strict=True) if int(a) == 0]
    assert first == [(2, 3)]


@pytest.mark.parametrize("loss", list(LossKind))
@pytest.mark.parametrize("miner", list(MinerKind))
def test_every_loss_and_miner_gives_a_finite_differentiable_loss(loss: LossKind, miner: MinerKind) -> None:
    torch.manual_seed(0)
    raw = torch.randn(32, 8, requires_grad=True)
    emb = torch.nn.functional.normalize(raw, dim=1)
    labels = torch.arange(8).repeat_interleave(4)
    value = build_objective(loss, miner, margin=0.3)(emb, labels)
    value.backward()
    assert torch.isfinite(value)
    assert raw.grad is not None
