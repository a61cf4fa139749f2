"""Freezing stages of the face tower: which parameters train for each --freeze, and frozen ones stay put."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from training.config import MinerKind, TrainConfig
from training.engine import Engine
from training.freeze import STAGES, FreezeError, FreezeSpec, freeze_stages, stage_of
from training.splits import Augmentation, DataSplits, ImageSet
from twinstream.model.face_resnet import LEVELS, FaceResNet, face_input_spec
from twinstream.model.tower import build_tower


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread: None) -> None:
    """Every test here runs torch on one thread (`tests.conftest.one_torch_thread`)."""


@pytest.fixture(scope="module")
def tower() -> FaceResNet:
    torch.manual_seed(0)
    return FaceResNet(channels_last=True)


def _trainable_stages(tower: FaceResNet) -> set[str]:
    return {stage_of(n) for n, p in tower.named_parameters() if p.requires_grad}


@pytest.mark.parametrize(
    ("spec", "trainable"),
    [
        ("none", set(STAGES)),
        ("levels:0", set(STAGES) - {"stem"}),
        ("levels:3", {"level256a", "level256b", "fc"}),
        ("levels:4", {"level256b", "fc"}),
        ("levels:5", {"fc"}),
        ("stem,level64", set(STAGES) - {"stem", "level64"}),
        (" FC , level256b ", set(STAGES) - {"fc", "level256b"}),
    ],
)
def test_each_freeze_spec_leaves_exactly_the_other_stages_trainable(
    tower: FaceResNet, spec: str, trainable: set[str]
) -> None:
    frozen = freeze_stages(tower, FreezeSpec.parse(spec))
    assert _trainable_stages(tower) == trainable
    assert {stage_of(n) for n in frozen} == set(STAGES) - trainable
    assert not any(p.requires_grad for n, p in tower.named_parameters() if n in frozen)


def test_stages_cover_every_parameter_and_follow_the_residual_levels(tower: FaceResNet) -> None:
    by_stage: dict[str, int] = {}
    for name, _ in tower.named_parameters():
        by_stage[stage_of(name)] = by_stage.get(stage_of(name), 0) + 1
    assert tuple(by_stage) == STAGES
    # Four parameterised layers (2 convs, 2 affines) of 2 tensors each per residual block.
    assert [by_stage[s] for s in STAGES[1:-1]] == [8 * blocks for _, blocks, _ in LEVELS]


@pytest.mark.parametrize("bad", ["levels:6", "levels:-1", "levels:x", "trunk", "", ",".join(STAGES)])
def test_bad_specs_are_refused_with_the_accepted_forms(bad: str) -> None:
    with pytest.raises(FreezeError):
        FreezeSpec.parse(bad)


def test_a_conv4_tower_has_no_stages_to_freeze() -> None:
    conv4 = build_tower("conv4", face_input_spec(), 16)
    assert freeze_stages(conv4, FreezeSpec.parse("none")) == ()
    with pytest.raises(FreezeError, match="FaceResNet only"):
        freeze_stages(conv4, FreezeSpec.parse("levels:4"))


def _chips(n_classes: int = 4, per_class: int = 4) -> ImageSet:
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (150, 150, 3), dtype=np.uint8)) for _ in
              range(n_classes * per_class)]  # fmt: skip
    labels = np.repeat(np.arange(n_classes), per_class)
    return ImageSet(images, labels, tuple(f"p{i}" for i in range(n_classes)))


def test_a_training_step_changes_trainable_weights_and_leaves_frozen_ones_bit_identical() -> None:
    torch.manual_seed(0)
    tower = FaceResNet(channels_last=True)
    with torch.no_grad():  # non-trivial affines, so a frozen stage that moved would show
        for p in tower.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    freeze_stages(tower, FreezeSpec.parse("levels:4"))
    before = {n: p.detach().clone() for n, p in tower.named_parameters()}
    data = _chips()
    aug = Augmentation(rotate_deg=4, hflip=True)
    splits = DataSplits("chips", face_input_spec(), data, data, data, aug, (4, 4))
    cfg = TrainConfig(dataset="chips", architecture="dlib-face-resnet-v1", epochs=1, steps_per_epoch=2,
                      lr=1e-2, miner=MinerKind.NONE, threads=1, baseline_budget_s=0)  # fmt: skip
    engine = Engine(cfg, splits, tower)
    engine.train_epoch()
    for name, p in tower.named_parameters():
        if stage_of(name) in ("level256b", "fc"):
            assert not torch.equal(p, before[name]), f"{name} should have trained"
        else:
            assert p.grad is None and torch.equal(p, before[name]), f"{name} should be frozen"
    trained_ids = {id(p) for group in engine.optimizer.param_groups for p in group["params"]}
    assert trained_ids == {id(p) for p in tower.parameters() if p.requires_grad}
