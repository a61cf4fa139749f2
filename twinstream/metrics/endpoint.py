"""A process's own ``/metrics`` HTTP endpoint, registered with the local Prometheus through file-SD.

The configured port is tried first; when it is taken (a second worker or trainer on the same host, a
test stack beside a dev stack) an ephemeral port is used instead and that is what gets registered, so
Prometheus always scrapes the port actually served.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, disable_created_metrics, start_http_server

log = logging.getLogger(__name__)


@dataclass
class MetricsEndpoint:
    """A running ``/metrics`` server; `close` stops it and removes its scrape-target file."""

    port: int
    target_file: Path | None
    _server: WSGIServer
    _thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and unregister (a stopped process must not linger as a down target)."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        if self.target_file is not None:
            with contextlib.suppress(FileNotFoundError):
                self.target_file.unlink()

    def __enter__(self) -> MetricsEndpoint:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def start_endpoint(
    registry: CollectorRegistry,
    port: int,
    *,
    state_dir: Path | None = None,
    job: str = "",
    name: str = "",
    host: str = "127.0.0.1",
) -> MetricsEndpoint:
    """Serve ``registry`` on ``host:port`` (or an ephemeral port when taken) and register it.

    Args:
        registry: What to serve.
        port: The preferred port (0 = any free port).
        state_dir: The local stack's state directory; when it holds the stack's Prometheus, a file-SD
            entry is written there (elsewhere, e.g. in a container, nothing is written).
        job: Prometheus job label of the entry (``twinstream-ingest``, ``twinstream-training``).
        name: Unique name of this process within the job (the file name and ``instance_name`` label).
        host: Interface to listen on.
    """
    # No ``*_created`` companion series: they double the series count and no dashboard reads them.
    disable_created_metrics()
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        log.warning("metrics port %d is taken (%s); serving /metrics on an ephemeral port", port, exc)
        server, thread = start_http_server(0, addr=host, registry=registry)
    actual = int(server.server_port)
    target = None
    if state_dir is not None and (state_dir / "prometheus").is_dir():
        target = register_scrape_target(state_dir, job, name, actual)
    log.info("serving metrics on http://%s:%d/metrics (job %s)", host, actual, job or "-")
    return MetricsEndpoint(actual, target, server, thread)


def register_scrape_target(state_dir: Path, job: str, name: str, port: int) -> Path:
    """Write a Prometheus file-SD entry so the local Prometheus scrapes a process's /metrics."""
    target_dir = state_dir / "prometheus" / "targets"
    target_dir.mkdir(parents=True, exist_ok=True)
    path = target_dir / f"{job}-{name}.json"
    entry = [{"targets": [f"127.0.0.1:{port}"], "labels": {"job": job, "instance_name": name}}]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(entry))
    tmp.replace(path)
    return path
