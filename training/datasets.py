"""Labelled image sets and their class-disjoint splits: digits, Omniglot and ``folder:PATH`` layouts.

Every loader yields PIL images (lazily where the set is large) so training feeds them through
`twinstream.preprocess.preprocess`, exactly as serving does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import numpy as np
from PIL import Image

from twinstream.preprocess import InputSpec


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
    test_time_shifts: int = 0  # the tower's default test-time augmentation (see twinstream.tower)


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


def digits_images() -> ImageSet:
    """scikit-learn's digits as 8x8 'L' images (0..16 scaled to 0..255), labelled by digit."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    arrays = np.clip(np.rint(bunch.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    images = [Image.fromarray(a, mode="L") for a in arrays]
    return ImageSet(images, bunch.target.astype(np.int64), tuple(str(d) for d in range(10)))


DIGITS_SPEC = InputSpec(height=16, width=16, channels=1, invert=False, mean=0.31, std=0.32)


def load_digits_splits(seed: int = 0) -> DataSplits:
    """Digits: 5 training, 2 validation and 3 test digits (seeded)."""
    data = digits_images()
    train, val, test = split_classes(data.labels, n_val=2, n_test=3, seed=seed)
    aug = Augmentation(rotate_deg=8.0, translate=0.06, scale=0.08, shear_deg=5.0)
    return DataSplits(
        "digits", DIGITS_SPEC, subset(data, train), subset(data, val), subset(data, test), aug, (5, 16)
    )


def folder_images(root: Path) -> ImageSet:
    """A ``root/<identity>/<image files>`` tree; identities sorted by name; hidden files skipped."""
    if not root.is_dir():
        raise DatasetError(f"image folder {root} does not exist")
    names: list[str] = []
    paths: list[Path] = []
    labels: list[int] = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(f for f in class_dir.iterdir() if f.is_file() and not f.name.startswith("."))
        if not files:
            continue
        labels += [len(names)] * len(files)
        paths += files
        names.append(class_dir.name)
    if len(names) < 4:
        raise DatasetError(f"{root} holds {len(names)} identity folders; at least 4 are needed")
    return ImageSet(LazyImages(paths, read_image_file), np.asarray(labels, dtype=np.int64), tuple(names))


def _folder_spec(sample: Sequence[Image.Image], longest: int = 56) -> InputSpec:
    """Keep the aspect ratio, longest side `longest`; normalise with the sample's mean/std."""
    first = sample[0]
    channels = 1 if first.mode in ("L", "1", "I", "I;16", "F", "P") else 3
    w, h = first.size
    s = longest / max(w, h)
    height, width = max(16, round(h * s)), max(16, round(w * s))
    raw = InputSpec(height, width, channels, invert=False, mean=0.0, std=1.0)
    from twinstream.preprocess import preprocess_batch

    x = preprocess_batch(list(sample), raw)
    return InputSpec(height, width, channels, False, round(float(x.mean()), 4), round(float(x.std()), 4))


def load_folder_splits(root: Path, seed: int = 0, name: str | None = None) -> DataSplits:
    """A folder of identities: 25 % of identities to test, 12.5 % to validation, the rest to train."""
    data = folder_images(root)
    n = len(data.class_names)
    n_test, n_val = max(1, round(n * 0.25)), max(1, round(n * 0.125))
    train, val, test = split_classes(data.labels, n_val=n_val, n_test=n_test, seed=seed)
    tr = subset(data, train)
    sample = [tr.images[i] for i in range(0, len(tr.images), max(1, len(tr.images) // 200))]
    aug = Augmentation(rotate_deg=6.0, translate=0.05, scale=0.06, hflip=True)
    return DataSplits(name or f"folder:{root}", _folder_spec(sample), tr, subset(data, val),
                      subset(data, test), aug, (8, 5))  # fmt: skip


def load_dataset(name: str, data_dir: Path, seed: int = 0, with_test: bool = True) -> DataSplits:
    """Load a data set by its CLI name.

    Args:
        name: ``digits``, ``omniglot``, ``att-faces`` or ``folder:PATH``.
        data_dir: Where the shared data sets live (``TWINSTREAM_DATA_DIR``).
        seed: Seeds the class split.
        with_test: Omniglot only: skip reading the evaluation set (training workers don't need it).

    Raises:
        DatasetError: Unknown name or missing files.
    """
    if name == "digits":
        return load_digits_splits(seed)
    if name == "omniglot":
        from training.omniglot import load_omniglot_splits

        return load_omniglot_splits(Path(data_dir) / "omniglot", seed=seed, with_test=with_test)
    if name == "att-faces":
        return load_folder_splits(Path(data_dir) / "att_faces", seed=seed, name="att-faces")
    if name.startswith("folder:"):
        return load_folder_splits(Path(name.removeprefix("folder:")).expanduser(), seed=seed)
    raise DatasetError(f"unknown dataset {name!r}: use digits, omniglot, att-faces or folder:PATH")
