"""Session-scoped real services for the integration and system tests.

Every part is started through `cli.stack.Stack` (the code users run) on free loopback ports in a
temporary state directory, so the suite never touches a developer's running stack. When a Docker engine
answers, Kafka and Redis come from testcontainers instead (see tests/support/containers.py). Parts
start lazily: a unit-only run starts nothing.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cli.stack import Stack, State, free_port
from tests.support.containers import docker_available, start_kafka_container, start_redis_container
from twinstream.config import Settings, load_settings

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """torch on one thread for the test: multi-threaded BLAS/OpenMP crawls on 2 shared cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _test_settings() -> Settings:
    """Settings for a private stack: every port free, everything else default."""
    kafka_port = free_port()
    return load_settings(
        kafka={
            "port": kafka_port,
            "bootstrap": f"127.0.0.1:{kafka_port}",
            "controller_port": free_port(),
            "partitions": 4,
        },
        redis={"port": (redis_port := free_port()), "url": f"redis://127.0.0.1:{redis_port}/0"},
        milvus={"port": (milvus_port := free_port()), "uri": f"http://127.0.0.1:{milvus_port}"},
        ray={
            "gcs_port": free_port(),
            "dashboard_port": free_port(),
            "client_port": free_port(),
            "metrics_export_port": free_port(),
            "dashboard_agent_port": free_port(),
            "haproxy_stats_port": free_port(),
            "haproxy_metrics_port": free_port(),
        },
        serve={"http_port": free_port()},
        metrics={
            "ingest_base_port": free_port(),
            "training_port": free_port(),
            "prometheus_port": free_port(),
        },
    )


@pytest.fixture(scope="session")
def test_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    settings = _test_settings()
    # Processes under test register their /metrics with this stack's Prometheus, not a dev stack's.
    settings.paths.state_dir = tmp_path_factory.mktemp("stack")
    stack = Stack(settings, settings.paths.state_dir)
    yield stack
    stack.down(grace_s=1.0)  # its state directory is thrown away: no clean shutdown to wait for


def ensure_part(stack: Stack, name: str) -> None:
    """Start one part (idempotent); skip with the precise reason when its binary is absent here."""
    status = stack.part(name).up()
    if status.state is State.ABSENT:
        reason = f"{name} cannot run on this machine: {status.note}"
        if os.environ.get("CI"):  # CI installs every part (make test → scripts/setup.sh): absent is a failure
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def stack_settings(test_stack: Stack) -> Settings:
    """Settings pointing at the test stack (parts start when their own fixture is first used)."""
    return test_stack.settings


@dataclass
class KafkaBrokerHandle:
    """The test broker, with the stop/start/restart the delivery tests need."""

    stack: Stack
    container: Any = None  # a testcontainers KafkaContainer when Docker answers

    @property
    def bootstrap(self) -> str:
        return self.stack.settings.kafka.bootstrap

    def restart(self) -> None:
        if self.container is not None:  # pragma: no cover - needs Docker
            self.container.get_wrapped_container().restart()
            return
        self.stack.restart("kafka")

    def stop(self) -> None:
        if self.container is not None:  # pragma: no cover - needs Docker
            self.container.get_wrapped_container().stop()
            return
        self.stack.down(["kafka"])

    def start(self) -> None:
        if self.container is not None:  # pragma: no cover - needs Docker
            self.container.get_wrapped_container().start()
            return
        ensure_part(self.stack, "kafka")


@pytest.fixture(scope="session")
def kafka_broker(test_stack: Stack) -> Iterator[KafkaBrokerHandle]:
    if docker_available():  # pragma: no cover - no Docker engine on our machines
        container, bootstrap = start_kafka_container()
        test_stack.settings.kafka.bootstrap = bootstrap
        yield KafkaBrokerHandle(test_stack, container)
        container.stop()
        return
    ensure_part(test_stack, "kafka")
    yield KafkaBrokerHandle(test_stack)


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: KafkaBrokerHandle) -> str:
    return kafka_broker.bootstrap


@pytest.fixture(scope="session")
def sasl_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A second broker, started by the stack code in sasl-scram mode with tenants bound to topics.

    It runs on its own free ports and state dir (Docker or not: the mode is the stack's own), beside the
    plaintext broker the other tests use. The settings returned log in as its admin (the super user).
    """
    port = free_port()
    settings = load_settings(
        kafka={
            "port": port,
            "bootstrap": f"127.0.0.1:{port}",
            "controller_port": free_port(),
            "partitions": 2,
            "security": "sasl-scram",
            "tenant_binding": "topic",
            "sasl_username": "admin",
            "sasl_password": secrets.token_hex(16),
        },
    )
    settings.paths.state_dir = tmp_path_factory.mktemp("sasl-stack")
    stack = Stack(settings, settings.paths.state_dir)
    ensure_part(stack, "kafka")
    yield settings
    stack.down(["kafka"])


@pytest.fixture(scope="session")
def redis_url(test_stack: Stack) -> Iterator[str]:
    if docker_available():  # pragma: no cover - no Docker engine on our machines
        container, url = start_redis_container()
        test_stack.settings.redis.url = url
        yield url
        container.stop()
        return
    ensure_part(test_stack, "redis")
    yield test_stack.settings.redis.url


@pytest.fixture(scope="session")
def milvus_uri(test_stack: Stack) -> str:
    ensure_part(test_stack, "milvus")
    return test_stack.settings.milvus.uri


@pytest.fixture(scope="session")
def prometheus_url(test_stack: Stack) -> str:
    ensure_part(test_stack, "prometheus")
    return test_stack.part("prometheus").endpoint


@pytest.fixture(scope="session")
def ray_address(test_stack: Stack) -> str:
    from cli.stack.raytools import use_token_auth

    ensure_part(test_stack, "ray")
    use_token_auth()  # the stack's Ray requires the token; ray.init/JobSubmissionClient then send it
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.1")
    return test_stack.part("ray").endpoint


@pytest.fixture(scope="session")
def ray_dashboard_url(ray_address: str, test_stack: Stack) -> str:
    return test_stack.settings.ray.dashboard_url


@pytest.fixture
def unique_name() -> str:
    """A name for per-test topics, collections and tenants."""
    return "t" + uuid.uuid4().hex[:10]
