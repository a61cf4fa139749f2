"""What a run starts from: its data as the tower sees it, and its tower (published weights, stages frozen).

The face tower trains on aligned face chips (`training.faces`, cached on disk, so Ray workers on the
driver's machine read the chips the driver cut) and starts from dlib's published weights with the
``freeze`` stages fixed (`training.freeze`); every other architecture starts from random weights on the
data set's own input. Ray workers, in-process training and the comparison all build towers here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from training.config import TrainConfig
from training.datasets import load_dataset
from training.freeze import FreezeSpec, freeze_stages, stage_of
from training.splits import DataSplits
from twinstream.config import FacesSettings
from twinstream.images.preprocess import InputSpec
from twinstream.model.tower import FACE_RESNET, build_tower


def splits_for(
    cfg: TrainConfig,
    with_test: bool = True,
    faces: FacesSettings | None = None,
    cache_dir: Path | None = None,
) -> DataSplits:
    """``cfg``'s data set, as face chips for the face tower (cut once, then read from the cache).

    Args:
        cfg: The run (its data set, seed and architecture).
        with_test: Omniglot only: skip reading the evaluation set (training workers don't need it).
        faces: Face finder settings (default: `FacesSettings()`, what serving uses unless configured).
        cache_dir: Where chips are cached (default: `training.faces.default_cache_dir`).
    """
    splits = load_dataset(cfg.dataset, cfg.data_path, cfg.seed, with_test=with_test)
    if cfg.architecture != FACE_RESNET:
        return splits
    from training.faces import default_cache_dir, face_splits  # dlib: only face runs need it

    return face_splits(splits, faces, cache_dir or default_cache_dir())


def initial_tower(cfg: TrainConfig, spec: InputSpec) -> nn.Module:
    """``cfg``'s tower in channels-last layout: published weights and frozen stages for a pretrained one.

    Raises:
        training.freeze.FreezeError: ``cfg.freeze`` freezes stages of a tower that has none.
    """
    if cfg.pretrained:
        from training.pretrained import pretrained_face_tower

        tower: nn.Module = pretrained_face_tower().train()
    else:
        tower = build_tower(cfg.architecture, spec, cfg.embedding_dim)
    tower = tower.to(memory_format=torch.channels_last)
    freeze_stages(tower, FreezeSpec.parse(cfg.freeze))
    return tower


def freeze_summary(cfg: TrainConfig, tower: nn.Module) -> dict[str, Any]:
    """What ``cfg`` starts ``tower`` from and how much of it trains, as plain values for metrics.json."""
    stages = FreezeSpec.parse(cfg.freeze).stages
    frozen = trainable = 0
    for name, parameter in getattr(tower, "module", tower).named_parameters():
        if stages and stage_of(name) in stages:
            frozen += parameter.numel()
        else:
            trainable += parameter.numel()
    return {"pretrained": cfg.pretrained, "freeze": cfg.freeze, "frozen_stages": list(stages),
            "frozen_parameters": frozen, "trainable_parameters": trainable}  # fmt: skip
