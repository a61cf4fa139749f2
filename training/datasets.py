"""Labelled image sets and their class-disjoint splits: digits, Omniglot and ``folder:PATH`` layouts.

Every loader yields PIL images (lazily where the set is large) so training feeds them through
`twinstream.images.preprocess.preprocess`, exactly as serving does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from training.splits import (
    Augmentation,
    DatasetError,
    DataSplits,
    ImageSet,
    LazyImages,
    read_image_file,
    split_classes,
    subset,
)
from twinstream.images.preprocess import InputSpec


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
    from twinstream.images.preprocess import preprocess_batch

    x = preprocess_batch(list(sample), raw)
    return InputSpec(height, width, channels, False, round(float(x.mean()), 4), round(float(x.std()), 4))


def load_folder_splits(root: Path, seed: int = 0, name: str | None = None) -> DataSplits:
    """A folder of identities: 25 % of identities to test, 25 % to validation, the rest to train.

    Validation is where decisions are calibrated, and an operating point at FAR 1e-3 is read from the
    impostor pairs of *different pairs of identities*: AT&T's 10 validation people give 45 such pairs
    (5 gave 10, and a tower calibrated on them let 6-13 % of unseen impostors through at FAR 1e-3).
    """
    data = folder_images(root)
    n = len(data.class_names)
    n_test = n_val = max(1, round(n * 0.25))
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
