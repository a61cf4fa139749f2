"""Dependency probes the ingest worker asks after an unexplained failure (`failures.DependencyProbe`)."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import redis


class TcpReachable:
    """Healthy when a TCP connection to ``uri``'s host and port opens within ``timeout_s`` (e.g. Milvus).

    The worker reaches Milvus only through Serve, so it checks the port, not the protocol: a server that
    accepts but never answers shows up as timeouts in the pipeline's own errors instead.
    """

    def __init__(self, uri: str, timeout_s: float = 2.0, default_port: int = 19530) -> None:
        parts = urlsplit(uri if "://" in uri else f"tcp://{uri}")
        self._address = (parts.hostname or "127.0.0.1", parts.port or default_port)
        self._timeout_s = timeout_s

    def dependencies_healthy(self) -> bool:
        try:
            with socket.create_connection(self._address, timeout=self._timeout_s):
                return True
        except OSError:
            return False


class RedisPing:
    """Healthy when Redis answers PING within the client's own timeouts (the result store's Redis)."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    def dependencies_healthy(self) -> bool:
        try:
            return bool(self._client.ping())
        except (redis.RedisError, OSError):
            return False
