"""The training engine: checkpoint state resumes a run exactly, and training improves a tower."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from training.augment import augment, rotate_quarters
from training.config import TrainConfig
from training.datasets import load_dataset
from training.engine import Engine
from training.splits import Augmentation
from twinstream.model.tower import build_tower


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread: None) -> None:
    """Every test here runs torch on one thread (`tests.conftest.one_torch_thread`)."""


CFG = TrainConfig(dataset="digits", epochs=2, steps_per_epoch=3, augment=False, threads=1)


def _engine() -> Engine:
    torch.manual_seed(0)
    splits = load_dataset("digits", Path(), seed=0)
    return Engine(CFG, splits, build_tower("conv4", splits.spec, 16))


def test_resuming_from_checkpoint_state_reproduces_the_uninterrupted_run() -> None:
    straight = _engine()
    straight.train_epoch()
    straight.train_epoch()
    first = _engine()
    first.train_epoch()
    state = first.state_dict()
    resumed = _engine()
    resumed.load_state_dict(state)
    record = resumed.train_epoch()
    assert record.epoch == 2 and record.resumed
    assert resumed.finished()
    for key, value in straight.tower.state_dict().items():
        assert torch.allclose(value.float(), resumed.tower.state_dict()[key].float(), atol=1e-6), key


def test_epoch_records_report_loss_throughput_and_validation() -> None:
    engine = _engine()
    record = engine.train_epoch()
    assert record.loss >= 0 and record.images_per_s > 0
    assert 0.0 <= record.val_auc <= 1.0 and record.val_oneshot_ways == 2
    assert engine.history[-1]["epoch"] == 1.0


def test_augmentation_keeps_shapes_and_quarter_turns_rotate() -> None:
    x = torch.arange(16.0).reshape(1, 1, 4, 4).repeat(3, 1, 1, 1)
    turned = rotate_quarters(x, torch.tensor([0, 1, 2]))
    assert torch.equal(turned[0], x[0]) and torch.equal(turned[2], x[0].flip(-1).flip(-2))
    gen = torch.Generator().manual_seed(0)
    out = augment(torch.randn(5, 1, 16, 16), Augmentation(rotate_deg=10, translate=0.1, hflip=True), gen)
    assert out.shape == (5, 1, 16, 16) and torch.isfinite(out).all()


def test_time_budget_ends_training_early() -> None:
    splits = load_dataset("digits", Path(), seed=0)
    engine = Engine(CFG.with_(epochs=100, time_budget_s=1e-3), splits, build_tower("conv4", splits.spec, 16))
    engine.train_epoch()
    assert engine.finished()


@pytest.mark.parametrize("bad", [0, -1])
def test_config_refuses_non_positive_epochs(bad: int) -> None:
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=bad)


def test_time_budget_ends_training_under_ddp_when_epochs_are_shorter_than_the_check_spacing(
    tmp_path: Path,
) -> None:
    # Workers agree on the budget every 8 steps; a 3-step epoch must still stop (checked at its end).
    # A one-process gloo group stands in for the workers' (the engine is told it has two).
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'group'}", rank=0, world_size=1)
    try:
        splits = load_dataset("digits", Path(), seed=0)
        cfg = CFG.with_(epochs=100, time_budget_s=1e-3)
        engine = Engine(cfg, splits, build_tower("conv4", splits.spec, 16), rank=0, world_size=2)
        engine.train_epoch()
        assert engine.steps == 3 and engine.finished()
    finally:
        dist.destroy_process_group()
