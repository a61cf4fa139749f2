"""Servable artifacts of pretrained towers, without training: dlib's face ResNet, calibrated on faces.

`twinstream models pretrained face --out DIR` writes one. The network's weights are parsed from the
installed ``face-recognition-models`` package (no download, no C++); the manifest records their provenance
and licence. It has never seen the data set's people, so it is calibrated on every identity outside the
test split, and every figure comes from the test identities, as for a trained tower.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from training.config import TrainConfig
from training.datasets import load_dataset
from training.export import export_artifact
from training.faces import default_cache_dir, face_splits
from training.splits import DataSplits, ImageSet
from twinstream.config import FacesSettings
from twinstream.model.face_resnet import EMBEDDING_DIM, FaceResNet, load_face_resnet
from twinstream.model.provenance import (
    FACE_RESNET_FILE,
    SHAPE_PREDICTOR_5_FILE,
    packaged_model_path,
    weights_provenance,
)
from twinstream.model.tower import FACE_RESNET

PRETRAINED_LOSS = "dlib metric loss (pretrained)"


def pretrained_face_tower() -> FaceResNet:
    """dlib's face ResNet with its published weights, from the installed package, in eval mode."""
    return load_face_resnet(packaged_model_path(FACE_RESNET_FILE)).eval()


def face_provenance() -> dict[str, object]:
    """Where every weight file of a face artifact comes from, and under which licence."""
    return {
        "tower": weights_provenance(packaged_model_path(FACE_RESNET_FILE)),
        "landmarks": weights_provenance(packaged_model_path(SHAPE_PREDICTOR_5_FILE)),
    }


def _merged(a: ImageSet, b: ImageSet) -> ImageSet:
    return ImageSet([*a.images, *b.images], np.concatenate([a.labels, b.labels]), a.class_names)


def calibration_splits(splits: DataSplits) -> DataSplits:
    """For a tower that never trained on the set: calibrate on every identity outside the test split."""
    return replace(splits, val=_merged(splits.train, splits.val))


def face_config(dataset: str, data_dir: Path, seed: int = 0) -> TrainConfig:
    """The recipe a face artifact records (the tower's own input and size; no training, so nothing is
    frozen and nothing compared)."""
    return TrainConfig(
        dataset=dataset, data_dir=str(data_dir), architecture=FACE_RESNET, embedding_dim=EMBEDDING_DIM,
        epochs=1, seed=seed, test_time_shifts=0, freeze="none", baseline_budget_s=0.0,
    )  # fmt: skip


def export_pretrained_face(
    data_dir: Path,
    models_dir: Path,
    *,
    dataset: str = "att-faces",
    seed: int = 0,
    target_far: float = 1e-3,
    faces: FacesSettings | None = None,
    cache_dir: Path | None = None,
) -> Path:
    """Calibrate dlib's face ResNet on ``dataset``'s non-test identities, evaluate it on the test ones, and
    save it as a servable artifact; returns its directory."""
    splits = face_splits(load_dataset(dataset, data_dir, seed), faces, cache_dir or default_cache_dir())
    return export_artifact(
        pretrained_face_tower(), calibration_splits(splits), face_config(dataset, data_dir, seed), [],
        models_dir, target_far=target_far, provenance=face_provenance(), loss=PRETRAINED_LOSS, miner="none",
    )  # fmt: skip
