"""Verification, one-shot and retrieval metrics on embeddings with known structure."""

from __future__ import annotations

import numpy as np
import pytest

from training.evaluate import evaluate_embeddings, one_shot_accuracy, sample_pairs, verification_metrics


def _clustered(classes: int, per_class: int, spread: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, 16))
    emb = np.repeat(centres, per_class, axis=0) + spread * rng.normal(size=(classes * per_class, 16))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return emb.astype(np.float32), np.repeat(np.arange(classes), per_class)


def test_separated_clusters_score_perfectly() -> None:
    emb, labels = _clustered(25, 6, spread=0.01)
    metrics = evaluate_embeddings(emb, labels, trials=200)
    assert metrics["auc"] == pytest.approx(1.0)
    assert metrics["eer"] == pytest.approx(0.0, abs=1e-3)
    assert metrics["tar_at_far_1e-3"] == pytest.approx(1.0)
    assert metrics["oneshot_5way"] == 1.0 and metrics["oneshot_20way"] == 1.0
    assert metrics["precision_at_1"] == 1.0 and metrics["map_at_r"] == pytest.approx(1.0)


def test_random_embeddings_score_at_chance() -> None:
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(300, 16)).astype(np.float32)
    labels = np.repeat(np.arange(30), 10)
    ver = verification_metrics(sample_pairs(emb, labels))
    assert 0.45 < ver["auc"] < 0.55
    assert 0.4 < ver["eer"] < 0.6
    assert 0.13 < one_shot_accuracy(emb, labels, 5, trials=2000) < 0.27


def test_sample_pairs_labels_positives_and_negatives_correctly() -> None:
    emb, labels = _clustered(5, 4, spread=0.1)
    pairs = sample_pairs(emb, labels, max_neg=100)
    assert int(pairs.same.sum()) == 5 * 6  # C(4, 2) positives per class
    assert int((~pairs.same).sum()) == 100


def test_one_shot_refuses_more_ways_than_classes() -> None:
    emb, labels = _clustered(3, 4, spread=0.1)
    with pytest.raises(ValueError, match="5-way"):
        one_shot_accuracy(emb, labels, 5)
