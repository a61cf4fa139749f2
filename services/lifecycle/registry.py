"""The model-version registry in Redis: which versions exist, how far each was re-indexed, which is live.

Keys, per Serve app ``<app>`` (``serve.app_name``: apps sharing one Redis, such as test apps, never see
each other's pointers):

- ``twinstream:model:live:<app>`` — STRING: the version that answers requests. The serving side
  (`services.api.served.ServedVersions.live`) reads it once per batch, so every request of a batch is
  answered by one version end to end.
- ``twinstream:model:previous:<app>`` — STRING: the version live before (what ``rollback`` returns to).
- ``twinstream:model:versions:<app>`` — SET of registered version ids.
- ``twinstream:model:version:<app>:<version>`` — HASH: ``artifact`` (artifact directory), ``collection``
  (its Milvus collection), ``dim``, ``registered_at_ms``, ``complete`` (``1`` once a re-index reached the
  log's end), ``caught_up_at_ms``, ``offsets`` (JSON ``{partition: next offset}`` the re-index committed),
  ``gallery_size`` (rows when it last caught up), ``images_per_s`` (of its last re-index run).

`set_live` and `switch_live` move both pointers in one Lua script, so no reader sees a half-made switch.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import redis

from twinstream.config import Settings

#: previous := live, live := version, atomically; a no-op when ``version`` is live already.
_SET_LIVE = """
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  return current
end
if current then
  redis.call('SET', KEYS[2], current)
end
redis.call('SET', KEYS[1], ARGV[1])
return current
"""


@dataclass(frozen=True, slots=True)
class RegistryKeys:
    """The registry's Redis keys for one Serve app."""

    app: str = "twinstream"

    @classmethod
    def for_settings(cls, settings: Settings) -> RegistryKeys:
        return cls(settings.serve.app_name)

    @property
    def live(self) -> str:
        return f"twinstream:model:live:{self.app}"

    @property
    def previous(self) -> str:
        return f"twinstream:model:previous:{self.app}"

    @property
    def versions(self) -> str:
        return f"twinstream:model:versions:{self.app}"

    def version(self, version: str) -> str:
        return f"twinstream:model:version:{self.app}:{version}"


#: The keys of the default Serve app (``twinstream``).
DEFAULT_KEYS = RegistryKeys()


def _text(raw: bytes | str | None) -> str | None:
    return raw.decode() if isinstance(raw, bytes) else raw


def live_version(client: redis.Redis, keys: RegistryKeys = DEFAULT_KEYS) -> str | None:
    """The live version, or None before any switch (one GET: cheap enough for every batch)."""
    return _text(client.get(keys.live))  # type: ignore[arg-type]


def previous_version(client: redis.Redis, keys: RegistryKeys = DEFAULT_KEYS) -> str | None:
    """The version that was live before the current one, or None."""
    return _text(client.get(keys.previous))  # type: ignore[arg-type]


def set_live(client: redis.Redis, version: str, keys: RegistryKeys = DEFAULT_KEYS) -> str | None:
    """Make ``version`` live; the version live until now becomes the previous one. Atomic.

    Returns:
        The version that was live before (None if none was), or ``version`` itself if it already was.
    """
    return _text(client.eval(_SET_LIVE, 2, keys.live, keys.previous, version))  # type: ignore[arg-type]


#: live := ARGV[1]; previous := ARGV[2] unless it is empty or the new live version itself.
_SWITCH_LIVE = """
redis.call('SET', KEYS[1], ARGV[1])
if ARGV[2] ~= '' and ARGV[2] ~= ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[2])
end
return 1
"""


def switch_live(
    client: redis.Redis, version: str, former: str | None, keys: RegistryKeys = DEFAULT_KEYS
) -> None:
    """Set both pointers at once: ``version`` live, ``former`` (the version live before) previous.

    For a switch whose deploy step may already have moved the live pointer itself
    (``services.app.deploy_versions`` does), so ``former`` is read before it.
    """
    client.eval(_SWITCH_LIVE, 2, keys.live, keys.previous, version, former or "")


