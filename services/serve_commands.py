"""What the CLI's ``serve``, ``enroll``, ``verify`` and ``identify`` commands do (the typer app mounts them).

``serve`` deploys the app to the running Ray cluster; the others are thin HTTP clients of the API that
print one row per file (a rich table, or JSON for scripts) and return an exit code.
"""

from __future__ import annotations

import json
import mimetypes
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from twinstream.config import Settings

API_KEY_ENV = "TWINSTREAM_API_KEY"


def serve_command(settings: Settings, model_dir: Path, console: Console | None = None) -> str:
    """Deploy ``model_dir`` to the Ray cluster (``RAY_ADDRESS`` / settings) and print the API URL."""
    from services.app import deploy  # imports Ray: only for this command

    url = deploy(settings, model_dir)
    (console or Console()).print(f"twinstream API: {url}  (docs: {url}/docs)")
    return url


@dataclass(frozen=True, slots=True)
class Reply:
    """One file's answer: HTTP status and JSON body."""

    file: str
    status: int
    body: dict[str, Any]


class ApiClient:
    """A small synchronous client of the HTTP API.

    Args:
        base_url: The API's base URL (e.g. ``http://127.0.0.1:18000``).
        tenant: Sent as ``X-Tenant`` when not empty.
        api_key: Sent as ``Authorization: Bearer`` when not empty.
        timeout_s: Per request.
    """

    def __init__(self, base_url: str, tenant: str = "", api_key: str = "", timeout_s: float = 60.0) -> None:
        headers = {"X-Tenant": tenant} if tenant else {}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def post_image(self, path: str, file: Path, params: dict[str, Any] | None = None) -> Reply:
        """POST one image file as a raw body; transport errors become a 503-like reply, not an exception."""
        content_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        try:
            response = self._http.post(path, content=file.read_bytes(), params=params,
                                       headers={"Content-Type": content_type})  # fmt: skip
        except httpx.HTTPError as exc:
            return Reply(str(file), 503, {"reason": "unavailable", "detail": str(exc)})
        try:
            body = response.json()
        except ValueError:
            body = {"reason": "bad-response", "detail": response.text[:200]}
        return Reply(str(file), response.status_code, body)


def _client(settings: Settings, url: str | None, tenant: str | None, api_key: str | None) -> ApiClient:
    from services.app import base_url

    return ApiClient(url or base_url(settings), tenant or "", api_key or os.environ.get(API_KEY_ENV, ""))


def render(replies: Sequence[Reply], as_json: bool, console: Console | None = None) -> int:
    """Print replies (table or JSON lines); exit code 0 when every request succeeded, else 1."""
    console = console or Console()
    if as_json:
        for reply in replies:
            console.print_json(json.dumps({"file": reply.file, "status": reply.status, **reply.body}))
    else:
        table = Table("file", "status", "decision", "subject", "distance", "probability", "detail")
        for r in replies:
            b = r.body
            outcome = str(b.get("decision", b.get("reason", "")))
            detail = str(b.get("detail", b.get("error_detail", "")))
            table.add_row(
                r.file, str(r.status), outcome, str(b.get("subject", "")),
                _fmt(b.get("distance")), _fmt(b.get("probability")), detail,
            )  # fmt: skip
        console.print(table)
    return 0 if all(200 <= r.status < 300 for r in replies) else 1


def _fmt(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else ""


def _run(
    settings: Settings, files: Sequence[Path], path: str, params: dict[str, Any] | None, **kw: Any
) -> int:
    client = _client(settings, kw.get("url"), kw.get("tenant"), kw.get("api_key"))
    try:
        replies = [client.post_image(path, Path(f), params) for f in files]
    finally:
        client.close()
    return render(replies, bool(kw.get("as_json")), kw.get("console"))


def enroll_command(settings: Settings, files: Sequence[Path], subject: str, **kw: Any) -> int:
    """Enrol each file for ``subject``. Keywords: url, tenant, api_key, as_json, console."""
    return _run(settings, files, f"/v1/subjects/{subject}/images", None, **kw)


def verify_command(settings: Settings, files: Sequence[Path], subject: str, **kw: Any) -> int:
    """Verify each file against ``subject``. Keywords: url, tenant, api_key, as_json, console."""
    return _run(settings, files, f"/v1/subjects/{subject}/verify", None, **kw)


def identify_command(settings: Settings, files: Sequence[Path], top_k: int = 5, **kw: Any) -> int:
    """Identify each file among the tenant's subjects. Keywords: url, tenant, api_key, as_json, console."""
    return _run(settings, files, "/v1/identify", {"top_k": top_k}, **kw)
