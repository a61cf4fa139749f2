"""Helpers for tests that deploy the Serve app: per-test settings, a deployed-app handle, keys.

The session's app (tests/system/conftest.py) is deployed once on the test stack's Ray head under its
own app name, route prefix and collection prefix, so it never collides with another test's app.
API keys: `ADMIN_KEY` may use any tenant, `TENANT_KEY` only `BOUND_TENANT`.
"""

from __future__ import annotations

import io
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
from PIL import Image

from twinstream.config import Settings
from twinstream.model.artifact import Manifest, load_artifact

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


def deploy_app(settings: Settings, model_dir: Path) -> ServedApp:
    """Deploy the app with ``settings`` and wait until it answers."""
    from ray import serve

    from services.app import deploy
    from services.deployments import PIPELINE_DEPLOYMENT

    url = deploy(settings, model_dir)
    handle = serve.get_deployment_handle(PIPELINE_DEPLOYMENT, app_name=settings.serve.app_name)
    return ServedApp(settings, url, handle, load_artifact(model_dir).manifest, model_dir)
