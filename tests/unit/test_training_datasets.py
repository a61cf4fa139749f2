"""Class-disjoint, seeded splits and the data set loaders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.datasets import load_dataset
from training.splits import DatasetError, split_classes
from twinstream.config import load_settings
from twinstream.images.preprocess import preprocess

DATA_DIR = load_settings().datasets_dir  # TWINSTREAM_DATA_DIR, else ../shared/datasets


def _classes(labels: np.ndarray) -> set[int]:
    return {int(c) for c in np.unique(labels)}


def test_split_classes_is_disjoint_complete_and_seeded() -> None:
    labels = np.repeat(np.arange(40), 3)
    train, val, test = split_classes(labels, n_val=5, n_test=10, seed=3)
    assert len(test) == 10 and len(val) == 5 and len(train) == 25
    assert not (set(train) & set(val) or set(train) & set(test) or set(val) & set(test))
    assert set(train) | set(val) | set(test) == set(range(40))
    again = split_classes(labels, n_val=5, n_test=10, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again, strict=True))
    other = split_classes(labels, n_val=5, n_test=10, seed=4)
    assert not np.array_equal(test, other[2])


def test_digits_splits_share_no_digit_and_yield_8x8_grayscale_images() -> None:
    splits = load_dataset("digits", Path(), seed=0)
    train, val, test = (
        _classes(splits.train.labels),
        _classes(splits.val.labels),
        _classes(splits.test.labels),
    )
    assert not (train & val or train & test or val & test)
    assert len(train | val | test) == 10
    img = splits.train.images[0]
    assert img.mode == "L" and img.size == (8, 8)
    assert preprocess(img, splits.spec).shape == (1, splits.spec.height, splits.spec.width)


def _write_identities(root: Path, people: int, per_person: int) -> None:
    rng = np.random.default_rng(0)
    for p in range(people):
        (root / f"person{p:02d}").mkdir(parents=True)
        for i in range(per_person):
            pixels = rng.integers(0, 255, size=(30, 20), dtype=np.uint8)
            Image.fromarray(pixels, mode="L").save(root / f"person{p:02d}" / f"{i}.png")
    (root / ".hidden").mkdir()


def test_folder_dataset_splits_identities_not_images(tmp_path: Path) -> None:
    _write_identities(tmp_path, people=8, per_person=3)
    splits = load_dataset(f"folder:{tmp_path}", Path(), seed=1)
    parts = [_classes(s.labels) for s in (splits.train, splits.val, splits.test)]
    assert sum(len(p) for p in parts) == 8
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert len(splits.test.images) == 3 * len(parts[2])
    assert splits.spec.height == 56 and splits.spec.channels == 1  # aspect kept, longest side 56


def test_folder_dataset_with_too_few_identities_is_refused(tmp_path: Path) -> None:
    _write_identities(tmp_path, people=2, per_person=2)
    with pytest.raises(DatasetError, match="at least 4"):
        load_dataset(f"folder:{tmp_path}", Path())


def test_unknown_dataset_name_is_refused() -> None:
    with pytest.raises(DatasetError, match="unknown dataset"):
        load_dataset("mnist", Path())


@pytest.mark.skipif(
    not (DATA_DIR / "omniglot" / "all_runs.zip").is_file(), reason=f"Omniglot zips absent from {DATA_DIR}"
)
def test_omniglot_trains_on_background_and_tests_on_official_runs() -> None:
    splits = load_dataset("omniglot", DATA_DIR, seed=0)
    train_names = {splits.train.class_names[c] for c in _classes(splits.train.labels)}
    val_names = {splits.val.class_names[c] for c in _classes(splits.val.labels)}
    assert len(train_names) + len(val_names) == 964
    assert not {n.split("/")[0] for n in train_names} & {n.split("/")[0] for n in val_names}
    assert splits.test.num_classes == 659
    assert len(splits.runs) == 20
    assert all(len(r.support) == 20 and len(r.queries) == 20 for r in splits.runs)


@pytest.mark.skipif(
    not (DATA_DIR / "omniglot" / "images_background.zip").is_file(),
    reason=f"Omniglot zips absent from {DATA_DIR}",
)
def test_omniglot_validation_holds_out_ten_alphabets_including_the_five_older_artifacts_held_out() -> None:
    from training.omniglot import VAL_ALPHABETS, load_omniglot_splits

    def val_alphabets(n: int) -> set[str]:
        splits = load_omniglot_splits(DATA_DIR / "omniglot", seed=0, with_test=False, val_alphabets=n)
        return {splits.val.class_names[c].split("/")[0] for c in _classes(splits.val.labels)}

    assert VAL_ALPHABETS == 10
    assert len(val_alphabets(VAL_ALPHABETS)) == 10
    assert val_alphabets(5) < val_alphabets(VAL_ALPHABETS)  # an older artifact's split is rebuilt exactly
