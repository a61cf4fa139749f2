"""A fine-tune against what it started from and against training from scratch: one evaluation, one winner.

A run that fine-tunes a pretrained tower assesses, on the same identities and with the same code, three
contenders: the pretrained tower alone, the fine-tuned tower, and a Conv-4 trained from scratch for
``baseline_budget_s`` seconds on its own input (the data set's 56×46 grey crops rather than face chips).
Each is calibrated on the validation identities (`training.export.calibrate`) and measured there
(`evaluate_embeddings` plus the calibration's held-out log-loss) and on the test identities
(`training.export.test_metrics`).

The artifact ships the contender that wins on the validation identities; the test identities never
choose. The criterion, in order: lower validation EER; then higher validation one-shot accuracy over
every enrolment; then higher validation d′ (`training.evaluate.decidability`: continuous, so it settles
the ties that a handful of validation identities leaves on the first two when both towers separate them
perfectly; the calibration's held-out log-loss is no help there, it is ~0 for every perfect separation);
a tie on all three goes to the earlier contender (pretrained, fine-tuned, Conv-4).
``metrics.json`` records every contender's figures under ``comparison`` and the winner under ``shipped``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from training.config import CONV4, TrainConfig
from training.evaluate import embed_images, evaluate_embeddings
from training.export import Calibrated, Trained, calibrate, export_artifact, serving_view, test_metrics
from training.splits import DataSplits

#: What chooses the shipped tower, in order (recorded in metrics.json as ``selection``).
CRITERION = (
    "lower validation eer",
    "higher validation oneshot_<n>way_every_enrolment",
    "higher validation d_prime",
)
EVERY_ENROLMENT_SUFFIX = "_every_enrolment"


class Contender(StrEnum):
    """The towers a fine-tuning run compares."""

    PRETRAINED = "pretrained"
    FINE_TUNED = "fine-tuned"
    CONV4_SCRATCH = "conv4-scratch"


@dataclass(frozen=True)
class Entry:
    """A contender ready to assess: its tower and run, the splits it reads, the recipe it records."""

    name: Contender
    recipe: str  # how the tower came to be, in words (metrics.json)
    trained: Trained
    splits: DataSplits
    cfg: TrainConfig
    loss: str | None = None  # the recipe's label when it is not the config's (the pretrained tower)
    miner: str | None = None
    provenance: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Assessment:
    """An entry's calibration (validation identities) and its validation and test figures."""

    entry: Entry
    calibrated: Calibrated
    validation: dict[str, float]
    test: dict[str, float]
    curves: dict[str, Any]  # the test identities' ROC and reliability data, for the winner's figures

    def rank(self) -> tuple[float, float, float]:
        """Sort key of the criterion: smaller is better."""
        every = [v for k, v in self.validation.items() if k.endswith(EVERY_ENROLMENT_SUFFIX)]
        return self.validation["eer"], -(every[0] if every else 0.0), -self.validation["d_prime"]

    def record(self) -> dict[str, Any]:
        """Plain figures for metrics.json."""
        return {
            "architecture": self.entry.cfg.architecture, "recipe": self.entry.recipe,
            "run": self.entry.trained.extra, "history": self.entry.trained.history,
            "calibration": str(self.calibrated.calibration.method), "threshold": self.calibrated.threshold,
            "validation": self.validation, "test": self.test,
        }  # fmt: skip


def assess(entry: Entry, target_far: float) -> Assessment:
    """Calibrate ``entry`` on its validation identities; its figures there and on the test identities."""
    tower, _ = serving_view(entry.trained.tower, entry.splits, entry.cfg)
    seed = entry.cfg.seed
    val = entry.splits.val
    val_embeddings = embed_images(tower, val.images, entry.splits.spec)  # once: calibration and figures
    calibrated = calibrate(tower, entry.splits, target_far, seed, val_embeddings)
    validation = evaluate_embeddings(val_embeddings, val.labels, seed)
    if calibrated.fit is not None and calibrated.fit.log_loss:
        validation["calibration_log_loss"] = min(calibrated.fit.log_loss.values())
    test, curves = test_metrics(tower, entry.splits, calibrated, seed)
    return Assessment(entry, calibrated, validation, test, curves)


