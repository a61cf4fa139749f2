"""Where a population's near impostors come from: the probe's own family, and which pairs of families.

A diagnostic for populations that differ (`cli.bench.open_set`): two populations with the same
share of same-family impostors can still differ in look-alikes across families (related scripts such as
Latin and Cyrillic), which is what an impostor model fit on one and served on the other gets wrong.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from training.impostor_fit import pairwise_distances
from training.open_set_eval import Embedded

_BLOCK = 1024  # rows per distance block: memory stays at a few tens of MB


@dataclass(frozen=True)
class LookAlikes:
    """Impostor pairs within a distance, by family.

    Attributes:
        distance: The distance within which an impostor counts as near.
        near_per_image: Near impostor images per image.
        near_rate: The same per impostor comparison (the per-comparison false accept rate there).
        same_family_share_of_near: Share of the near pairs whose two identities share a family.
        same_family_near_rate: Near rate among same-family comparisons.
        cross_family_near_rate: Near rate among comparisons across families.
        top_family_pairs: The family pairs carrying the most cross-family near pairs, with their share.
        top4_share: Share of all cross-family near pairs carried by the top four family pairs.
        family_pairs: How many family pairs there are.
    """

    distance: float
    near_per_image: float
    near_rate: float
    same_family_share_of_near: float
    same_family_near_rate: float
    cross_family_near_rate: float
    top_family_pairs: list[tuple[str, str, float]]
    top4_share: float
    family_pairs: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _near_counts(data: Embedded, distance: float) -> tuple[np.ndarray, np.ndarray]:
    """(family × family near-pair counts, family × family comparison counts), impostors only."""
    families = int(data.groups.max()) + 1
    near = np.zeros((families, families))
    for start in range(0, len(data.labels), _BLOCK):
        rows = slice(start, start + _BLOCK)
        d = pairwise_distances(data.emb[rows], data.emb)
        hit = (d <= distance) & (data.labels[rows, None] != data.labels[None, :])
        r, c = np.nonzero(hit)
        np.add.at(near, (data.groups[rows][r], data.groups[c]), 1.0)
    images = np.bincount(data.groups, minlength=families).astype(np.float64)
    compared = np.outer(images, images)
    per_identity = np.bincount(data.labels).astype(np.float64)
    same_identity = np.bincount(data.groups, weights=per_identity[data.labels], minlength=families)
    compared[np.diag_indices(families)] -= same_identity  # a family's images minus each one's own identity
    return near, compared


def look_alikes(data: Embedded, family_names: list[str], distance: float) -> LookAlikes:
    """Near-impostor structure of ``data`` at ``distance`` (``family_names[g]`` names family ``g``)."""
    near, compared = _near_counts(data, distance)
    diag = np.diag_indices(len(near))
    same, total = float(near[diag].sum()), float(near.sum())
    cross = near + near.T
    cross[diag] = 0.0
    i, j = np.triu_indices(len(near), 1)
    order = np.argsort(cross[i, j])[::-1]
    cross_total = max(float(cross[i, j].sum()), 1e-300)
    top = [
        (family_names[i[k]], family_names[j[k]], float(cross[i[k], j[k]] / cross_total)) for k in order[:5]
    ]
    cross_compared = float(compared.sum() - compared[diag].sum())
    return LookAlikes(
        distance=distance,
        near_per_image=total / len(data.labels),
        near_rate=total / float(compared.sum()),
        same_family_share_of_near=same / max(total, 1e-300),
        same_family_near_rate=same / float(compared[diag].sum()),
        cross_family_near_rate=(total - same) / cross_compared,
        top_family_pairs=top,
        top4_share=float(cross[i, j][order[:4]].sum() / cross_total),
        family_pairs=len(i),
    )
