"""`twinstream ingest --workers N`: N worker processes in one consumer group, restarted if they crash.

Each worker is a separate ``python -m services.ingest.main`` process (its own consumer, producer and
Serve handle; a crash or ``kill -9`` of one leaves the others running and the group rebalances). On
SIGTERM/SIGINT the supervisor forwards the signal and waits for every worker's clean shutdown.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from twinstream.config import Settings, write_settings_file

log = logging.getLogger(__name__)
_RESTART_DELAY_S = 2.0
_STOP_GRACE_S = 60.0


def worker_command(index: int, settings_file: Path, pipeline_factory: str | None = None) -> list[str]:
    """The command line of worker ``index``."""
    cmd = [
        sys.executable,
        "-m",
        "services.ingest.main",
        "--index",
        str(index),
        "--settings-file",
        str(settings_file),
    ]
    if pipeline_factory:
        cmd += ["--pipeline-factory", pipeline_factory]
    return cmd


class Supervisor:
    """Starts, watches and stops N worker processes."""

    def __init__(self, settings: Settings, workers: int, *, pipeline_factory: str | None = None) -> None:
        self._settings = settings
        self._count = workers
        self._factory = pipeline_factory
        self._stop = threading.Event()
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._dir = tempfile.TemporaryDirectory(prefix="twinstream-ingest-")
        self._settings_file = write_settings_file(settings, Path(self._dir.name) / "settings.json")

    def _spawn(self, index: int) -> None:
        self._procs[index] = subprocess.Popen(worker_command(index, self._settings_file, self._factory))
        log.info("worker %d started (pid %d)", index, self._procs[index].pid)

    def request_stop(self) -> None:
        self._stop.set()

    def run(self) -> int:
        """Run until stopped; returns 0 when every worker shut down cleanly."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.request_stop())
        for index in range(self._count):
            self._spawn(index)
        while not self._stop.wait(0.5):
            for index, proc in list(self._procs.items()):
                if proc.poll() is not None:
                    log.warning("worker %d exited with %s; restarting", index, proc.returncode)
                    time.sleep(_RESTART_DELAY_S)
                    self._spawn(index)
        return self._shutdown()

    def _shutdown(self) -> int:
        for proc in self._procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + _STOP_GRACE_S
        codes = []
        for index, proc in self._procs.items():
            try:
                codes.append(proc.wait(timeout=max(0.1, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                log.error("worker %d did not stop in %.0fs; killing it", index, _STOP_GRACE_S)
                proc.kill()
                codes.append(proc.wait())
        self._dir.cleanup()
        return 0 if all(code == 0 for code in codes) else 1
