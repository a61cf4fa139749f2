"""The ingest group as the broker sees it: members, their partitions, committed offsets and lag."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError


@dataclass(frozen=True, slots=True)
class MemberStatus:
    """One consumer in the group and the partitions of the topic it owns."""

    member_id: str
    client_id: str
    host: str
    partitions: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class PartitionStatus:
    """Committed offset, log end and lag of one partition (lag counts from 0 when nothing is committed)."""

    partition: int
    committed: int | None
    end: int
    lag: int
    owner: str


@dataclass(frozen=True, slots=True)
class GroupStatus:
    """Everything `twinstream ingest status` shows."""

    group: str
    topic: str
    state: str
    members: tuple[MemberStatus, ...]
    partitions: tuple[PartitionStatus, ...]

    @property
    def total_lag(self) -> int:
        return sum(p.lag for p in self.partitions)


def group_status(
    admin: KafkaAdminClient, consumer: KafkaConsumer, group: str, topic: str, *, attempts: int = 10
) -> GroupStatus:
    """Describe ``group`` on ``topic``, retrying while the coordinator is not ready (a fresh broker).

    Args:
        admin: An admin client (group description and committed offsets).
        consumer: A consumer *without* a group id, used only for the partitions' end offsets.
        group: The consumer group id.
        topic: The input topic whose partitions are reported.
        attempts: Tries on retriable broker errors, 0.5 s apart.
    """
    for attempt in range(attempts):
        try:
            return _group_status(admin, consumer, group, topic)
        except KafkaError as exc:
            if not exc.retriable or attempt == attempts - 1:
                raise
            time.sleep(0.5)
    raise AssertionError("unreachable")


def _group_status(admin: KafkaAdminClient, consumer: KafkaConsumer, group: str, topic: str) -> GroupStatus:
    description: Mapping[str, Any] = admin.describe_groups([group]).get(group) or {}
    members = tuple(_member(raw, topic) for raw in description.get("members") or ())
    committed = admin.list_group_offsets(group).get(group) or {}
    tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    ends = consumer.end_offsets(tps) if tps else {}
    owners = {p: m.client_id for m in members for p in m.partitions}
    partitions = []
    for tp in tps:
        meta = committed.get(tp)
        done = meta.offset if meta is not None and meta.offset >= 0 else None
        end = int(ends.get(tp, 0))
        partitions.append(
            PartitionStatus(tp.partition, done, end, max(0, end - (done or 0)), owners.get(tp.partition, ""))
        )
    state = str(description.get("group_state") or "Dead")
    return GroupStatus(group, topic, state, members, tuple(partitions))


def _member(raw: Mapping[str, Any], topic: str) -> MemberStatus:
    assignment = raw.get("member_assignment") or {}
    partitions = sorted(
        p
        for entry in assignment.get("assigned_partitions") or ()
        if entry.get("topic") == topic
        for p in entry.get("partitions") or ()
    )
    return MemberStatus(
        str(raw.get("member_id", "")),
        str(raw.get("client_id", "")),
        str(raw.get("client_host", "")).lstrip("/"),
        tuple(partitions),
    )
