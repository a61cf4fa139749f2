"""One way to open a Milvus client, with gRPC keepalive the milvus-lite server accepts.

pymilvus pings every 10 s even on an idle channel; a gRPC Python server (milvus-lite's) allows one
ping per 5 minutes without data and answers more with GOAWAY "too_many_pings", after which the shared
channel cannot reconnect. Pinging every 6 minutes, and only during calls, keeps long-lived clients (Serve
replicas, test processes) healthy against milvus-lite and costs nothing against Milvus standalone.
"""

from __future__ import annotations

import time

from pydantic import SecretStr
from pymilvus import MilvusClient
from pymilvus.exceptions import MilvusException

GRPC_OPTIONS = {"grpc.keepalive_time_ms": 360_000, "grpc.keepalive_permit_without_calls": False}


def connect(
    uri: str, token: str | SecretStr = "", *, attempts: int = 3, timeout: float | None = None
) -> MilvusClient:
    """A MilvusClient for ``uri``; retries a failed connect (a stale shared channel) a few times.

    ``token`` may be the settings' `SecretStr` (``settings.milvus.token``): it is unwrapped only here.
    """
    if isinstance(token, SecretStr):
        token = token.get_secret_value()
    for attempt in range(attempts):
        try:
            return MilvusClient(uri=uri, token=token, timeout=timeout, grpc_options=dict(GRPC_OPTIONS))
        except MilvusException:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")
