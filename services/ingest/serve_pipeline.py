"""`PreparingPipeline` over the Ray Serve app's pipeline deployment handle (the production pipeline).

The handle is looked up lazily and dropped after a failure, so a worker started before the app is
deployed, or one whose Serve controller restarted, reconnects on its next retry instead of dying. The
served model's input spec is asked once per connection and forgotten with the handle, so a batch refused
as prepared for a stale spec (the model was redeployed) is re-prepared for the new one on the retry.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from twinstream.config import Settings
from twinstream.contracts import ImageRequest, MatchResult
from twinstream.images.prepared import PreparedBatch
from twinstream.images.preprocess import InputSpec

log = logging.getLogger(__name__)


class ServePipeline:
    """Calls ``process`` on the Serve deployment ``PIPELINE_DEPLOYMENT`` of app ``settings.serve.app_name``.

    The deployment stores every result it returns in Redis (``stores_results``), so the worker writes
    only its own refusals there.

    Args:
        settings: Ray address and Serve app name.
        timeout_s: Longest wait for one batch's answer before it counts as a dependency failure.
    """

    stores_results = True

    def __init__(self, settings: Settings, *, timeout_s: float = 120.0) -> None:
        self._settings = settings
        self._timeout_s = timeout_s
        self._handle: Any = None
        self._spec: InputSpec | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Connect this process to the Ray cluster as a driver (no-op if already connected).

        Call it before installing signal handlers: Ray's core installs its own SIGTERM handler, which
        a later ``signal.signal`` replaces (so a worker's clean shutdown is not turned into an abort).
        """
        import ray

        if not ray.is_initialized():
            address = self._settings.ray.address or f"127.0.0.1:{self._settings.ray.gcs_port}"
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)

    def close(self) -> None:
        """Disconnect from Ray if this object connected it."""
        import ray

        self._handle, self._spec = None, None
        if ray.is_initialized():
            ray.shutdown()

    def _connect(self) -> Any:
        from ray import serve

        from services.deployments import PIPELINE_DEPLOYMENT

        with self._lock:
            if self._handle is None:
                self.start()
                self._handle = serve.get_deployment_handle(
                    PIPELINE_DEPLOYMENT, app_name=self._settings.serve.app_name
                )
                log.info("connected to Serve app %r", self._settings.serve.app_name)
            return self._handle

    def process(self, requests: Sequence[ImageRequest]) -> Sequence[MatchResult]:
        """One batched call; raises whatever Ray raises when Serve (or what it calls) is down."""
        return self._call("process", list(requests))  # type: ignore[no-any-return]

    def process_prepared(self, batch: PreparedBatch) -> Sequence[MatchResult]:
        """One batched call with decoded images (raises `StaleInputSpecError` after a redeploy)."""
        return self._call("process_prepared", batch)  # type: ignore[no-any-return]

    def input_spec(self) -> InputSpec:
        """The served model's input spec (asked once per connection)."""
        if self._spec is None:
            self._spec = self._call("input_spec")
        return self._spec

    def dependencies_healthy(self, timeout_s: float = 5.0) -> bool:
        """Whether the Serve app answers a cheap call (`services.ingest.failures.DependencyProbe`)."""
        try:
            self._call("input_spec", timeout_s=timeout_s)
        except Exception:  # any failure to answer is the answer
            return False
        return True

    def _call(self, method: str, *args: Any, timeout_s: float | None = None) -> Any:
        handle = self._connect()
        try:
            return getattr(handle, method).remote(*args).result(timeout_s=timeout_s or self._timeout_s)
        except Exception:
            self._handle, self._spec = None, None  # look the app and its model up again next time
            raise
