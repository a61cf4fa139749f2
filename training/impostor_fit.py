"""Fitting the serving-side impostor model (`twinstream.model.impostor`) on held-out identities.

A few hundred probe images (one per identity, drawn at random) are each compared with every image of the
other held-out identities. Each probe keeps its distances at shared CDF levels and a power-law lower
tail fitted by the Hill maximum-likelihood estimator: if ``F(t) = F(u) · (t/u)^α`` below ``u``, the
``k`` distances below ``u`` satisfy ``ln(u / d_i) ~ Exponential(α)``, so ``α̂ = k / Σ ln(u / d_i)``.

Two ways to fit the exponent: each probe its own (`TailFit.PER_PROBE`, the default; right when every
probe has a few hundred tail points from a population like the deployment's) or one shared by all
probes, each keeping its own scale (`TailFit.SHARED`; steadier with few points, blind to probes whose
tails really differ). scripts/measure_open_set.py measures both.

``groups`` (optional) names a family per image (Omniglot's alphabets): impostors of the probe's own
family are then left out and the model describes unrelated identities only. A validation split of few
families is rich in relatives (Omniglot's 5 validation alphabets: a fifth of all impostors share the
probe's alphabet, against a twentieth in the 20 evaluation alphabets); leaving them out is one way to
describe a larger, more varied population, measured in scripts/measure_open_set.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

import numpy as np

from twinstream.model.impostor import ImpostorModel

#: CDF levels stored per probe; the first is where the fitted tail takes over.
DEFAULT_LEVELS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
DEFAULT_PROBES = 400
_MIN_TAIL_POINTS = 10
_TINY = 1e-6  # exact duplicates (d = 0) would make the tail exponent 0


class TailFit(StrEnum):
    """Whose points fit the power-law exponent."""

    PER_PROBE = "per-probe"  # each probe its own α_p
    SHARED = "shared"  # one α for all probes (pooled Hill estimate), each probe its own scale


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


def _tail_sums(sorted_d: np.ndarray, k: int) -> float:
    """Σ ln(u / d_i) over the k smallest distances, u the (k+1)-th smallest."""
    return float(np.sum(np.log(sorted_d[k] / np.maximum(sorted_d[:k], _TINY))))


def _exponents(k: np.ndarray, s: np.ndarray, tail: TailFit) -> np.ndarray:
    return k / s if tail is TailFit.PER_PROBE else np.full(len(k), k.sum() / s.sum())


def model_from_sorted(
    rows: Sequence[np.ndarray], levels: Sequence[float] = DEFAULT_LEVELS, tail: TailFit = TailFit.PER_PROBE
) -> ImpostorModel:
    """An impostor model from each probe's sorted impostor distances (one row per probe)."""
    quantiles, ks, sums = [], [], []
    for d in rows:
        idx = _level_indices(levels, len(d))
        quantiles.append(_strictly_increasing(np.maximum(d[idx], _TINY)))
        ks.append(int(idx[0]))
        sums.append(_tail_sums(d, int(idx[0])))
    alphas = _exponents(np.asarray(ks, np.float64), np.asarray(sums), tail)
    return ImpostorModel(
        levels=tuple(float(x) for x in levels),
        quantiles=tuple(tuple(float(x) for x in q) for q in quantiles),
        tail_exponents=tuple(float(a) for a in alphas),
        comparisons=int(min(len(d) for d in rows)),
    )


def probe_impostor_distances(
    emb: np.ndarray,
    labels: np.ndarray,
    probes: int = DEFAULT_PROBES,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> list[np.ndarray]:
    """For each chosen probe, its sorted distances to every image of another identity (and group)."""
    idx = choose_probes(labels, probes, seed)
    rows = []
    for start in range(0, len(idx), 64):
        block = idx[start : start + 64]
        d = pairwise_distances(emb[block], emb)
        for r, i in enumerate(block):
            impostor = labels != labels[i] if groups is None else groups != groups[i]
            rows.append(np.sort(d[r][impostor]))
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
) -> ImpostorModel:
    """Fit the impostor model on embeddings of held-out identities.

    Args:
        emb: (n, D) L2-normalised embeddings.
        labels: Identity of each row.
        probes: How many probe images (one per identity while identities last).
        levels: CDF levels stored per probe, increasing to 1.0; the first starts the fitted tail.
        tail: Per-probe or shared tail exponent.
        pooled: One pooled CDF of all probes' impostor distances (the plain independence model that
            ``1 - (1 - F(t))^N`` assumes). Also used, whatever is asked, when the held-out set is too
            small for per-probe tails (fewer than 10 impostor distances of a probe below the first
            level: a few held-out identities, as digits' or AT&T's validation).
        seed: Seeds the choice of probes.
        groups: Family of each row (identities nest in families); impostors of the probe's family are
            left out. ``None``: every other identity is an impostor.
    """
    rows = probe_impostor_distances(emb, labels, probes, seed, groups)
    if pooled or min(len(r) for r in rows) * levels[0] < _MIN_TAIL_POINTS:
        rows = [np.sort(np.concatenate(rows))]
    return model_from_sorted(rows, levels, tail)
