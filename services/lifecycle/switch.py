"""Switching the live model version (the control side): promote, rollback, the Milvus alias, the list.

A switch, in this order:

1. refuse a version that is not registered or whose collection is not complete (no re-index of it has
   reached the log's end yet);
2. have the serving side load both versions, the outgoing one still answering (``deploy``:
   ``services.app.deploy_versions``, injected). First, because a redeploy takes seconds to tens of
   seconds, and every enrolment the outgoing version takes meanwhile would be missing from the new
   version's collection from the pointer move until step 7;
3. catch it up: re-index it to the log's end now (enrolments logged since its last run, the deploy's
   included), so that only what is logged in the instants before step 5 is left to step 7;
4. note the log's end offsets (everything up to there is in the outgoing version's collection: the
   pipeline wrote it there before logging it);
5. move both pointers atomically (`registry.switch_live`) and the alias ``<prefix>_live`` to its collection;
6. record step 4's offsets as the outgoing version's re-index progress (a later rollback to it only
   replays what was enrolled after the switch);
7. after ``lifecycle.switch_grace_s`` (batches that read the old pointer finish), catch the new version
   up once more: enrolments the old version's replicas logged during the switch.

An enrolment answered by the outgoing version in the instants before the pointer moves reaches the new
version's collection at step 7, so it may be unknown to the new version for up to the grace plus one
catch-up (tests/system/lifecycle/test_switch_under_traffic.py verifies subjects 5 s after enrolment).

The serving side (`services.api.served`) reads the live pointer once per batch.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import redis
from pymilvus import MilvusClient

from services.gallery.milvus_gallery import MilvusGallery
from services.gallery.names import collection_name
from services.lifecycle.offsets import LogOffsets, reindex_group
from services.lifecycle.registry import (
    ModelRegistry,
    RegistryKeys,
    VersionEntry,
    live_version,
    previous_version,
    set_live,
    switch_live,
)
from twinstream.config import Settings


class DeployVersions(Protocol):
    """Deploy the Serve app holding ``model_dirs`` (the first is its default), ``live`` answering.

    ``services.app.deploy_versions`` (it points the live pointer at ``live`` once every replica holds
    every version). `Switchboard` deploys with the outgoing version still live, then moves both pointers
    itself, atomically, once the new version is caught up.
    """

    def __call__(self, settings: Settings, model_dirs: Sequence[Path | str], live: str) -> object: ...


class CatchUp(Protocol):
    """Re-index ``entry``'s version to the log's end now; returns how many log records it applied."""

    def __call__(self, entry: VersionEntry) -> int: ...


class SwitchError(RuntimeError):
    """The switch was refused (nothing changed): unknown version, incomplete collection, nothing to undo."""


@dataclass(frozen=True, slots=True)
class SwitchReport:
    """What a promote or rollback did."""

    live: str
    previous: str | None
    collection: str
    alias: str
    caught_up_before: int
    caught_up_after: int
    handed_over: dict[int, int]


@dataclass(frozen=True, slots=True)
class VersionStatus:
    """One line of ``twinstream models list``."""

    entry: VersionEntry
    gallery_size: int | None  # count(*) now; None when the collection is missing
    lag: int | None  # log records its collection misses; None while live (the pipeline writes it)
    live: bool
    previous: bool


def live_alias(settings: Settings) -> str:
    """The Milvus alias that always names the live version's collection."""
    return collection_name(settings.milvus.collection_prefix, "live")


def point_alias(milvus: MilvusClient, alias: str, collection: str) -> None:
    """Make ``alias`` name ``collection`` (created on first use)."""
    aliases = milvus.list_aliases().get("aliases", [])
    if alias in aliases:
        milvus.alter_alias(collection, alias)
    else:
        milvus.create_alias(collection, alias)


