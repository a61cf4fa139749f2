"""P×K batches (P identities × K images each) so every batch holds positives for the miners.

pytorch-metric-learning's `MPerClassSampler` does the sampling; this module seeds it per worker, sizes
an epoch, and optionally turns each class's 90° rotations into extra classes ("virtual" indices).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from pytorch_metric_learning.samplers import MPerClassSampler
from pytorch_metric_learning.utils import common_functions as pml_common


@dataclass(frozen=True, slots=True)
class Batch:
    """Indices into the base image set, the quarter turn to apply, and the (possibly virtual) labels."""

    indices: np.ndarray
    quarters: np.ndarray
    labels: np.ndarray


class PKBatches:
    """A fixed number of P×K batches per epoch, reproducible from (seed, rank, epoch).

    With ``rotations`` the label space is 4× larger: image i turned by q quarters is virtual
    sample ``q * N + i`` with label ``label * 4 + q`` (Koch et al. / Vinyals et al. augment
    Omniglot this way).
    """

    def __init__(
        self, labels: np.ndarray, p: int, k: int, steps: int, *, rotations: bool = False, seed: int = 0
    ) -> None:
        self.base = np.asarray(labels, dtype=np.int64)
        n = len(self.base)
        turns = 4 if rotations else 1
        self.virtual_labels = np.concatenate([self.base * turns + q for q in range(turns)])
        n_classes = len(np.unique(self.virtual_labels))
        self.p, self.k = min(p, n_classes), k
        self.steps = steps
        self.seed = seed
        self._n = n

    @property
    def batch_size(self) -> int:
        return self.p * self.k

    def epoch(self, epoch: int) -> Iterator[Batch]:
        """The batches of one epoch (same sequence for the same seed and epoch)."""
        # MPerClassSampler draws from pml's module-level RNG; give it a private, seeded one.
        pml_common.NUMPY_RANDOM = np.random.RandomState((self.seed * 1_000_003 + epoch) % 2**32)
        sampler = MPerClassSampler(
            self.virtual_labels, m=self.k, batch_size=self.batch_size,
            length_before_new_iter=self.steps * self.batch_size,
        )  # fmt: skip
        order = np.fromiter(iter(sampler), dtype=np.int64, count=len(sampler))
        for step in range(self.steps):
            virtual = order[step * self.batch_size : (step + 1) * self.batch_size]
            yield Batch(virtual % self._n, virtual // self._n, self.virtual_labels[virtual])


def steps_per_epoch(n_images: int, batch_size: int, world_size: int, rotations: bool = False) -> int:
    """Steps so that all workers together see about one pass over the (virtual) training images."""
    virtual = n_images * (4 if rotations else 1)
    return max(1, round(virtual / (batch_size * world_size)))
