"""Fitting the serving-side impostor model (`twinstream.model.impostor`) on held-out identities.

A few hundred probe images (one per identity, drawn at random) are each compared with every image of the
other held-out identities. Each probe keeps its distances at shared CDF levels and a power-law lower
tail fitted by the Hill maximum-likelihood estimator: if ``F(t) = F(u) · (t/u)^α`` below ``u``, the
``k`` distances below ``u`` satisfy ``ln(u / d_i) ~ Exponential(α)``, so ``α̂ = k / Σ ln(u / d_i)``.

Two ways to fit the exponent: each probe its own (`TailFit.PER_PROBE`, the default; right when every
probe has a few hundred tail points from a population like the deployment's) or one shared by all
probes, each keeping its own scale (`TailFit.SHARED`; steadier with few points, blind to probes whose
tails really differ). `cli.bench.open_set` measures both.

A third (`TailFit.SHRUNK`, `training.tail_exponent`) sits between them: each probe's exponent is
shrunk toward the probes' mean by as much as its noise explains, the noise counted in identities
(clusters of images), not images. Why it matters: FPIR at a large gallery is a mean over probes of
``1 - (1 - F_p)^N`` far below the fitted level, where a probe whose exponent came out too small by
chance dominates the mean, so noisy exponents make thresholds too strict; and a small validation set
has per-probe tails of one or two identities (149 characters: a level of 0.01 is 1.5 identities).

``groups`` (optional) names a family per image (Omniglot's alphabets). Two uses:

- ``family_share=None`` with groups: impostors of the probe's own family are left out (unrelated
  identities only);
- ``family_share=r``: every impostor counts, weighted so that the probe's own family carries ``r`` of
  its impostor mass. A validation split of few families is rich in relatives (Omniglot's 5 validation
  alphabets: a fifth of all impostors share the probe's alphabet, against a twentieth in the 20
  evaluation alphabets); weighting states the fit for a population of another family structure — ``r``
  the chance that two random identities of that population share a family (`family_share`), e.g. of
  all 30 background alphabets. Quantiles and the Hill tail are then weighted (the weighted ECDF; the
  Hill MLE with weights, ``α̂ = Σ w_i / Σ w_i ln(u / d_i)``, its noise from the effective count
  ``(Σ w)² / Σ w²``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from training.tail_exponent import HillEstimate, hill, pooled_exponent, shrunk_exponents
from twinstream.model.impostor import ImpostorModel

#: CDF levels stored per probe; the first is where the fitted tail takes over.
DEFAULT_LEVELS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
DEFAULT_PROBES = 400
_MIN_TAIL_POINTS = 10
_TINY = 1e-6  # keeps quantiles positive where an impostor duplicates the probe (d = 0)


class TailFit(StrEnum):
    """Whose points fit the power-law exponent."""

    PER_PROBE = "per-probe"  # each probe its own α_p
    SHARED = "shared"  # one α for all probes (pooled Hill estimate), each probe its own scale
    SHRUNK = "shrunk"  # each probe's α_p shrunk toward the probes' mean by empirical Bayes


@dataclass(frozen=True)
class ProbeRow:
    """One probe's impostor distances, sorted, each with its weight and identity (``None``: unknown).

    Weights ``None``: all equal. Identities ``None``: every distance counts as its own identity.
    """

    distances: np.ndarray
    weights: np.ndarray | None = None
    identities: np.ndarray | None = None


def family_share(families: np.ndarray) -> float:
    """Chance that two distinct random identities share a family, given each identity's family."""
    n = np.unique(families, return_counts=True)[1].astype(np.float64)
    total = n.sum()
    return float(np.sum(n * (n - 1)) / (total * (total - 1))) if total > 1 else 0.0


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances (len(a), len(b)) in float64, without building the difference tensor."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    sq = (a64 * a64).sum(1)[:, None] + (b64 * b64).sum(1)[None, :] - 2.0 * a64 @ b64.T
    return np.sqrt(np.maximum(sq, 0.0))


def choose_probes(labels: np.ndarray, probes: int, seed: int = 0) -> np.ndarray:
    """Indices of ``probes`` images (at most every image), one per identity while identities last.

    Identities are visited in a random order, round after round, each giving one image not yet taken;
    an identity whose images are all taken drops out.
    """
    rng = np.random.default_rng(seed)
    pools = {
        int(label): list(rng.permutation(np.flatnonzero(labels == label))) for label in np.unique(labels)
    }
    order = [int(label) for label in rng.permutation(list(pools))]
    out: list[int] = []
    while len(out) < probes and order:
        for label in list(order):
            if len(out) == probes:
                break
            out.append(int(pools[label].pop()))
            if not pools[label]:
                order.remove(label)
    return np.asarray(out, np.int64)


def _level_indices(levels: Sequence[float], m: int) -> np.ndarray:
    idx = np.clip(np.ceil(np.asarray(levels) * m).astype(np.int64) - 1, 0, m - 1)
    if idx[0] < _MIN_TAIL_POINTS:
        raise ValueError(
            f"tail level {levels[0]} leaves {idx[0]} of {m} impostor distances below it; "
            f"at least {_MIN_TAIL_POINTS} are needed"
        )
    return idx


def _strictly_increasing(row: np.ndarray) -> np.ndarray:
    out = row.copy()
    for j in range(1, len(out)):
        out[j] = max(out[j], np.nextafter(out[j - 1], np.inf))
    return out


