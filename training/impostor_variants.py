"""Impostor-model variants, and choosing one by cross-fitting inside the validation identities.

A variant is a tail fit (`TailFit`), pooled or per-probe, and a way to treat the probe's own family
(`Families`). Which one to serve is decided on validation data only: fit on some validation identities,
measure open-set FPIR on galleries drawn from the others, score each variant by how far its measured
FPIR lands from the target (mean ``|ln(FPIR / target)|`` over gallery sizes and splits).

Two ways to split (`SplitBy`):

- ``IDENTITIES``: random halves of the identities; both halves hold every validation family, so the
  measured population is the fitted one. Blind to a change of population.
- ``FAMILIES``: fit on a few validation families, measure on the others — an unseen-family shift in the
  same direction as the real one (a smaller, less varied fitting population than the served one; the
  measured part has more families, so a smaller same-family share). ``SHARE`` variants are weighted to
  the measured part's share, as the final model is weighted to the served population's.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from training.impostor_fit import TailFit, family_share, fit_impostor_model
from training.open_set_eval import Embedded, open_set_trials, thresholds_for
from twinstream.model.calibration import ScoreCalibration
from twinstream.model.impostor import ImpostorModel


class Families(StrEnum):
    """How impostors of the probe's own family count."""

    ALL = "all"  # as they come (the fitting population's share)
    UNRELATED = "unrelated"  # left out
    SHARE = "share"  # weighted to a stated share (the served population's)


class SplitBy(StrEnum):
    """How validation is split to cross-fit (see the module docstring)."""

    IDENTITIES = "identities"
    FAMILIES = "families"


@dataclass(frozen=True, slots=True)
class Variant:
    """One way to fit the impostor model."""

    tail: TailFit = TailFit.PER_PROBE
    pooled: bool = False
    families: Families = Families.ALL

    @property
    def name(self) -> str:
        """Stable name in results: ``pooled``, ``mixture``, ``mixture-shared-tail/share`` …"""
        base = "pooled" if self.pooled else {
            TailFit.PER_PROBE: "mixture",
            TailFit.SHARED: "mixture-shared-tail",
            TailFit.SHRUNK: "mixture-shrunk-tail",
        }[self.tail]  # fmt: skip
        return base if self.families is Families.ALL else f"{base}/{self.families}"


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in [
        Variant(pooled=True),
        *(Variant(tail, families=f) for f in Families for tail in TailFit),
    ]
}


def fit_variants(
    data: Embedded, names: Sequence[str], probes: int, seed: int, share: float
) -> dict[str, ImpostorModel | ValueError]:
    """The named variants fit on ``data``; ``SHARE`` ones weighted to the family share ``share``.

    A variant that cannot be fit (too few impostors below the tail level) is its `ValueError`.
    """
    models: dict[str, ImpostorModel | ValueError] = {}
    for name in names:
        v = VARIANTS[name]
        groups = None if v.families is Families.ALL else data.groups
        try:
            models[name] = _fit(data, v, groups, probes, seed, share)
        except ValueError as exc:
            models[name] = exc
    return models


def fitted(models: dict[str, ImpostorModel | ValueError]) -> dict[str, ImpostorModel]:
    """The variants that could be fit."""
    return {name: m for name, m in models.items() if isinstance(m, ImpostorModel)}


def _fit(
    data: Embedded, v: Variant, groups: np.ndarray | None, probes: int, seed: int, share: float
) -> ImpostorModel:
    return fit_impostor_model(
        data.emb,
        data.labels,
        probes=probes,
        tail=v.tail,
        pooled=v.pooled,
        seed=seed,
        groups=groups,
        family_share=share if v.families is Families.SHARE else None,
    )


def identity_share(data: Embedded) -> float:
    """Same-family share of a population: the chance two of its identities share a family."""
    first = np.unique(data.labels, return_index=True)[1]
    return family_share(data.groups[first])


def _splits(data: Embedded, by: SplitBy, seed: int, draws: int, fit_families: int) -> Iterator[np.ndarray]:
    """Masks of the rows to fit on; the rest is measured."""
    rng = np.random.default_rng(seed)
    if by is SplitBy.IDENTITIES:
        ids = rng.permutation(np.unique(data.labels))
        half = np.isin(data.labels, ids[: len(ids) // 2])
        yield from (half, ~half)
        return
    families = np.unique(data.groups)
    for _ in range(draws):
        yield np.isin(data.groups, rng.permutation(families)[:fit_families])


@dataclass(frozen=True, slots=True)
class CrossFit:
    """How to cross-fit inside validation."""

    by: SplitBy = SplitBy.FAMILIES
    draws: int = 4  # family splits drawn (FAMILIES)
    fit_families: int = 3  # families fitted on per split (FAMILIES); the rest are measured
    reps: int = 20  # galleries per size


def select_on_validation(
    val: Embedded,
    names: Sequence[str],
    cal: ScoreCalibration,
    fpir: float,
    probes: int,
    seed: int,
    how: CrossFit = CrossFit(),
) -> dict[str, Any]:
    """Cross-fit every named variant inside validation; the chosen one lands closest to ``fpir``.

    Gallery sizes: 10, 100 and half of the measured identities (the other half stay strangers). A
    variant that cannot be fit on some split cannot be chosen (its score is infinite).
    """
    measured: dict[str, list[float]] = {name: [] for name in names}
    sizes: list[dict[str, Any]] = []
    for fit_rows in _splits(val, how.by, seed, how.draws, how.fit_families):
        fit, test = val.subset(fit_rows), val.subset(~fit_rows)
        share = identity_share(test)
        models = fitted(fit_variants(fit, names, probes, seed, share))
        half = len(np.unique(test.labels)) // 2
        for n in sorted({min(k, half) for k in (10, 100, half)}):
            trials = open_set_trials(test, n, how.reps, thresholds_for(models, fpir, n), cal, seed + n)
            for name in names:
                tally = trials.tallies.get(name)
                measured[name].append(tally.summary()["fpir"] if tally else math.nan)  # NaN: not fit
        sizes.append({"fit_identities": len(np.unique(fit.labels)), "measured_share": share, "max_n": half})
    score = {
        name: float(
            np.mean([abs(math.log(max(f, 1e-6) / fpir)) if not math.isnan(f) else math.inf for f in v])
        )
        for name, v in measured.items()
    }
    return {
        "split_by": str(how.by),
        "chosen": min(score, key=score.__getitem__),
        "mean_abs_log_ratio": score,
        "fpir_per_split_and_gallery_size": measured,
        "splits": sizes,
    }
