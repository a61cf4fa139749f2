"""CLI commands that drive the services: serve, enroll/verify/identify, ingest, publish, results, report.

Typer wrappers only: each builds settings once and hands them to the command body in `services` (or
`training`), imported lazily so `twinstream --help` does not load torch, ray or kafka.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from twinstream.contracts import DEFAULT_TENANT, DEFAULT_TOP_K, Op

FilesArg = Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, help="image files")]
UrlOpt = Annotated[str | None, typer.Option(help="HTTP API base URL (default: the local Serve app)")]
TenantOpt = Annotated[str | None, typer.Option(help="tenant (gallery namespace)")]
KeyOpt = Annotated[str | None, typer.Option(envvar="TWINSTREAM_API_KEY", help="API key (Bearer)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="JSON output for scripts")]


def register(app: typer.Typer) -> None:
    """Add the service commands to the `twinstream` app."""
    from training.commands import eval_, train
    from twinstream.report import report_command

    app.command("train")(train)
    app.command("eval")(eval_)
    app.command("report")(report_command)
    for command in (serve, enroll, verify, identify, publish, results):
        app.command()(command)
    ingest_app = typer.Typer(help="Kafka ingest workers.", invoke_without_command=True)
    ingest_app.callback()(ingest)
    ingest_app.command("status")(ingest_status)
    app.add_typer(ingest_app, name="ingest")


def _settings():  # -> Settings
    from twinstream.cli import settings_or_exit

    return settings_or_exit()


def _console():  # -> Console
    from twinstream.cli import console

    return console


def serve(model: Annotated[Path, typer.Option(help="model artifact directory")]) -> None:
    """Deploy the Serve app for a model artifact on the running Ray cluster and print its URL."""
    from services.serve_commands import serve_command
    from twinstream.stack.raytools import use_token_auth

    use_token_auth()
    serve_command(_settings(), model, _console())


def enroll(
    files: FilesArg, subject: Annotated[str, typer.Option(help="subject to enrol")],
    url: UrlOpt = None, tenant: TenantOpt = None, api_key: KeyOpt = None, as_json: JsonOpt = False,
) -> None:  # fmt: skip
    """Enrol images for a subject over the HTTP API."""
    from services.serve_commands import enroll_command

    kw = {"url": url, "tenant": tenant, "api_key": api_key, "as_json": as_json, "console": _console()}
    raise typer.Exit(enroll_command(_settings(), files, subject, **kw))


def verify(
    files: FilesArg, subject: Annotated[str, typer.Option(help="claimed subject")],
    url: UrlOpt = None, tenant: TenantOpt = None, api_key: KeyOpt = None, as_json: JsonOpt = False,
) -> None:  # fmt: skip
    """Verify images against a subject (1:1) over the HTTP API."""
    from services.serve_commands import verify_command

    kw = {"url": url, "tenant": tenant, "api_key": api_key, "as_json": as_json, "console": _console()}
    raise typer.Exit(verify_command(_settings(), files, subject, **kw))


def identify(
    files: FilesArg, top_k: Annotated[int, typer.Option(min=1)] = DEFAULT_TOP_K,
    url: UrlOpt = None, tenant: TenantOpt = None, api_key: KeyOpt = None, as_json: JsonOpt = False,
) -> None:  # fmt: skip
    """Identify images among a tenant's subjects (1:N, open set) over the HTTP API."""
    from services.serve_commands import identify_command

    kw = {"url": url, "tenant": tenant, "api_key": api_key, "as_json": as_json, "console": _console()}
    raise typer.Exit(identify_command(_settings(), files, top_k, **kw))


def ingest(
    ctx: typer.Context, workers: Annotated[int | None, typer.Option(min=1, help="worker processes")] = None
) -> None:
    """Run ingest workers (consumer group) until SIGTERM/SIGINT; `ingest status` shows the group."""
    if ctx.invoked_subcommand is not None:
        return
    from services.stream_commands import ingest as run_ingest
    from twinstream.stack.raytools import use_token_auth

    use_token_auth()
    raise typer.Exit(run_ingest(_settings(), _console(), workers=workers))


def ingest_status(as_json: JsonOpt = False) -> None:
    """Group members, assignments, committed offsets and lag per partition."""
    from services.stream_commands import ingest_status as status

    raise typer.Exit(status(_settings(), _console(), as_json=as_json))


def publish(
    paths: Annotated[list[Path], typer.Argument(exists=True, help="image files or root/<identity>/ trees")],
    op: Annotated[Op, typer.Option(help="what each image asks for")] = Op.IDENTIFY,
    subject: Annotated[str, typer.Option(help="subject for every image")] = "",
    subject_from_dir: Annotated[bool, typer.Option(help="subject = the image's folder name")] = False,
    tenant: Annotated[str, typer.Option()] = DEFAULT_TENANT,
    top_k: Annotated[int, typer.Option(min=1)] = DEFAULT_TOP_K,
    envelope: Annotated[bool, typer.Option(help="send the ImageEvent protobuf envelope")] = False,
    manifest: Annotated[Path | None, typer.Option(help="write request ids here (JSON lines)")] = None,
) -> None:
    """Publish image files to the images topic with the header contract, with a progress bar."""
    from services.stream_commands import publish as run_publish

    code = run_publish(
        _settings(), _console(), paths, op=op, subject=subject, subject_from_dir=subject_from_dir,
        tenant=tenant, top_k=top_k, envelope=envelope, manifest=manifest,
    )  # fmt: skip
    raise typer.Exit(code)


def results(
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing new results")] = False,
    request_id: Annotated[list[str] | None, typer.Option(help="only these request ids")] = None,
    as_json: JsonOpt = False,
    tenant: Annotated[str, typer.Option(help="whose results topic, when tenants are bound to topics")] = (
        DEFAULT_TENANT
    ),
) -> None:
    """Print results from the results topic as a table, or JSON lines."""
    from services.stream_commands import results as read

    code = read(
        _settings(), _console(), follow=follow, request_ids=request_id or (), as_json=as_json, tenant=tenant
    )
    raise typer.Exit(code)