def _weighted_level_indices(weights: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """Per level, the first distance where the weighted ECDF reaches it (unweighted: `_level_indices`)."""
    cdf = np.cumsum(weights) / weights.sum()
    idx = np.minimum(np.searchsorted(cdf, np.asarray(levels) * (1 - 1e-12)), len(weights) - 1)
    tail = weights[: idx[0]]
    points = tail.sum() ** 2 / max(float(np.sum(tail * tail)), 1e-300)
    if points < _MIN_TAIL_POINTS:
        raise ValueError(f"tail level {levels[0]} leaves {points:.1f} effective impostor distances below it")
    return idx


def _fit_probe(row: ProbeRow, levels: Sequence[float]) -> tuple[np.ndarray, HillEstimate]:
    d, w = row.distances, row.weights
    if w is None:
        idx = _level_indices(levels, len(d))
    else:
        w = w * (len(w) / w.sum())  # mean one: the tail's mass reads as a count
        idx = _weighted_level_indices(w, levels)
    return _strictly_increasing(np.maximum(d[idx], _TINY)), hill(d, int(idx[0]), w, row.identities)


def _exponents(tails: Sequence[HillEstimate], tail: TailFit) -> np.ndarray:
    if tail is TailFit.SHARED:
        return np.full(len(tails), pooled_exponent(tails))
    if tail is TailFit.SHRUNK:
        return shrunk_exponents(tails)
    return np.asarray([e.alpha for e in tails])


def model_from_sorted(
    rows: Sequence[np.ndarray | ProbeRow],
    levels: Sequence[float] = DEFAULT_LEVELS,
    tail: TailFit = TailFit.PER_PROBE,
) -> ImpostorModel:
    """An impostor model from each probe's sorted impostor distances (one row per probe)."""
    probe_rows = [r if isinstance(r, ProbeRow) else ProbeRow(r) for r in rows]
    fits = [_fit_probe(r, levels) for r in probe_rows]
    alphas = _exponents([tail_fit for _, tail_fit in fits], tail)
    return ImpostorModel(
        levels=tuple(float(x) for x in levels),
        quantiles=tuple(tuple(float(x) for x in q) for q, _ in fits),
        tail_exponents=tuple(float(a) for a in alphas),
        comparisons=int(min(len(r.distances) for r in probe_rows)),
    )


def family_weights(same_family: np.ndarray, share: float) -> np.ndarray | None:
    """Weights giving the probe's own family ``share`` of the impostor mass (None if it has none)."""
    n_same = int(same_family.sum())
    if n_same == 0 or n_same == len(same_family):
        return None
    return np.where(same_family, share / n_same, (1.0 - share) / (len(same_family) - n_same))


def probe_impostor_distances(
    emb: np.ndarray,
    labels: np.ndarray,
    probes: int = DEFAULT_PROBES,
    seed: int = 0,
    groups: np.ndarray | None = None,
    family_share: float | None = None,
) -> list[ProbeRow]:
    """For each chosen probe, its sorted distances to every image of another identity.

    With ``groups``: only other families' images (``family_share=None``), or every impostor weighted so
    that the probe's own family carries ``family_share`` of the mass.
    """
    if family_share is not None and (groups is None or not 0 <= family_share < 1):
        raise ValueError("family_share needs groups and a share in [0, 1)")
    idx = choose_probes(labels, probes, seed)
    rows = []
    for start in range(0, len(idx), 64):
        block = idx[start : start + 64]
        d = pairwise_distances(emb[block], emb)
        for r, i in enumerate(block):
            impostor = labels != labels[i]
            if groups is not None and family_share is None:
                impostor &= groups != groups[i]
            order = np.argsort(d[r][impostor])
            weights = None
            if groups is not None and family_share is not None:
                weights = family_weights((groups[impostor] == groups[i])[order], family_share)
            rows.append(ProbeRow(d[r][impostor][order], weights, labels[impostor][order]))
    return rows


def fit_impostor_model(
    emb: np.ndarray,
    labels: np.ndarray,
    probes: int = DEFAULT_PROBES,
    levels: Sequence[float] = DEFAULT_LEVELS,
    tail: TailFit = TailFit.PER_PROBE,
    pooled: bool = False,
    seed: int = 0,
    groups: np.ndarray | None = None,
    family_share: float | None = None,
) -> ImpostorModel:
    """Fit the impostor model on embeddings of held-out identities.

    Args:
        emb: (n, D) L2-normalised embeddings.
        labels: Identity of each row.
        probes: How many probe images (one per identity while identities last).
        levels: CDF levels stored per probe, increasing to 1.0; the first starts the fitted tail.
        tail: Per-probe, shared or shrunk tail exponent.
        pooled: One pooled CDF of all probes' impostor distances (the plain independence model that
            ``1 - (1 - F(t))^N`` assumes; unweighted). Also used, whatever is asked, when the held-out
            set is too small for per-probe tails (fewer than 10 impostor distances of a probe below the
            first level: a few held-out identities, as digits' or AT&T's validation).
        seed: Seeds the choice of probes.
        groups: Family of each row (identities nest in families). ``None``: every other identity is an
            impostor, equally weighted.
        family_share: With ``groups``: the share of impostor mass the probe's own family carries in the
            population the model describes (``None``: the probe's family is left out).
    """
    rows = probe_impostor_distances(emb, labels, probes, seed, groups, family_share)
    if pooled or min(len(r.distances) for r in rows) * levels[0] < _MIN_TAIL_POINTS:
        rows = [ProbeRow(np.sort(np.concatenate([r.distances for r in rows])))]  # identities unknown
    return model_from_sorted(rows, levels, tail)
