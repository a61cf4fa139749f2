"""Where each version's re-index stands in the enrolment log: its consumer group's committed offsets.

Every model version has its own group (``<lifecycle.reindex_group_prefix>-<version>``). A re-index reads
by assignment and commits after each batch is flushed in Milvus, so the group's offsets say exactly how
much of the log the version's collection holds; the lag against the log's end says how much it misses.
"""

from __future__ import annotations

from collections.abc import Mapping

from kafka import KafkaAdminClient, OffsetAndMetadata, TopicPartition
from kafka.errors import GroupIdNotFoundError, KafkaError, NoError

from services.kafka_clients import new_admin
from services.lifecycle.enrolment_log import EnrolmentLogReader, retrying
from twinstream.config import KafkaSettings, Settings


def build_admin(kafka: KafkaSettings) -> KafkaAdminClient:
    """An admin client for group offsets and topic configs."""
    return new_admin(kafka, client_id="twinstream-lifecycle")


def reindex_group(settings: Settings, version: str) -> str:
    """The consumer group whose offsets record how far ``version``'s collection was built from the log."""
    return f"{settings.lifecycle.reindex_group_prefix}-{version}"


class LogOffsets:
    """End offsets of the log and committed offsets of re-index groups.

    Args:
        admin: An admin client (group offsets).
        reader: A reader of the log (its partitions, beginning and end offsets).
    """

    def __init__(self, admin: KafkaAdminClient, reader: EnrolmentLogReader) -> None:
        self._admin = admin
        self._reader = reader

    def end(self) -> dict[int, int]:
        """The log's end offset per partition now."""
        return self._reader.end_offsets()

    def committed(self, group: str) -> dict[int, int]:
        """The group's committed offset per partition (absent where it never committed)."""
        raw = retrying(lambda: self._admin.list_group_offsets(group)).get(group) or {}
        return {
            tp.partition: int(meta.offset)
            for tp, meta in raw.items()
            if tp.topic == self._reader.topic and meta is not None and meta.offset >= 0
        }

    def lag(self, group: str, end: Mapping[int, int] | None = None) -> int:
        """Records of the log the group has not committed yet (from the log's beginning where it has none)."""
        end = dict(end or self.end())
        done = self.committed(group)
        beginning = self._reader.beginning_offsets()
        return sum(max(0, end[p] - done.get(p, beginning.get(p, 0))) for p in end)

    def hand_over(self, group: str, offsets: Mapping[int, int]) -> dict[int, int]:
        """Raise the group's offsets to ``offsets`` where they are behind; returns the offsets set.

        Used when a version stops being live: the pipeline wrote every enrolment logged until then
        into its collection itself, so a later re-index of it (before a rollback) starts from there.
        The group must have no active member (re-index runs read by assignment: they never join).
        """
        done = self.committed(group)
        raised = {p: o for p, o in offsets.items() if o > done.get(p, -1)}
        if raised:
            wanted = {
                TopicPartition(self._reader.topic, p): OffsetAndMetadata(o, "", -1) for p, o in raised.items()
            }
            errors = retrying(lambda: self._admin.alter_group_offsets(group, wanted))
            failed = {tp.partition: e.__name__ for tp, e in errors.items() if e is not NoError}
            if failed:
                raise KafkaError(f"setting the offsets of {group} failed: {failed}")
        return raised

    def forget(self, group: str) -> None:
        """Delete the group (a re-index from scratch starts at the log's beginning); absent is fine."""
        outcome = retrying(lambda: self._admin.delete_groups([group])).get(group, "OK")
        if outcome not in ("OK", GroupIdNotFoundError.__name__):
            raise KafkaError(f"deleting consumer group {group}: {outcome}")