@dataclass(frozen=True, slots=True)
class VersionEntry:
    """What the registry knows of one model version."""

    version: str
    artifact: str
    collection: str
    dim: int
    registered_at_ms: int = 0
    complete: bool = False
    caught_up_at_ms: int = 0
    offsets: dict[int, int] = field(default_factory=dict)
    gallery_size: int = 0
    images_per_s: float = 0.0

    @classmethod
    def from_hash(cls, version: str, raw: Mapping[bytes, bytes]) -> VersionEntry:
        """Parse the version's HASH as redis-py returns it."""
        get = {k.decode(): v.decode() for k, v in raw.items()}
        return cls(
            version=version,
            artifact=get.get("artifact", ""),
            collection=get.get("collection", ""),
            dim=int(get.get("dim", "0")),
            registered_at_ms=int(get.get("registered_at_ms", "0")),
            complete=get.get("complete") == "1",
            caught_up_at_ms=int(get.get("caught_up_at_ms", "0")),
            offsets={int(p): int(o) for p, o in json.loads(get.get("offsets", "{}")).items()},
            gallery_size=int(get.get("gallery_size", "0")),
            images_per_s=float(get.get("images_per_s", "0")),
        )


class ModelRegistry:
    """Registered versions and their re-index progress, in Redis.

    Args:
        client: A redis-py client (built by the process's composition root).
        keys: The deployment's keys (`RegistryKeys.for_settings`).
    """

    def __init__(self, client: redis.Redis, keys: RegistryKeys = DEFAULT_KEYS) -> None:
        self._client = client
        self.keys = keys

    def key(self, version: str) -> str:
        return self.keys.version(version)

    def register(self, version: str, artifact: str, collection: str, dim: int) -> VersionEntry:
        """Add a version (or update where its artifact lives); its re-index progress is kept."""
        pipe = self._client.pipeline(transaction=True)
        pipe.hset(self.key(version), mapping={"artifact": artifact, "collection": collection, "dim": dim})
        pipe.hsetnx(self.key(version), "registered_at_ms", int(time.time() * 1000))
        pipe.sadd(self.keys.versions, version)
        pipe.execute()
        entry = self.get(version)
        assert entry is not None
        return entry

    def get(self, version: str) -> VersionEntry | None:
        """The entry of ``version``, or None if it is not registered."""
        raw = self._client.hgetall(self.key(version))
        return VersionEntry.from_hash(version, raw) if raw else None  # type: ignore[arg-type]

    def versions(self) -> list[VersionEntry]:
        """Every registered version, oldest first."""
        names = sorted(_text(v) or "" for v in self._client.smembers(self.keys.versions))  # type: ignore[union-attr]
        entries = [e for name in names if (e := self.get(name)) is not None]
        return sorted(entries, key=lambda e: (e.registered_at_ms, e.version))

    def record_progress(self, version: str, offsets: Mapping[int, int]) -> None:
        """The offsets a re-index of ``version`` committed (the Kafka group holds the same)."""
        self._client.hset(self.key(version), "offsets", json.dumps({str(p): o for p, o in offsets.items()}))

    def mark_caught_up(self, version: str, offsets: Mapping[int, int], gallery_size: int) -> None:
        """A re-index of ``version`` reached the log's end: its collection holds every enrolment."""
        self._client.hset(
            self.key(version),
            mapping={
                "complete": "1",
                "caught_up_at_ms": int(time.time() * 1000),
                "offsets": json.dumps({str(p): o for p, o in offsets.items()}),
                "gallery_size": gallery_size,
            },
        )

    def record_speed(self, version: str, images_per_s: float) -> None:
        self._client.hset(self.key(version), "images_per_s", f"{images_per_s:.3f}")

    def reset(self, version: str) -> None:
        """Forget a version's re-index progress (a re-index from scratch)."""
        self._client.hdel(self.key(version), "complete", "caught_up_at_ms", "offsets", "gallery_size")
