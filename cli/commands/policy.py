"""`twinstream policy show | set`: a tenant's operating points (target FAR for verify, FPIR for identify).

Thin clients of ``GET/PUT /v1/tenants/{tenant}/policy``: the app stores the policy, every replica and
ingest path applies it within a second, and the answer shows the thresholds it maps to for the live model.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from cli.commands.serve import KeyOpt, UrlOpt, _client
from cli.console import console, settings_or_exit
from twinstream.contracts import DEFAULT_TENANT

app = typer.Typer(
    help="A tenant's operating points: target FAR (verify) and FPIR (identify).", no_args_is_help=True
)
TenantArg = Annotated[str, typer.Option("--tenant", help="the tenant")]
JsonOpt = Annotated[bool, typer.Option("--json", help="JSON output for scripts")]


def _print(body: dict[str, Any], as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps(body))
        return
    table = Table(
        "operating point",
        "target",
        "threshold (distance)",
        "decides MATCH at p ≥",
        title=f"tenant {body['tenant']}",
    )
    table.add_row("verify (FAR)", f"{body['verify_far']:g}", f"{body['verify']['threshold']:.4f}",
                  f"{body['verify']['min_probability']:.4f}")  # fmt: skip
    identify = body["identify"]
    table.add_row(f"identify (FPIR, gallery {identify['gallery_size']})", f"{body['identify_fpir']:g}",
                  f"{identify['threshold']:.4f}", f"{identify['min_probability']:.4f}")  # fmt: skip
    console.print(table)
    console.print(f"model {body['model_version']}", markup=False)


def _done(reply_status: int, body: dict[str, Any], as_json: bool) -> None:
    if not 200 <= reply_status < 300:
        console.print(
            f"{reply_status} {body.get('reason', '')}: {body.get('detail', '')}", markup=False, style="red"
        )
        raise typer.Exit(1)
    _print(body, as_json)


@app.command("show")
def show(
    tenant: TenantArg = DEFAULT_TENANT, url: UrlOpt = None, api_key: KeyOpt = None, as_json: JsonOpt = False
) -> None:
    """Print the tenant's policy and the thresholds it maps to."""
    client = _client(settings_or_exit(), url, "", api_key)
    try:
        reply = client.call("GET", f"/v1/tenants/{tenant}/policy")
    finally:
        client.close()
    _done(reply.status, reply.body, as_json)


@app.command("set")
def set_(
    tenant: TenantArg = DEFAULT_TENANT,
    verify_far: Annotated[float | None, typer.Option(help="target false accept rate of verify")] = None,
    identify_fpir: Annotated[
        float | None, typer.Option(help="target false positive identification rate")
    ] = None,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Set the tenant's target FAR and/or FPIR (values in [1e-7, 0.5])."""
    body = {
        k: v for k, v in {"verify_far": verify_far, "identify_fpir": identify_fpir}.items() if v is not None
    }
    if not body:
        raise typer.BadParameter("give --verify-far and/or --identify-fpir")
    client = _client(settings_or_exit(), url, "", api_key)
    try:
        reply = client.call("PUT", f"/v1/tenants/{tenant}/policy", body)
    finally:
        client.close()
    _done(reply.status, reply.body, as_json)
