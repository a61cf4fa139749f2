"""What each client really raises when its server is down, and that `is_dependency_failure` says so.

Closed ports (nothing listens), a port that accepts but never answers, and real Redis and milvus-lite
servers stopped under a connected client: the errors the HTTP API must answer with 503 and an ingest
worker must retry.
"""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis
from pymilvus import MilvusClient

from cli.stack import Stack, free_port
from services.errors import is_dependency_failure
from services.gallery.client import connect
from twinstream.config import load_settings

pytestmark = pytest.mark.integration


def _raised(call: Callable[[], object]) -> BaseException:
    with pytest.raises(Exception) as info:  # the type is what this test finds out
        call()
    return info.value


@pytest.fixture
def closed_port() -> int:
    return free_port()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose listener accepts connections (the kernel's backlog) and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    yield listener.getsockname()[1]
    listener.close()


def test_clients_against_a_closed_port_raise_dependency_failures(closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}/"
    raised = {
        "redis": _raised(lambda: redis.Redis(port=closed_port, socket_connect_timeout=2).ping()),
        "httpx": _raised(lambda: httpx.get(url, timeout=2)),
        "urllib": _raised(lambda: urllib.request.urlopen(url, timeout=2)),
        "socket": _raised(lambda: socket.create_connection(("127.0.0.1", closed_port), timeout=2)),
        "milvus": _raised(lambda: MilvusClient(uri=url, timeout=5)),
    }
    assert isinstance(raised["redis"], redis.ConnectionError)
    assert isinstance(raised["httpx"], httpx.ConnectError)
    assert isinstance(raised["urllib"], urllib.error.URLError)
    assert isinstance(raised["socket"], ConnectionRefusedError)
    assert getattr(raised["milvus"], "code", None) == 2  # pymilvus Status.CONNECT_FAILED
    assert {name: is_dependency_failure(exc) for name, exc in raised.items()} == dict.fromkeys(raised, True)


def test_a_server_that_never_answers_is_a_timeout_and_a_dependency_failure(silent_port: int) -> None:
    # retry=None: redis-py 8's default retries make this same call take ~36 s before it raises.
    client = redis.Redis(port=silent_port, socket_timeout=0.3, socket_connect_timeout=0.3, retry=None)  # type: ignore[arg-type]
    raised = _raised(client.ping)
    assert isinstance(raised, redis.TimeoutError)
    assert is_dependency_failure(raised)
    raised = _raised(lambda: httpx.get(f"http://127.0.0.1:{silent_port}/", timeout=0.3))
    assert isinstance(raised, httpx.TimeoutException)
    assert is_dependency_failure(raised)


def test_servers_stopped_under_connected_clients_raise_dependency_failures(tmp_path: Path) -> None:
    settings = load_settings(
        redis={"port": (rport := free_port()), "url": f"redis://127.0.0.1:{rport}/0"},
        milvus={"port": (mport := free_port()), "uri": f"http://127.0.0.1:{mport}"},
    )
    stack = Stack(settings, tmp_path)
    stack.up(["redis", "milvus"])
    try:
        rds = redis.Redis.from_url(settings.redis.url)
        rds.set("k", "v")
        milvus = connect(settings.milvus.uri, timeout=5)
        milvus.create_collection("c", dimension=4)
    finally:
        stack.down(["redis", "milvus"])
    lost_redis = _raised(lambda: rds.mget(["k"]))
    lost_milvus = _raised(lambda: milvus.query("c", filter="id >= 0", limit=1))
    assert isinstance(lost_redis, redis.ConnectionError)
    assert type(lost_milvus).__name__ == "MilvusException"
    assert is_dependency_failure(lost_redis) and is_dependency_failure(lost_milvus)
