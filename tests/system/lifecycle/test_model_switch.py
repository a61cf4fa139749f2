"""Promote and roll back model versions against real Kafka, Milvus and Redis (the Serve side stubbed)."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import redis
from rich.console import Console

from cli.commands.models import list_command
from services.lifecycle.clients import LifecycleClients, lifecycle_clients
from services.lifecycle.enrolment_log import compacted_state
from services.lifecycle.offsets import reindex_group
from services.lifecycle.registry import RegistryKeys, VersionEntry, live_version, previous_version, set_live
from services.lifecycle.reindex import reindex, reindex_session
from services.lifecycle.replay import BatchDone
from services.lifecycle.switch import Switchboard, SwitchError, live_alias
from tests.support.lifecycle import digit_images, enrolment, lifecycle_settings, log_writer
from twinstream.config import Settings
from twinstream.model.artifact import load_artifact

pytestmark = pytest.mark.system


class DeployStandIn:
    """What `services.app.deploy_versions` does, without Ray: record the versions, set the live pointer."""

    def __init__(self, client: redis.Redis, keys: RegistryKeys) -> None:
        self.calls: list[tuple[list[Path], str]] = []
        self._client, self._keys = client, keys

    def __call__(self, settings: Settings, model_dirs: Sequence[Path | str], live: str) -> None:
        self.calls.append(([Path(d) for d in model_dirs], live))
        self._client.set(self._keys.live, live)  # as the real one does once every replica holds both


@pytest.fixture
def clients(
    stack_settings: Settings, unique_name: str, kafka_bootstrap: str, milvus_uri: str, redis_url: str
) -> Iterator[LifecycleClients]:
    settings = lifecycle_settings(stack_settings, unique_name, partitions=2)
    with lifecycle_clients(settings) as built:
        yield built


def _board(clients: LifecycleClients, deploy: DeployStandIn, applied: list[int]) -> Switchboard:
    def catch_up(entry: VersionEntry) -> int:
        applied.append(reindex(clients.settings, entry.artifact).records)
        return applied[-1]

    return Switchboard(clients.settings, clients.redis, clients.milvus, clients.offsets, catch_up, deploy)


def _alias_target(clients: LifecycleClients) -> str:
    return str(clients.milvus.describe_alias(live_alias(clients.settings))["collection_name"])


def test_promote_refuses_until_complete_then_switches_catches_up_and_rollback_returns(
    clients: LifecycleClients, model_dirs: tuple[Path, Path], unique_name: str
) -> None:
    settings = clients.settings
    (dir_a, dir_b), tenant = model_dirs, unique_name
    a, b = (load_artifact(d).manifest.version for d in model_dirs)
    images = iter(digit_images(40, seed=5))
    writer = log_writer(settings)
    writer.append(
        [enrolment(tenant, f"digit-{label}", png) for label, png in (next(images) for _ in range(20))]
    )
    keys = RegistryKeys.for_settings(settings)
    deploy, applied = DeployStandIn(clients.redis, keys), []
    board = _board(clients, deploy, applied)

    with pytest.raises(SwitchError, match="not registered"):
        board.promote(b)
    stop_after_one = _partial_reindex(settings, dir_b)
    assert stop_after_one == 1
    with pytest.raises(SwitchError, match="not complete"):
        board.promote(b)
    assert live_version(clients.redis, keys) is None and deploy.calls == []

    reindex(settings, dir_a)
    first = board.promote(a)
    assert (first.live, first.previous) == (a, None)
    assert live_version(clients.redis, keys) == a and _alias_target(clients) == first.collection
    assert deploy.calls[-1] == ([dir_a.resolve()], a)

    def live_pipeline_enrols(live_dir: Path, count: int, subject: str) -> None:
        """What the pipeline does while a version is live: write its collection, then log."""
        writer.append([enrolment(tenant, subject, png) for _, png in (next(images) for _ in range(count))])
        reindex(settings, live_dir)  # the live version's own writes (same model, same ids and vectors)

    reindex(settings, dir_b)  # B complete; then 3 enrolments arrive while A is live
    live_pipeline_enrols(dir_a, 3, "late")
    second = board.promote(b)
    assert (second.live, second.previous) == (b, a)
    assert second.caught_up_before == 3 and second.caught_up_after == 0  # B caught up before serving
    assert previous_version(clients.redis, keys) == a and _alias_target(clients) == second.collection
    assert deploy.calls[-1] == ([dir_b.resolve(), dir_a.resolve()], a)  # loaded first, A still answering
    assert clients.offsets.lag(reindex_group(settings, a)) == 0  # A holds the log up to the switch

    live_pipeline_enrols(dir_b, 2, "while-b")
    back = board.rollback()
    assert (back.live, back.previous) == (a, b) and back.caught_up_before == 2  # only what B's time added
    assert deploy.calls[-1] == ([dir_a.resolve(), dir_b.resolve()], b)
    assert live_version(clients.redis, keys) == a and _alias_target(clients) == first.collection
    writer.close()

    logged = len(compacted_state(clients.reader))
    sizes = {s.entry.version: s for s in board.statuses()}
    assert sizes[a].gallery_size == sizes[b].gallery_size == logged  # both hold the whole log
    assert sizes[a].live and sizes[a].lag is None and sizes[b].previous and sizes[b].lag == 0
    out = Console(record=True, width=200, file=io.StringIO())
    assert list_command(settings, out) == 0
    table = out.export_text()
    assert "LIVE" in table and a in table and b in table


def _partial_reindex(settings: Settings, model_dir: Path) -> int:
    """Run a re-index that stops after its first committed batch (an interrupted run)."""
    import threading

    stop = threading.Event()
    small = settings.model_copy(deep=True)
    small.lifecycle = small.lifecycle.model_copy(update={"reindex_batch": 4})
    with reindex_session(small, model_dir) as reindexer:

        def after(done: BatchDone) -> None:
            if done.number >= 1:
                stop.set()

        return reindexer.run(stop=stop, batch=4, on_batch=after).batches


def test_set_live_moves_both_pointers_atomically_per_deployment(redis_url: str, unique_name: str) -> None:
    client = redis.Redis.from_url(redis_url)
    keys, other = RegistryKeys(unique_name), RegistryKeys(f"{unique_name}x")
    assert set_live(client, "v1", keys) is None
    assert set_live(client, "v2", keys) == "v1"
    assert set_live(client, "v2", keys) == "v2"  # no-op: the previous one is kept
    assert (live_version(client, keys), previous_version(client, keys)) == ("v2", "v1")
    assert live_version(client, other) is None  # another deployment's pointers are its own
    assert client.get(f"twinstream:model:live:{unique_name}") == b"v2"