class Switchboard:
    """Promote and roll back model versions.

    Args:
        settings: Settings of this deployment.
        client: Redis (registry and pointers).
        milvus: Milvus (aliases and counts).
        offsets: The enrolment log's offsets.
        catch_up: Re-indexes a version to the log's end (in-process `services.lifecycle.reindex`).
        deploy: Loads the versions into the Serve app; None to switch pointers only.
    """

    def __init__(
        self,
        settings: Settings,
        client: redis.Redis,
        milvus: MilvusClient,
        offsets: LogOffsets,
        catch_up: CatchUp,
        deploy: DeployVersions | None,
    ) -> None:
        self._settings = settings
        self._client = client
        self._milvus = milvus
        self._offsets = offsets
        self._catch_up = catch_up
        self._deploy = deploy
        self.registry = ModelRegistry(client, RegistryKeys.for_settings(settings))
        self._keys = self.registry.keys

    def promote(self, version: str) -> SwitchReport:
        """Make ``version`` live (see the module docstring); raises `SwitchError` when refused."""
        entry = self._ready(version)
        current = live_version(self._client, self._keys)
        if current == version:
            raise SwitchError(f"{version} is live already")
        if self._deploy is not None:
            outgoing = self.registry.get(current) if current else None
            dirs = [Path(entry.artifact), *([Path(outgoing.artifact)] if outgoing else [])]
            self._deploy(self._settings, dirs, current or version)  # both loaded, the old one answering
        before = self._catch_up(entry)
        end = self._offsets.end()
        switch_live(self._client, version, current, self._keys)
        former = current
        alias = live_alias(self._settings)
        point_alias(self._milvus, alias, entry.collection)
        handed = self._hand_over(former, end) if former and former != version else {}
        time.sleep(self._settings.lifecycle.switch_grace_s)
        after = self._catch_up(entry)
        return SwitchReport(version, former, entry.collection, alias, before, after, handed)

    def rollback(self) -> SwitchReport:
        """Make the previous version live again (the current one becomes the previous)."""
        previous = previous_version(self._client, self._keys)
        if previous is None:
            raise SwitchError("there is no previous version to roll back to")
        return self.promote(previous)

    def adopt(self, artifact: Path, version: str, dim: int) -> SwitchReport:
        """Register the version served live since the log began, as live and complete (no re-index).

        Its collection holds every enrolment logged so far (the pipeline wrote each there before it
        logged it), so its progress is the log's end. Refused when another version is live.
        """
        current = live_version(self._client, self._keys)
        if current not in (None, version):
            raise SwitchError(f"{current} is live: adopt registers the first version only; use promote")
        collection = collection_name(self._settings.milvus.collection_prefix, version)
        if not self._milvus.has_collection(collection):
            raise SwitchError(f"{version} has no collection {collection}: it was never served")
        self.registry.register(version, str(artifact.resolve()), collection, dim)
        end = self._offsets.end()
        handed = self._offsets.hand_over(reindex_group(self._settings, version), end)
        self.registry.mark_caught_up(version, end, MilvusGallery(self._milvus, collection).count())
        former = set_live(self._client, version, self._keys)
        alias = live_alias(self._settings)
        point_alias(self._milvus, alias, collection)
        return SwitchReport(version, former if former != version else None, collection, alias, 0, 0, handed)

    def _hand_over(self, former: str, end: Mapping[int, int]) -> dict[int, int]:
        """The outgoing version's collection holds the log up to ``end``: record that as its progress."""
        entry = self.registry.get(former)
        if entry is None:
            return {}
        handed = self._offsets.hand_over(reindex_group(self._settings, former), end)
        self.registry.record_progress(former, {**entry.offsets, **handed})
        return handed

    def _ready(self, version: str) -> VersionEntry:
        entry = self.registry.get(version)
        if entry is None:
            raise SwitchError(
                f"{version} is not registered: run `twinstream models reindex --model DIR` first"
            )
        if not entry.complete:
            lag = self._offsets.lag(reindex_group(self._settings, version))
            raise SwitchError(
                f"{version}'s collection is not complete: its re-index has not reached the log's end "
                f"({lag} records to go); run `twinstream models reindex --model {entry.artifact}`"
            )
        return entry

    def statuses(self) -> list[VersionStatus]:
        """Every registered version with its gallery size (count(*)), lag and pointers."""
        live, previous = live_version(self._client, self._keys), previous_version(self._client, self._keys)
        end = self._offsets.end()
        out = []
        for entry in self.registry.versions():
            size = None
            if self._milvus.has_collection(entry.collection):
                size = MilvusGallery(self._milvus, entry.collection).count()
            lag = (
                None
                if entry.version == live
                else self._offsets.lag(reindex_group(self._settings, entry.version), end)
            )
            out.append(VersionStatus(entry, size, lag, entry.version == live, entry.version == previous))
        return out
