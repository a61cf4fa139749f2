"""From a trained tower to a versioned artifact: calibrate on held-out identities, evaluate on unseen ones.

Runs on the driver (after Ray Train), in quick training, and for pretrained towers that are exported
without training. The validation identities (never trained on, distinct from the test ones) fit the
score calibration (method chosen by held-out log-loss) and the impostor model that maps a target FAR or
FPIR to a threshold; the test identities give every reported figure, the calibration error with its
bootstrap interval and the reliability diagram (``calibration.png``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from training.calibration import CalibrationFit, fit_score_calibration, sample_identity_pairs
from training.calibration_quality import ece_with_interval, reliability_png
from training.config import TrainConfig
from training.evaluate import (
    embed_images,
    evaluate_embeddings,
    official_runs_accuracy,
    roc_points,
    sample_pairs,
)
from training.figures import roc_png, training_curves_png
from training.impostor_fit import TailFit, family_share, fit_impostor_model
from training.splits import DataSplits
from twinstream.model.artifact import Manifest, new_version, save_artifact
from twinstream.model.calibration import ScoreCalibration
from twinstream.model.impostor import ImpostorModel
from twinstream.model.operating_point import verify_point
from twinstream.model.tower import set_test_time_shifts


@dataclass(frozen=True)
class Trained:
    """What a trainer (in-process or Ray Train) hands the export: the tower, its history, run facts."""

    tower: nn.Module
    history: list[dict[str, float]]
    extra: dict[str, Any]  # plain run facts for metrics.json (seconds, workers, what was frozen…)


def serving_view(tower: nn.Module, splits: DataSplits, cfg: TrainConfig) -> tuple[nn.Module, int]:
    """The bare tower in eval mode with the run's test-time shifts, as calibration, tests and serving
    see it; returns it and the shifts (0 for towers without test-time views)."""
    tower = getattr(tower, "module", tower)
    shifts = splits.test_time_shifts if cfg.test_time_shifts is None else cfg.test_time_shifts
    if hasattr(tower, "test_time_shifts"):
        set_test_time_shifts(tower, shifts)
    else:
        shifts = 0
    return tower.eval(), shifts


@dataclass(frozen=True)
class Calibrated:
    """What the validation identities give a tower: calibration, impostor model, verify threshold.

    ``fit`` says how the calibration was chosen (absent when it is read back from a manifest).
    """

    calibration: ScoreCalibration
    impostors: ImpostorModel
    threshold: float
    fit: CalibrationFit | None = None

    @classmethod
    def of(cls, manifest: Manifest) -> Calibrated:
        """What a saved artifact was calibrated with."""
        return cls(manifest.calibration, manifest.impostors, manifest.threshold)


def calibrate(
    tower: nn.Module,
    splits: DataSplits,
    target_far: float,
    seed: int = 0,
    val_embeddings: np.ndarray | None = None,
) -> Calibrated:
    """Fit calibration and impostor model on the validation identities; the threshold at ``target_far``.

    The impostor model keeps each probe's own distance scale but one tail exponent for all probes: per-probe
    tails, fitted on a few held-out identities each, describe those identities' look-alikes rather than a
    serving population (measured on Omniglot: per-probe tails were 5-10x too strict on unseen alphabets,
    the shared tail within ±40 % of the target FPIR at 10, 100 and 1,000 enrolled identities). Where
    identities nest in families (Omniglot's alphabets), a probe's own family weighs what it weighs among
    every identity of the data set, not what it weighs among the few held-out families.
    ``val_embeddings`` are the tower's embeddings of ``splits.val`` when the caller already has them.
    """
    emb = embed_images(tower, splits.val.images, splits.spec) if val_embeddings is None else val_embeddings
    fit = fit_score_calibration(sample_identity_pairs(emb, splits.val.labels, seed), seed=seed)
    families = _families(splits)
    impostors = fit_impostor_model(
        emb, splits.val.labels, tail=TailFit.SHARED, seed=seed,
        groups=None if families is None else families[splits.val.labels],
        family_share=None if families is None else family_share(families[_known_classes(splits)]),
    )  # fmt: skip
    threshold = verify_point(fit.calibration, impostors, target_far).threshold
    return Calibrated(fit.calibration, impostors, threshold, fit)


def _families(splits: DataSplits) -> np.ndarray | None:
    """Per class id, its family (``family/identity`` names), or None where classes have no family."""
    names = splits.val.class_names
    if not names or not all("/" in n for n in names):
        return None
    return np.asarray([n.split("/")[0] for n in names])


def _known_classes(splits: DataSplits) -> np.ndarray:
    """Every class id outside the test split (the population the model was trained and calibrated on)."""
    return np.unique(np.concatenate([splits.train.labels, splits.val.labels]))


#: A tower's test figures and its ROC and reliability data, as `test_metrics` returns them.
Tested = tuple[dict[str, float], dict[str, Any]]


def test_metrics(tower: nn.Module, splits: DataSplits, calibrated: Calibrated, seed: int = 0) -> Tested:
    """Every test figure of a tower on the test identities, plus its ROC and reliability data."""
    emb = embed_images(tower, splits.test.images, splits.spec)
    metrics = evaluate_embeddings(emb, splits.test.labels, seed=seed)
    pairs = sample_identity_pairs(emb, splits.test.labels, seed + 1)
    probs = calibrated.calibration.probability(pairs.distances)
    ece = ece_with_interval(probs, pairs, calibrated.calibration.prior, seed=seed)
    accepted = pairs.distances <= calibrated.threshold
    metrics |= {
        "ece": ece.value, "ece_low": ece.low, "ece_high": ece.high,
        "far_at_threshold": float(accepted[~pairs.same].mean()),
        "tar_at_threshold": float(accepted[pairs.same].mean()),
    }  # fmt: skip
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
    fpr, tpr = roc_points(sample_pairs(emb, splits.test.labels, seed + 1))
    return metrics, {"fpr": fpr, "tpr": tpr, "probabilities": probs, "same": pairs.same}


def _calibration_detail(calibrated: Calibrated) -> dict[str, Any]:
    fit = calibrated.fit
    if fit is None:
        return {"method": str(calibrated.calibration.method), "prior": calibrated.calibration.prior}
    return {
        "method": str(fit.calibration.method),
        "prior": fit.calibration.prior,
        "held_out_log_loss": {str(k): v for k, v in fit.log_loss.items()},
        "fitted_on": {"identities": fit.identities, "genuine_pairs": fit.genuine_pairs,
                      "impostor_pairs": fit.impostor_pairs, "impostor_probes": calibrated.impostors.probes},
    }  # fmt: skip


def export_artifact(
    tower: nn.Module,
    splits: DataSplits,
    cfg: TrainConfig,
    history: Sequence[dict[str, float]],
    models_dir: Path,
    *,
    target_far: float = 1e-3,
    extra: dict[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
    calibrated: Calibrated | None = None,
    tested: Tested | None = None,
    loss: str | None = None,
    miner: str | None = None,
) -> Path:
    """Calibrate, evaluate and save ``tower`` as a new artifact version; returns its directory.

    The tower gets the run's test-time augmentation first, so calibration, test metrics and serving all
    see the same embeddings. ``calibrated``, and ``tested`` with it, may be passed when the caller
    already fitted and measured the same serving view (`training.compare`); ``loss`` and ``miner`` name
    the recipe when it was not the config's (a pretrained tower).
    """
    if tested is not None and calibrated is None:
        raise ValueError("test figures were measured with a calibration: pass it too")
    tower, shifts = serving_view(tower, splits, cfg)
    calibrated = calibrated or calibrate(tower, splits, target_far, cfg.seed)
    metrics, curves = tested or test_metrics(tower, splits, calibrated, cfg.seed)
    manifest = Manifest(
        version=new_version(), architecture=cfg.architecture, input=splits.spec,
        embedding_dim=cfg.embedding_dim, threshold=calibrated.threshold, target_far=target_far,
        calibration=calibrated.calibration, impostors=calibrated.impostors, metrics=metrics,
        dataset=splits.name, loss=loss or str(cfg.loss), miner=miner or str(cfg.miner),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        test_time_shifts=shifts,
        provenance=dict(provenance or {}),
    )  # fmt: skip
    title = f"{splits.name} · {cfg.architecture} · {loss or cfg.loss}/{miner or cfg.miner}"
    figures = {
        "roc.png": roc_png(curves["fpr"], curves["tpr"], metrics["auc"], metrics["far_at_threshold"], title),
        "calibration.png": reliability_png(
            curves["probabilities"],
            curves["same"],
            f"unseen identities · {title}",
            calibrated.calibration.prior,
        ),
    }
    if history:
        figures["training_curves.png"] = training_curves_png(history, title)
    detail = {
        "history": list(history),
        "roc": {"fpr": curves["fpr"], "tpr": curves["tpr"]},
        "config": cfg.to_dict(),
        "classes": split_classes_summary(splits),
        "calibration": _calibration_detail(calibrated),
        **(extra or {}),
    }
    return save_artifact(tower, manifest, models_dir, figures=figures, extra_metrics=detail)


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
