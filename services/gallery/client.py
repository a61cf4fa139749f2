"""One way to open a Milvus client: gRPC keepalive the milvus-lite server accepts, and timeouts on every call.

pymilvus pings every 10 s even on an idle channel; a gRPC Python server (milvus-lite's) allows one
ping per 5 minutes without data and answers more with GOAWAY "too_many_pings", after which the shared
channel cannot reconnect. Pinging every 6 minutes, and only during calls, keeps long-lived clients (Serve
replicas, test processes) healthy against milvus-lite and costs nothing against Milvus standalone.

pymilvus 3.0's ``MilvusClient(timeout=...)`` bounds only the connect: every call waits forever unless it
is given its own ``timeout`` (which also bounds pymilvus' internal retries). `TimedMilvusClient` gives
each call the configured one, so a Milvus that stops answering fails a call instead of hanging the
replica or worker that made it.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable
from typing import Any

from pydantic import SecretStr
from pymilvus import MilvusClient
from pymilvus.exceptions import MilvusException

from twinstream.config import MilvusSettings

GRPC_OPTIONS = {"grpc.keepalive_time_ms": 360_000, "grpc.keepalive_permit_without_calls": False}
#: The connect and per-call timeout when a caller names none (`MilvusSettings.timeout_s`'s default).
DEFAULT_TIMEOUT_S = MilvusSettings.model_fields["timeout_s"].default


class TimedMilvusClient(MilvusClient):  # type: ignore[misc]
    """A `MilvusClient` whose every call that takes a ``timeout`` gets ``call_timeout_s`` unless given one."""

    def __init__(self, *, call_timeout_s: float, **kwargs: Any) -> None:
        self.call_timeout_s = call_timeout_s
        super().__init__(**kwargs)


def _with_default_timeout(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(self: TimedMilvusClient, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.call_timeout_s
        return method(self, *args, **kwargs)

    return call


def _timed_methods() -> list[str]:
    """MilvusClient's public methods that accept a ``timeout`` keyword (search, query, upsert, …)."""
    return [
        name
        for name, member in inspect.getmembers(MilvusClient, inspect.isfunction)
        if not name.startswith("_") and "timeout" in inspect.signature(member).parameters
    ]


for _name in _timed_methods():
    setattr(TimedMilvusClient, _name, _with_default_timeout(getattr(MilvusClient, _name)))


def connect(
    uri: str, token: str | SecretStr = "", *, attempts: int = 3, timeout: float = DEFAULT_TIMEOUT_S
) -> TimedMilvusClient:
    """A client for ``uri`` whose connect and every call time out after ``timeout`` seconds.

    A failed connect (a stale shared channel) is retried ``attempts`` times. ``token`` may be the
    settings' `SecretStr` (``settings.milvus.token``): it is unwrapped only here.
    """
    if isinstance(token, SecretStr):
        token = token.get_secret_value()
    for attempt in range(attempts):
        try:
            return TimedMilvusClient(
                call_timeout_s=timeout, uri=uri, token=token, timeout=timeout, grpc_options=dict(GRPC_OPTIONS)
            )
        except MilvusException:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def connect_with(settings: MilvusSettings) -> TimedMilvusClient:
    """`connect` to ``settings.uri`` with the configured token and timeout (what composition roots call)."""
    return connect(settings.uri, settings.token, timeout=settings.timeout_s)