def choose(assessments: list[Assessment]) -> Assessment:
    """The winner by `CRITERION` on the validation identities (ties: the earliest in the list)."""
    return min(assessments, key=Assessment.rank)


def baseline_config(cfg: TrainConfig) -> TrainConfig:
    """The Conv-4 from scratch a fine-tune is compared with: the data set's own recipe, same objective."""
    return cfg.with_(
        architecture=CONV4, embedding_dim=0, lr=0.0, pretrained=False, freeze="none", epochs=1000,
        time_budget_s=cfg.baseline_budget_s, steps_per_epoch=0, classes_per_batch=0,
        samples_per_class=0, val_every=5, test_time_shifts=None, baseline_budget_s=0.0,
    )  # fmt: skip


#: Trains a config with the run's own trainer (in-process or Ray Train); returns the tower and its splits.
Trainer = Callable[[TrainConfig], tuple[Trained, DataSplits]]


def contenders(fine_tuned: Trained, splits: DataSplits, cfg: TrainConfig, train: Trainer) -> list[Entry]:
    """The pretrained tower, the fine-tuned one and (when ``cfg.baseline_budget_s``) a Conv-4 trained
    now by ``train``; in the order that settles full ties."""
    from training.pretrained import PRETRAINED_LOSS, face_config, face_provenance, pretrained_face_tower

    base = face_provenance()
    tuned = {"dataset": splits.name, "freeze": cfg.freeze, "loss": str(cfg.loss), "miner": str(cfg.miner)}
    untouched = Trained(pretrained_face_tower(), [], {"train_seconds": 0.0})
    entries = [
        Entry(Contender.PRETRAINED, "published weights, no training", untouched, splits,
              face_config(cfg.dataset, cfg.data_path, cfg.seed), PRETRAINED_LOSS, "none", base),
        Entry(Contender.FINE_TUNED, f"published weights fine-tuned, frozen: {cfg.freeze}", fine_tuned,
              splits, cfg, provenance={**base, "fine_tuned": tuned}),
    ]  # fmt: skip
    if cfg.baseline_budget_s > 0:
        scratch_cfg = baseline_config(cfg)
        scratch, scratch_splits = train(scratch_cfg)
        recipe = f"random weights trained for {cfg.baseline_budget_s:g} s"
        entries.append(Entry(Contender.CONV4_SCRATCH, recipe, scratch, scratch_splits, scratch_cfg))
    return entries


def export_compared(
    fine_tuned: Trained,
    splits: DataSplits,
    cfg: TrainConfig,
    models_dir: Path,
    train: Trainer,
    target_far: float = 1e-3,
) -> Path:
    """Assess every contender, export the winner on the validation identities with the comparison
    recorded in metrics.json; returns the artifact directory."""
    assessed = [assess(entry, target_far) for entry in contenders(fine_tuned, splits, cfg, train)]
    winner = choose(assessed)
    entry = winner.entry
    extra = {
        **entry.trained.extra,
        "comparison": {str(a.entry.name): a.record() for a in assessed},
        "shipped": str(entry.name),
        "selection": {"on": "validation identities", "criterion": list(CRITERION),
                      "ties": "earliest of " + ", ".join(str(a.entry.name) for a in assessed)},
    }  # fmt: skip
    return export_artifact(
        entry.trained.tower, entry.splits, entry.cfg, entry.trained.history, models_dir,
        target_far=target_far, extra=extra, provenance=entry.provenance, calibrated=winner.calibrated,
        tested=(winner.test, winner.curves), loss=entry.loss, miner=entry.miner,
    )  # fmt: skip


def export_run(
    trained: Trained,
    splits: DataSplits,
    cfg: TrainConfig,
    models_dir: Path,
    train: Trainer,
    target_far: float = 1e-3,
) -> Path:
    """Export a run's tower: compared and chosen when the run fine-tunes a pretrained one, else as is."""
    if cfg.pretrained:
        return export_compared(trained, splits, cfg, models_dir, train, target_far)
    return export_artifact(
        trained.tower, splits, cfg, trained.history, models_dir, target_far=target_far, extra=trained.extra
    )
