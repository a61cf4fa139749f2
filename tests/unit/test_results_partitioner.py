"""Batch key partitioning must pick exactly the partitions kafka-python's (and Java's) default does."""

from __future__ import annotations

import random

import pytest
from kafka.partitioner.default import DefaultPartitioner, murmur2

from services.results.partitioner import murmur2_many, partitions_for_keys


def _keys(count: int, seed: int = 0) -> list[bytes]:
    rng = random.Random(seed)
    return [bytes(rng.randrange(256) for _ in range(rng.randrange(0, 70))) for _ in range(count)]


def test_murmur2_of_a_batch_equals_kafka_python_s_for_every_length_and_byte() -> None:
    keys = [b"", b"a", b"ab", b"abc", b"abcd", "é-ü".encode(), b"\xff" * 9, *_keys(2000)]
    assert murmur2_many(keys).tolist() == [murmur2(k) for k in keys]


class _Cluster:
    """The two metadata calls `DefaultPartitioner` makes."""

    def __init__(self, partitions: set[int]) -> None:
        self._partitions = partitions

    def topics(self) -> set[str]:
        return {"results"}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return self._partitions

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self._partitions


@pytest.mark.parametrize("partitions", [{0}, {0, 1, 2, 3}, set(range(7)), {3, 5, 8}])
def test_partitions_of_a_batch_equal_the_default_partitioner_s(partitions: set[int]) -> None:
    keys = [f"images-{p}-{o}".encode() for p in range(4) for o in range(200)] + _keys(300, seed=1)
    default = DefaultPartitioner()
    expected = [default.partition("results", k, k, None, None, _Cluster(partitions)) for k in keys]
    assert partitions_for_keys(keys, partitions) == expected
    assert set(expected) <= partitions


def test_a_topic_without_partitions_is_refused() -> None:
    with pytest.raises(ValueError, match="no partitions"):
        partitions_for_keys([b"k"], set())
