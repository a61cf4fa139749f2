"""`twinstream serve | enroll | verify | identify`: deploy the Serve app; thin clients of its HTTP API.

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
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from cli.console import console, settings_or_exit
from twinstream.config import Settings
from twinstream.contracts import DEFAULT_TOP_K

FilesArg = Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, help="image files")]
UrlOpt = Annotated[str | None, typer.Option(help="HTTP API base URL (default: the local Serve app)")]
TenantOpt = Annotated[str | None, typer.Option(help="tenant (gallery namespace)")]
KeyOpt = Annotated[str | None, typer.Option(envvar="TWINSTREAM_API_KEY", help="API key (Bearer)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="JSON output for scripts")]

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

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Reply:
        """A JSON request; transport errors become a 503-like reply, not an exception."""
        try:
            response = self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            return Reply(path, 503, {"reason": "unavailable", "detail": str(exc)})
        try:
            answer = response.json()
        except ValueError:
            answer = {"reason": "bad-response", "detail": response.text[:200]}
        return Reply(path, response.status_code, answer)

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


# --- typer commands ----------------------------------------------------------------------------------


def serve(model: Annotated[Path, typer.Option(help="model artifact directory")]) -> None:
    """Deploy the Serve app for a model artifact on the running Ray cluster and print its URL."""
    from cli.commands.serve import serve_command
    from cli.stack.raytools import use_token_auth

    use_token_auth()
    serve_command(settings_or_exit(), model, console)


def enroll(
    files: FilesArg, subject: Annotated[str, typer.Option(help="subject to enrol")],
    url: UrlOpt = None, tenant: TenantOpt = None, api_key: KeyOpt = None, as_json: JsonOpt = False,
) -> None:  # fmt: skip
    """Enrol images for a subject over the HTTP API."""
    from cli.commands.serve import enroll_command

    kw = {"url": url, "tenant": tenant, "api_key": api_key, "as_json": as_json, "console": console}
    raise typer.Exit(enroll_command(settings_or_exit(), files, subject, **kw))


def verify(
    files: FilesArg, subject: Annotated[str, typer.Option(help="claimed subject")],
    url: UrlOpt = None, tenant: TenantOpt = None, api_key: KeyOpt = None, as_json: JsonOpt = False,
) -> None:  # fmt: skip
    """Verify images against a subject (1:1) over the HTTP API."""
    from cli.commands.serve import verify_command

    kw = {"url": url, "tenant": tenant, "api_key": api_key, "as_json": as_json, "console": console}
    raise typer.Exit(verify_command(settings_or_exit(), files, subject, **kw))


def identify(
    files: FilesArg, top_k: Annotated[int, typer.Option(min=1)] = DEFAULT_TOP_K,
    url: UrlOpt = None, tenant: TenantOpt = None, api_key: KeyOpt = None, as_json: JsonOpt = False,
) -> None:  # fmt: skip
    """Identify images among a tenant's subjects (1:N, open set) over the HTTP API."""
    from cli.commands.serve import identify_command

    kw = {"url": url, "tenant": tenant, "api_key": api_key, "as_json": as_json, "console": console}
    raise typer.Exit(identify_command(settings_or_exit(), files, top_k, **kw))


def register(app: typer.Typer) -> None:
    """Mount ``serve``, ``enroll``, ``verify`` and ``identify`` on the root app."""
    for command in (serve, enroll, verify, identify):
        app.command()(command)
