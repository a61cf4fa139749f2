"""A replica killed under load is replaced, and requests succeed again (an app of 2 replicas)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.deployments import PIPELINE_DEPLOYMENT
from tests.support.serving import ServedApp, deploy_app, png_bytes, serving_settings
from tests.support.waiting import wait_until
from twinstream.config import Settings
from twinstream.contracts import Decision, ImageRequest, Op

pytestmark = pytest.mark.system


@pytest.fixture
def two_replica_app(
    served_app: ServedApp, stack_settings: Settings, model_dir: Path, unique_name: str
) -> Iterator[ServedApp]:
    """A second app with 2 replicas (the session app, kept at 1 replica, brings up the stack)."""
    from ray import serve

    app = deploy_app(serving_settings(stack_settings, f"it4kill{unique_name}", replicas=2), model_dir)
    yield app
    serve.delete(app.settings.serve.app_name)


def _replicas(app_name: str) -> set[str]:
    import ray

    return {
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith(f"SERVE_REPLICA::{app_name}#{PIPELINE_DEPLOYMENT}#")
    }


def _running(app_name: str) -> int:
    from ray import serve

    states = serve.status().applications[app_name].deployments[PIPELINE_DEPLOYMENT].replica_states
    return sum(count for state, count in states.items() if str(state) == "RUNNING")


def test_killed_replica_is_replaced_and_requests_succeed_again(
    two_replica_app: ServedApp, unique_name: str
) -> None:
    import ray
    from PIL import Image

    app_name = two_replica_app.settings.serve.app_name
    image = png_bytes(Image.effect_noise((16, 16), 40).convert("L"))
    outcomes: list[tuple[float, bool]] = []
    stop = threading.Event()

    def load() -> None:
        n = 0
        while not stop.is_set():
            # Distinct bytes per request (after PNG's end chunk), so the embedding cache never answers.
            batch = [
                ImageRequest(f"{unique_name}-{n}-{i}", Op.IDENTIFY, image + f"{n}-{i}".encode(), unique_name)
                for i in range(4)
            ]
            n += 1
            try:
                results = two_replica_app.handle.process.remote(batch).result(timeout_s=30)  # type: ignore[attr-defined]
                outcomes.append((time.monotonic(), all(r.decision == Decision.UNKNOWN for r in results)))
            except Exception:  # any failure under load is what this test counts
                outcomes.append((time.monotonic(), False))

    before = _replicas(app_name)
    assert len(before) == 2
    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    wait_until(lambda: sum(ok for _, ok in outcomes) >= 3, 60, "three answered batches before the kill")
    victim = sorted(before)[0]
    ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
    killed_at = time.monotonic()
    wait_until(
        lambda: victim not in (now := _replicas(app_name)) and len(now) == 2 and _running(app_name) == 2,
        90,
        "the killed replica's replacement to be RUNNING",
    )
    replaced_at = time.monotonic()
    wait_until(lambda: sum(1 for t, _ in outcomes if t > replaced_at) >= 5, 60, "five batches after it")
    stop.set()
    worker.join(timeout=60)

    assert victim not in _replicas(app_name)
    assert _running(app_name) == 2, "the killed replica was not replaced"
    after = [ok for t, ok in outcomes if t > replaced_at]
    assert after and all(after), "requests failed after the replacement came up"
    during = [ok for t, ok in outcomes if killed_at <= t <= replaced_at]
    print(f"replaced in {replaced_at - killed_at:.1f}s")
    print(f"ok {sum(during)}/{len(during)} while replacing, {len(after)} after")
    assert sum(during) >= 0.9 * len(during), "the surviving replica did not carry the load"
