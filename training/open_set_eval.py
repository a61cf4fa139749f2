"""Open-set identification trials on labelled embeddings: measured FPIR / FNIR at given thresholds.

A trial enrols N random identities (one random image each) and probes with every other image: images of
identities not enrolled measure the false positive identification rate (the nearest enrolled vector is
within the threshold), images of enrolled identities the false negative identification rate (their
nearest enrolled vector is not their own, or not within the threshold). Used by
`cli.bench.open_set` on Omniglot; nothing here is Omniglot-specific.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from training.calibration_quality import weighted_ece
from training.impostor_fit import pairwise_distances
from twinstream.model.calibration import ScoreCalibration
from twinstream.model.impostor import ImpostorModel
from twinstream.model.operating_point import identify_probability


@dataclass(frozen=True)
class Embedded:
    """Embeddings with the identity and the family (e.g. alphabet) of each row."""

    emb: np.ndarray
    labels: np.ndarray
    groups: np.ndarray

    def subset(self, keep: np.ndarray) -> Embedded:
        """The rows where ``keep`` is true."""
        return Embedded(self.emb[keep], self.labels[keep], self.groups[keep])

    def of_identities(self, identities: np.ndarray) -> Embedded:
        """The rows of the given identities."""
        return self.subset(np.isin(self.labels, identities))


@dataclass
class Tally:
    """Open-set counts of one thresholding rule over repeated galleries."""

    false_positives: int = 0
    nonmated: int = 0
    misses: int = 0
    mated: int = 0
    per_gallery_fpir: list[float] = field(default_factory=list)

    def add(self, false_positives: int, nonmated: int, misses: int, mated: int) -> None:
        self.false_positives += false_positives
        self.nonmated += nonmated
        self.misses += misses
        self.mated += mated
        self.per_gallery_fpir.append(false_positives / max(nonmated, 1))

    def summary(self) -> dict[str, float]:
        """FPIR (pooled over galleries) with its standard error across galleries, and FNIR."""
        reps = np.asarray(self.per_gallery_fpir)
        sem = float(reps.std(ddof=1) / math.sqrt(len(reps))) if len(reps) > 1 else float("nan")
        return {
            "fpir": self.false_positives / max(self.nonmated, 1),
            "fpir_sem": sem,
            "fnir": self.misses / max(self.mated, 1),
            "nonmated_probes": self.nonmated,
            "mated_probes": self.mated,
        }


@dataclass(frozen=True)
class Trials:
    """Results of `open_set_trials`: a tally per rule and the identify probability's calibration."""

    tallies: dict[str, Tally]
    identify_ece: float
    mean_p_top: float
    top_is_person: float


def _gallery(data: Embedded, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random identities and one random image index of each."""
    gallery_ids = rng.choice(np.unique(data.labels), n, replace=False)
    enrol = np.asarray([rng.choice(np.flatnonzero(data.labels == g)) for g in gallery_ids])
    return gallery_ids, enrol


def open_set_trials(
    data: Embedded,
    n: int,
    reps: int,
    thresholds: Mapping[str, float],
    cal: ScoreCalibration,
    seed: int = 0,
) -> Trials:
    """``reps`` galleries of ``n`` identities; every image not enrolled probes each of them.

    The identify probability p_N of the top candidate is scored against "the top candidate is the
    person" with enrolled and non-enrolled probes weighted 1:1 (the stated prior of being enrolled, 0.5).
    """
    rng = np.random.default_rng(seed)
    tallies = {name: Tally() for name in thresholds}
    p_all, right_all, w_all = [], [], []
    for _ in range(reps):
        gallery_ids, enrol = _gallery(data, n, rng)
        probe = np.ones(len(data.labels), bool)
        probe[enrol] = False
        d = pairwise_distances(data.emb[probe], data.emb[enrol])
        top, named = d.min(1), gallery_ids[d.argmin(1)]
        mated = np.isin(data.labels[probe], gallery_ids)
        right = named == data.labels[probe]
        for name, t in thresholds.items():
            found = right & (top <= t)
            tallies[name].add(
                int(np.sum(top[~mated] <= t)),
                int((~mated).sum()),
                int(np.sum(~found[mated])),
                int(mated.sum()),
            )
        p_all.append(identify_probability(cal, top, n))
        right_all.append(mated & right)
        w_all.append(np.where(mated, 0.5 / mated.sum(), 0.5 / (~mated).sum()))
    p, y, w = np.concatenate(p_all), np.concatenate(right_all), np.concatenate(w_all)
    return Trials(
        tallies, weighted_ece(p, y, w), float(np.average(p, weights=w)), float(np.average(y, weights=w))
    )


def thresholds_for(models: Mapping[str, ImpostorModel], fpir: float, n: int) -> dict[str, float]:
    """Each model's distance threshold for a target FPIR and gallery size."""
    return {name: model.threshold_at_fpir(fpir, n) for name, model in models.items()}
