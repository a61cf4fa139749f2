"""From a trained tower to a versioned artifact: calibrate on validation, evaluate on test, save.

Runs on the driver (after Ray Train) or in quick training; needs the splits' validation and test sets.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from training.calibrate import expected_calibration_error, fit_calibration, threshold_at_far
from training.config import TrainConfig
from training.datasets import DataSplits
from training.evaluate import (
    embed_images,
    evaluate_embeddings,
    official_runs_accuracy,
    roc_points,
    sample_pairs,
)
from training.figures import roc_png, training_curves_png
from twinstream.artifact import Calibration, Manifest, new_version, save_artifact
from twinstream.tower import set_test_time_shifts


def test_metrics(
    tower: nn.Module, splits: DataSplits, calibration: Calibration, threshold: float, seed: int = 0
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """All test metrics of a tower plus its thinned ROC curve, on the test identities."""
    emb = embed_images(tower, splits.test.images, splits.spec)
    metrics = evaluate_embeddings(emb, splits.test.labels, seed=seed)
    pairs = sample_pairs(emb, splits.test.labels, seed=seed + 1)
    probs = np.interp(pairs.distances, calibration.distances, calibration.probabilities)
    accepted = pairs.distances <= threshold
    metrics["ece"] = expected_calibration_error(probs, pairs.same)
    metrics["far_at_threshold"] = float(accepted[~pairs.same].mean())
    metrics["tar_at_threshold"] = float(accepted[pairs.same].mean())
    if splits.runs:
        metrics["official_20way"] = official_runs_accuracy(tower, splits.runs, splits.spec)
        shifts = set_test_time_shifts(tower, 0)
        try:
            if shifts:  # the same tower without test-time augmentation, for comparison
                metrics["official_20way_single_view"] = official_runs_accuracy(
                    tower, splits.runs, splits.spec
                )
        finally:
            set_test_time_shifts(tower, shifts)
    fpr, tpr = roc_points(pairs)
    return metrics, {"fpr": fpr, "tpr": tpr}


def split_classes_summary(splits: DataSplits, limit: int = 100) -> dict[str, list[str]]:
    """Which identities went to train / val / test (omitted for a part with more than ``limit``).

    Where identities are named ``family/identity`` (Omniglot's ``alphabet/character``), each part's
    families are listed too (``val_families`` …): they say how an artifact's split was made, which a
    later measurement on its validation identities must rebuild.
    """
    out = {}
    for part in ("train", "val", "test"):
        data = getattr(splits, part)
        names = sorted({data.class_names[int(c)] for c in np.unique(data.labels)})
        if len(names) <= limit:
            out[part] = names
        if names and all("/" in n for n in names):
            out[f"{part}_families"] = sorted({n.split("/")[0] for n in names})
    return out


def export_artifact(
    tower: nn.Module,
    splits: DataSplits,
    cfg: TrainConfig,
    history: Sequence[dict[str, float]],
    models_dir: Path,
    *,
    target_far: float = 1e-3,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Calibrate, evaluate and save ``tower`` as a new artifact version; returns its directory.

    The tower gets the run's test-time augmentation first, so calibration, test metrics and serving all
    see the same embeddings.
    """
    tower = getattr(tower, "module", tower)
    shifts = splits.test_time_shifts if cfg.test_time_shifts is None else cfg.test_time_shifts
    set_test_time_shifts(tower, shifts)
    tower.eval()
    val_pairs = sample_pairs(embed_images(tower, splits.val.images, splits.spec), splits.val.labels, cfg.seed)
    threshold = threshold_at_far(val_pairs, target_far)
    calibration = fit_calibration(val_pairs)
    metrics, roc = test_metrics(tower, splits, calibration, threshold, cfg.seed)
    manifest = Manifest(
        version=new_version(), architecture=cfg.architecture, input=splits.spec,
        embedding_dim=cfg.embedding_dim, threshold=threshold, target_far=target_far,
        calibration=calibration, metrics=metrics, dataset=splits.name, loss=str(cfg.loss),
        miner=str(cfg.miner), created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        test_time_shifts=shifts,
    )  # fmt: skip
    title = f"{splits.name} · {cfg.loss}/{cfg.miner}"
    figures = {
        "roc.png": roc_png(roc["fpr"], roc["tpr"], metrics["auc"], metrics["far_at_threshold"], title),
        "training_curves.png": training_curves_png(history, title),
    }
    detail = {
        "history": list(history), "roc": roc, "config": cfg.to_dict(),
        "classes": split_classes_summary(splits),
        **(extra or {}),
    }  # fmt: skip
    return save_artifact(tower, manifest, models_dir, figures=figures, extra_metrics=detail)
