"""Ray head helpers for the stack: the job-API probe and stopping exactly our session's processes."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import urllib.request
from pathlib import Path

import psutil

AUTH_MODE_ENV = "RAY_AUTH_MODE"


def auth_token_path() -> Path:
    """Where Ray reads its token (RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token)."""
    return Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))


def ensure_auth_token() -> str:
    """The cluster token, created once (Ray's own format: 64 hex chars) when none exists.

    The stack always runs Ray with token authentication: anyone who reaches an unauthenticated Ray
    can run code on it. Clients need RAY_AUTH_MODE=token (`use_token_auth`) and this file.
    """
    if token := os.environ.get("RAY_AUTH_TOKEN"):
        return token
    path = auth_token_path()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


def use_token_auth() -> None:
    """Make Ray clients in this process (ray.init, JobSubmissionClient, serve) send the token."""
    os.environ[AUTH_MODE_ENV] = "token"
    ensure_auth_token()


def job_api_ok(dashboard_url: str, timeout: float = 3.0) -> bool:
    """True when Ray's job API answers a list request (the dashboard alone is not enough)."""
    request = urllib.request.Request(
        f"{dashboard_url}/api/jobs/", headers={"Authorization": f"Bearer {ensure_auth_token()}"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status == 200 and isinstance(json.loads(response.read()), list)


def session_processes(temp_dir: Path) -> list[psutil.Process]:
    """Processes whose command line names our Ray temp dir: ours, and only ours."""
    marker = str(temp_dir)
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any(marker in part for part in proc.info["cmdline"] or ()):
                found.append(proc)
    return found


def kill_session_processes(temp_dir: Path, timeout_s: float = 10.0) -> bool:
    """Terminate what is left of our Ray session (workers, raylet, GCS); never `ray stop`."""
    procs = session_processes(temp_dir)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _gone, alive = psutil.wait_procs(procs, timeout=timeout_s)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    return bool(procs)
