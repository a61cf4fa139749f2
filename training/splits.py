"""The types every data set shares: labelled image sets, lazy images and class-disjoint splits.

Loaders live in `training.datasets` (digits, ``folder:PATH``, AT&T faces) and `training.omniglot`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import numpy as np
from PIL import Image

from twinstream.images.preprocess import InputSpec


class DatasetError(ValueError):
    """A data set that is unknown, absent or unusable."""


def read_image_file(path: Path) -> Image.Image:
    """Open and fully decode one image file."""
    with Image.open(path) as img:
        img.load()
        return img


class LazyImages(Sequence[Image.Image]):
    """Images decoded on access from keys (paths, zip members) by a reader; keeps memory flat."""

    def __init__(self, keys: Sequence[object], reader: Callable[[Any], Image.Image]) -> None:
        self._keys = list(keys)
        self._reader = reader

    def __len__(self) -> int:
        return len(self._keys)

    @overload
    def __getitem__(self, index: int) -> Image.Image: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Image.Image]: ...
    def __getitem__(self, index: int | slice) -> Image.Image | Sequence[Image.Image]:
        if isinstance(index, slice):
            return LazyImages(self._keys[index], self._reader)
        return self._reader(self._keys[index])

    def __iter__(self) -> Iterator[Image.Image]:
        return (self._reader(k) for k in self._keys)

    def select(self, indices: Sequence[int] | np.ndarray) -> LazyImages:
        """The images at ``indices``, still lazy."""
        return LazyImages([self._keys[int(i)] for i in indices], self._reader)


@dataclass(frozen=True)
class ImageSet:
    """Images with integer identity labels; ``class_names[label]`` names each identity."""

    images: Sequence[Image.Image]
    labels: np.ndarray
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.images) != len(self.labels):
            raise DatasetError(f"{len(self.images)} images but {len(self.labels)} labels")

    @property
    def num_classes(self) -> int:
        return len(np.unique(self.labels)) if len(self.labels) else 0


@dataclass(frozen=True)
class OneShotRun:
    """One N-way one-shot run: one support image per class, queries, and each query's support index."""

    support: Sequence[Image.Image]
    queries: Sequence[Image.Image]
    answers: tuple[int, ...]


@dataclass(frozen=True)
class Augmentation:
    """Training-only random distortions, applied to pre-processed batches (see ``training.augment``)."""

    rotate_deg: float = 0.0
    translate: float = 0.0
    scale: float = 0.0
    shear_deg: float = 0.0
    hflip: bool = False
    rotations_as_classes: bool = False  # 90° turns of a class become new classes (Omniglot)


@dataclass(frozen=True)
class DataSplits:
    """A data set split by class: train, validation (threshold/calibration) and test identities."""

    name: str
    spec: InputSpec
    train: ImageSet
    val: ImageSet
    test: ImageSet
    augmentation: Augmentation = field(default_factory=Augmentation)
    default_pk: tuple[int, int] = (16, 4)
    runs: tuple[OneShotRun, ...] = ()
    test_time_shifts: int = 0  # the tower's default test-time augmentation (see twinstream.model.tower)


def split_classes(
    labels: np.ndarray, n_val: int, n_test: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Partition the classes (not the images) into train/val/test, seeded.

    Returns:
        Three sorted arrays of class ids, pairwise disjoint.
    """
    classes = np.unique(labels)
    if n_val + n_test >= len(classes):
        raise DatasetError(f"cannot hold out {n_val}+{n_test} of {len(classes)} classes")
    perm = np.random.default_rng(seed).permutation(classes)
    test, val, train = perm[:n_test], perm[n_test : n_test + n_val], perm[n_test + n_val :]
    return np.sort(train), np.sort(val), np.sort(test)


def subset(data: ImageSet, classes: np.ndarray) -> ImageSet:
    """The images of the given classes, labels kept (class ids stay global)."""
    idx = np.flatnonzero(np.isin(data.labels, classes))
    images: Sequence[Image.Image]
    if isinstance(data.images, LazyImages):
        images = data.images.select(idx)
    else:
        images = [data.images[int(i)] for i in idx]
    return ImageSet(images=images, labels=data.labels[idx], class_names=data.class_names)
