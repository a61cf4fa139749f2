"""testcontainers for the suite when a Docker engine answers; without one, the same services run as processes.

The fixtures in tests/conftest.py ask `docker_available()` first and, when it says yes, take Kafka and
Redis from these containers; otherwise they start the same parts as local processes through
`cli.stack`. Milvus and Ray always run locally (milvus-lite server, `ray start --head`).
Set TWINSTREAM_TEST_DOCKER=0 to force local processes even where Docker answers.
"""

from __future__ import annotations

import functools
import os
from typing import Any


@functools.cache
def docker_available() -> bool:
    """True when a Docker engine answers a ping within 2 s (fails in ~10 ms where none runs)."""
    if os.environ.get("TWINSTREAM_TEST_DOCKER", "1") == "0":
        return False
    try:
        import docker

        client = docker.from_env(timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # no socket, no permission, no daemon: all mean "use local processes"
        return False


def start_kafka_container() -> tuple[Any, str]:  # pragma: no cover - needs Docker
    """An apache/kafka (KRaft) container; returns (container, bootstrap)."""
    from testcontainers.kafka import KafkaContainer

    container = KafkaContainer("apache/kafka:4.1.1").with_kraft()
    container.start()
    return container, container.get_bootstrap_server()


def start_redis_container() -> tuple[Any, str]:  # pragma: no cover - needs Docker
    """A redis:7 container; returns (container, url)."""
    from testcontainers.community.redis import RedisContainer

    container = RedisContainer("redis:7")
    container.start()
    host = container.get_container_host_ip()
    return container, f"redis://{host}:{container.get_exposed_port(6379)}/0"
