"""The acceptance protocol: all-classes one-shot accuracy averaged over every choice of enrolment photo."""

from __future__ import annotations

import numpy as np
import pytest

from training.evaluate import Pairs, decidability, evaluate_embeddings, one_shot_every_enrolment


def _points(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32)[:, None]


def test_every_enrolment_averages_the_rounds_of_a_hand_worked_example() -> None:
    # A at 0, 1, 4 and B at 5, 6, 9 on a line. Round 0 enrols 0 and 5: A's 4 is nearer B's 5 (3/4).
    # Round 1 enrols 1 and 6: A's 4 is nearer 6 (3/4). Round 2 enrols 4 and 9: B's 5 and 6 go to A (2/4).
    emb, labels = _points(0, 1, 4, 5, 6, 9), np.array([0, 0, 0, 1, 1, 1])
    assert one_shot_every_enrolment(emb, labels) == pytest.approx((0.75 + 0.75 + 0.5) / 3)


def test_a_smaller_class_enrols_its_photos_in_turn() -> None:
    # A has 3 photos (0, 1, 4), B has 2 (5, 9): B enrols 5, 9, then 5 again in round 2.
    # Round 0 (0 | 5): probes 1 ok, 4 wrong, 9 ok -> 2/3. Round 1 (1 | 9): 0 ok, 4 ok, 5 wrong -> 2/3.
    # Round 2 (4 | 5): 0 ok, 1 ok, 9 ok -> 3/3.
    emb, labels = _points(0, 1, 4, 5, 9), np.array([0, 0, 0, 1, 1])
    assert one_shot_every_enrolment(emb, labels) == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)


def test_photo_order_within_classes_follows_the_data_not_the_label_order() -> None:
    emb, labels = _points(5, 0, 6, 1, 9, 4), np.array([1, 0, 1, 0, 1, 0])
    assert one_shot_every_enrolment(emb, labels) == pytest.approx((0.75 + 0.75 + 0.5) / 3)


@pytest.mark.parametrize("labels", [np.array([0, 0, 1]), np.array([0, 0, 0])])
def test_a_class_with_one_photo_or_a_single_class_is_refused(labels: np.ndarray) -> None:
    with pytest.raises(ValueError, match="2\\+ classes with 2\\+ images"):
        one_shot_every_enrolment(_points(*range(len(labels))), labels)


def test_evaluation_reports_it_as_all_classes_way_for_sets_of_up_to_twenty_classes() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 4)
    emb = rng.normal(size=(40, 8)).astype(np.float32) + labels[:, None] * 10.0
    assert evaluate_embeddings(emb, labels, trials=50)["oneshot_10way_every_enrolment"] == 1.0
    many = np.repeat(np.arange(25), 2)
    emb_many = rng.normal(size=(50, 8)).astype(np.float32) + many[:, None] * 10.0
    assert not any(k.endswith("_every_enrolment") for k in evaluate_embeddings(emb_many, many, trials=50))


def test_decidability_keeps_ranking_perfectly_separated_distances() -> None:
    same = np.array([True, True, False, False])
    near = Pairs(np.array([0.1, 0.3, 1.0, 1.2]), same)
    far = Pairs(np.array([0.1, 0.3, 1.4, 1.6]), same)
    assert decidability(far) > decidability(near) > 0
    assert decidability(near) == pytest.approx(0.9 / 0.1)
