"""Fixtures shared by the serving and gallery integration tests: a trained artifact and a deployed app.

The app is deployed once per session on the test stack's Ray head (1 embedder replica, small CPU
shares) under its own app name, route prefix and collection prefix, so it never collides with the
stream's app. API keys are configured: `ADMIN_KEY` may use any tenant, `TENANT_KEY` only `BOUND_TENANT`.
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from PIL import Image

from twinstream.artifact import Manifest, load_artifact
from twinstream.config import Settings

ADMIN_KEY = "it-admin-" + uuid.uuid4().hex[:8]
TENANT_KEY = "it-tenant-" + uuid.uuid4().hex[:8]
BOUND_TENANT = "bound" + uuid.uuid4().hex[:6]
# The stack's Ray head requires token auth; Ray reads the mode when it is first imported.
os.environ.setdefault("RAY_AUTH_MODE", "token")


def png_bytes(img: Image.Image) -> bytes:
    """PNG encoding of an image."""
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def serving_settings(base: Settings, name: str, **serve: object) -> Settings:
    """A copy of the stack's settings for one test app: its own app name, route prefix and collections."""
    settings = base.model_copy(deep=True)
    settings.serve = settings.serve.model_copy(
        update={
            "app_name": name,
            "route_prefix": f"/{name}",
            "cpus_per_replica": 0.25,
            "ingress_cpus": 0.25,
            "threads_per_replica": 1,
            **serve,
        }
    )
    settings.milvus = settings.milvus.model_copy(update={"collection_prefix": name})
    return settings


@dataclass
class ServedApp:
    """A deployed app: its settings, HTTP base URL, pipeline handle and model manifest."""

    settings: Settings
    url: str
    handle: object
    manifest: Manifest
    model_dir: Path

    def client(self, key: str = ADMIN_KEY, timeout: float = 60.0) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real small artifact trained on scikit-learn's digits (~30 s on one core)."""
    from training.quick import train_quick

    return train_quick(tmp_path_factory.mktemp("models"), dataset="digits", seed=0)


@pytest.fixture(scope="session")
def ray_driver(ray_address: str) -> Iterator[str]:
    """This process connected to the test stack's Ray head as a driver."""
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(address=ray_address, log_to_driver=False)
    yield ray_address
    if started:
        ray.shutdown()  # before the stack's head goes down


def deploy_app(settings: Settings, model_dir: Path) -> ServedApp:
    """Deploy the app with ``settings`` and wait until it answers."""
    from ray import serve

    from services.app import PIPELINE_DEPLOYMENT, deploy

    url = deploy(settings, model_dir)
    handle = serve.get_deployment_handle(PIPELINE_DEPLOYMENT, app_name=settings.serve.app_name)
    return ServedApp(settings, url, handle, load_artifact(model_dir).manifest, model_dir)


@pytest.fixture(scope="session")
def served_app(
    ray_driver: str, stack_settings: Settings, redis_url: str, milvus_uri: str, model_dir: Path
) -> Iterator[ServedApp]:
    """The app deployed once for the session (1 embedder replica), with API keys configured."""
    from ray import serve

    settings = serving_settings(
        stack_settings, "it4serve", api_keys={ADMIN_KEY: "*", TENANT_KEY: BOUND_TENANT}
    )
    app = deploy_app(settings, model_dir)
    yield app
    serve.delete(settings.serve.app_name)
