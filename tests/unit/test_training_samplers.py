"""P×K batch composition."""

from __future__ import annotations

import numpy as np

from training.samplers import PKBatches, steps_per_epoch


def test_every_batch_holds_p_classes_with_k_images_each() -> None:
    labels = np.repeat(np.arange(20), 6)
    batches = list(PKBatches(labels, p=8, k=4, steps=5, seed=0).epoch(0))
    assert len(batches) == 5
    for batch in batches:
        values, counts = np.unique(batch.labels, return_counts=True)
        assert len(values) == 8
        assert set(counts.tolist()) == {4}
        assert np.array_equal(labels[batch.indices], batch.labels)


def test_batches_are_reproducible_per_seed_and_epoch() -> None:
    labels = np.repeat(np.arange(10), 5)
    first = [b.indices for b in PKBatches(labels, 4, 3, steps=3, seed=1).epoch(2)]
    again = [b.indices for b in PKBatches(labels, 4, 3, steps=3, seed=1).epoch(2)]
    other = [b.indices for b in PKBatches(labels, 4, 3, steps=3, seed=1).epoch(3)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_rotations_make_each_quarter_turn_its_own_class() -> None:
    labels = np.repeat(np.arange(5), 4)
    sampler = PKBatches(labels, p=10, k=2, steps=4, rotations=True, seed=0)
    for batch in sampler.epoch(0):
        assert np.array_equal(batch.labels, labels[batch.indices] * 4 + batch.quarters)
        assert batch.indices.max() < len(labels)
    assert len(np.unique(sampler.virtual_labels)) == 20


def test_p_is_capped_by_the_number_of_classes() -> None:
    sampler = PKBatches(np.repeat(np.arange(3), 10), p=8, k=4, steps=1)
    assert sampler.batch_size == 12


def test_steps_per_epoch_splits_one_pass_across_workers() -> None:
    assert steps_per_epoch(1000, 100, world_size=1) == 10
    assert steps_per_epoch(1000, 100, world_size=2) == 5
    assert steps_per_epoch(1000, 100, world_size=1, rotations=True) == 40
