"""Unexpected exceptions in the HTTP API: an outage is 503 with Retry-After, a bug 500 with an error id."""

from __future__ import annotations

import asyncio
import errno
import logging

import httpx
import pytest
import redis
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from pymilvus.exceptions import MilvusException

from services.api.routes import RETRY_AFTER_S, install_error_handlers
from services.errors import is_dependency_failure


def _client(exc: Exception) -> TestClient:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    async def boom() -> None:
        raise exc

    # raise_server_exceptions=False: see what a real client sees, even if the server re-raised.
    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize(
    "exc",
    [
        redis.ConnectionError("Error 111 connecting to localhost:6379. Connection refused."),
        redis.TimeoutError("Timeout reading from socket"),
        MilvusException(code=2, message="Fail connecting to server on 127.0.0.1:19531"),
        ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"),
        httpx.ConnectError("[Errno 111] Connection refused"),
        redis.ResponseError(
            "Error running script (call to f_6c76): @user_script:3: @user_script: 3: -OOM command not "
            "allowed when used memory > 'maxmemory'."
        ),
    ],
    ids=[
        "redis-down",
        "redis-timeout",
        "milvus-down",
        "socket-refused",
        "httpx-refused",
        "redis-oom-in-script",
    ],
)
def test_a_dependency_outage_is_503_unavailable_with_retry_after(exc: Exception) -> None:
    response = _client(exc).get("/boom")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == str(RETRY_AFTER_S)
    body = response.json()
    assert body["reason"] == "unavailable"
    assert type(exc).__name__ not in body["detail"]  # callers are not told our internals


def test_a_bug_is_500_with_an_error_id_that_the_log_line_and_traceback_carry(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="services.api.routes"):
        response = _client(KeyError("model_version")).get("/boom")
    assert response.status_code == 500
    body = response.json()
    assert body["reason"] == "internal"
    assert body["error_id"] in body["detail"]
    assert "KeyError" not in body["detail"] and "Retry-After" not in response.headers
    (record,) = [r for r in caplog.records if body["error_id"] in r.getMessage()]
    assert record.exc_info is not None and record.exc_info[0] is KeyError  # the traceback is logged


def test_a_bug_that_wraps_a_dependency_outage_is_still_an_outage() -> None:
    try:
        try:
            raise redis.ConnectionError("refused")
        except redis.ConnectionError as inner:
            raise RuntimeError("batch failed") from inner
    except RuntimeError as outer:
        assert is_dependency_failure(outer)
    assert _client(RuntimeError("plain")).get("/boom").status_code == 500


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("bad"),
        KeyError("k"),
        redis.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
        redis.ResponseError("Error running script (call to f_1): @user_script:3: attempt to compare nil"),
        MilvusException(code=1100, message="invalid filter expression"),
        FileNotFoundError(errno.ENOENT, "missing"),
        ExceptionGroup("mixed", [redis.ConnectionError("down"), ValueError("bug")]),
    ],
    ids=[
        "value",
        "key",
        "redis-wrongtype",
        "redis-script-bug",
        "milvus-bad-filter",
        "file-missing",
        "mixed-group",
    ],
)
def test_bugs_are_not_dependency_failures(exc: BaseException) -> None:
    assert not is_dependency_failure(exc)


def test_ray_and_kafka_outages_are_dependency_failures() -> None:
    import kafka.errors
    import ray.exceptions
    from ray.serve.exceptions import BackPressureError

    assert is_dependency_failure(ray.exceptions.ActorUnavailableError("replica gone", None))
    assert is_dependency_failure(BackPressureError(num_queued_requests=10, max_queued_requests=5))
    assert is_dependency_failure(kafka.errors.KafkaTimeoutError("Unable to bootstrap"))
    assert is_dependency_failure(kafka.errors.KafkaConnectionError("refused"))
    assert not is_dependency_failure(kafka.errors.MessageSizeTooLargeError("too big"))
    assert is_dependency_failure(ExceptionGroup("all down", [redis.ConnectionError("a"), TimeoutError()]))


def test_a_client_that_leaves_mid_body_is_neither_a_bug_nor_an_outage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/upload")
    async def upload(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/upload", "headers": [], "query_string": b"",
             "http_version": "1.1", "scheme": "http", "server": ("t", 80), "root_path": ""}  # fmt: skip
    with caplog.at_level(logging.INFO, logger="services.api.routes"):
        asyncio.run(app(scope, receive, send))  # type: ignore[arg-type]
    assert sent == []  # nobody to answer
    assert [r.levelno for r in caplog.records] == [logging.INFO]
