"""Session fixtures of the system tests: a trained artifact, this process as a Ray driver, the deployed app.

The app is deployed once per session on the test stack's Ray head (1 replica, small CPU shares)
under its own app name, route prefix and collection prefix, with API keys configured (see
`tests.support.serving`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.serving import ADMIN_KEY, BOUND_TENANT, TENANT_KEY, ServedApp, deploy_app, serving_settings
from twinstream.config import Settings


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


@pytest.fixture(scope="session")
def served_app(
    ray_driver: str,
    stack_settings: Settings,
    redis_url: str,
    milvus_uri: str,
    kafka_bootstrap: str,
    model_dir: Path,
) -> Iterator[ServedApp]:
    """The app deployed once for the session (1 replica), with API keys configured (Kafka up: enrolments
    are written to the enrolment log)."""
    from ray import serve

    settings = serving_settings(
        stack_settings, "it4serve", api_keys={ADMIN_KEY: "*", TENANT_KEY: BOUND_TENANT}
    )
    app = deploy_app(settings, model_dir)
    yield app
    serve.delete(settings.serve.app_name)
