"""One background process the stack owns: started detached, tracked by a pid file, stopped by pid.

The stack never stops a process it did not start: a pid file records the pid together with the
process's start time, so a recycled pid is never mistaken for ours.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil


class StackError(RuntimeError):
    """A part of the stack failed to start or answer; the message names the log to read."""


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def wait_until(
    probe: Callable[[], bool], timeout_s: float, what: str, log: Path | None, interval_s: float = 0.25
) -> None:
    """Call ``probe`` until it returns True; raise StackError naming ``log`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if probe():
                return
        except StackError:
            raise
        except Exception as exc:  # a probe failing is the normal "not yet" while starting
            last_error = exc
        time.sleep(interval_s)
    hint = f"; read {log}" if log else ""
    cause = f" (last error: {last_error})" if last_error else ""
    raise StackError(f"{what} did not become ready within {timeout_s:.0f}s{cause}{hint}")


@dataclass(frozen=True, slots=True)
class PidRecord:
    pid: int
    create_time: float


class ManagedProcess:
    """A detached child process with a pid file and a log file under ``run_dir``."""

    def __init__(self, name: str, run_dir: Path) -> None:
        self.name = name
        self.run_dir = run_dir
        self.pid_file = run_dir / f"{name}.pid"
        self.log_file = run_dir / f"{name}.log"

    def start(
        self, argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: Path | None = None
    ) -> int:
        """Start ``argv`` in its own session (so it outlives the CLI) and record its pid."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        full_env = {**os.environ, **(env or {})}
        with self.log_file.open("ab") as log:
            log.write(f"\n==== {time.strftime('%F %T')} starting: {' '.join(argv)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                list(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=full_env,
                cwd=cwd,
                start_new_session=True,
            )
        record = PidRecord(proc.pid, psutil.Process(proc.pid).create_time())
        self.pid_file.write_text(f"{record.pid} {record.create_time}\n")
        return proc.pid

    def record(self) -> PidRecord | None:
        try:
            pid, created = self.pid_file.read_text().split()
            return PidRecord(int(pid), float(created))
        except (OSError, ValueError):
            return None

    def process(self) -> psutil.Process | None:
        """Our process if it still runs (same pid and start time), else None."""
        rec = self.record()
        if rec is None:
            return None
        try:
            proc = psutil.Process(rec.pid)
            if abs(proc.create_time() - rec.create_time) > 1.0 or proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return proc
        except psutil.Error:
            return None

    def alive(self) -> bool:
        return self.process() is not None

    def stop(self, timeout_s: float = 20.0, sig: int = signal.SIGTERM) -> bool:
        """Signal our process group, wait, then SIGKILL what remains. True if something was stopped."""
        proc = self.process()
        if proc is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        family = _family(proc)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        for member in family:
            with contextlib.suppress(psutil.Error):
                member.send_signal(sig)
        _gone, alive = psutil.wait_procs(family, timeout=timeout_s)
        for member in alive:
            with contextlib.suppress(psutil.Error):
                member.kill()
        psutil.wait_procs(alive, timeout=5)
        self.pid_file.unlink(missing_ok=True)
        return True

    def kill(self) -> None:
        """SIGKILL at once (tests use it to simulate a crash)."""
        self.stop(timeout_s=0.0, sig=signal.SIGKILL)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _family(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return [proc]
