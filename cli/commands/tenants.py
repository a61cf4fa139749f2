"""`twinstream tenants add | remove | ingest-user`: Kafka logins and ACLs (sasl-scram mode).

Run with the admin's login (``TWINSTREAM_KAFKA__SASL_USERNAME`` / ``__SASL_PASSWORD``). Passwords are
read from standard input, never from the command line, and never printed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

if TYPE_CHECKING:
    from cli.stack.kafka_tenants import Principal

T = TypeVar("T")

tenants_app = typer.Typer(
    help="Kafka tenants: SCRAM logins, per-tenant topics and ACLs (kafka.security=sasl-scram).",
    no_args_is_help=True,
)
PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="read the password from standard input (required)")
]


def _password(from_stdin: bool) -> str:
    if not from_stdin:
        raise typer.BadParameter("pass the password on standard input with --password-stdin")
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise typer.BadParameter("standard input held no password")
    return password


def _print(principal: Principal) -> None:
    from cli.console import console

    console.print(f"user [bold]{principal.user}[/bold]")
    for topic in principal.topics:
        console.print(f"  topic {topic}")
    for grant in principal.grants:
        console.print(f"  may {grant}")


def _run(action: Callable[[], T]) -> T:
    """Run a provisioning call, turning refusals into one red line and exit code 1."""
    from cli.console import console
    from cli.stack.kafka_tenants import ProvisioningError
    from twinstream.tenant_topics import InvalidTenantError

    try:
        return action()
    except (ProvisioningError, InvalidTenantError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None


@tenants_app.command("add")
def add(
    tenant: Annotated[str, typer.Argument(help="tenant name: letters, digits, _ and -")],
    password_stdin: PasswordStdin = False,
) -> None:
    """Create a tenant's login (user tenant.<T>), its images and results topics, and its ACLs.

    Running it again for the same tenant sets a new password.
    """
    from cli.console import settings_or_exit
    from cli.stack.kafka_tenants import add_tenant

    password = _password(password_stdin)
    _print(_run(lambda: add_tenant(settings_or_exit(), tenant, password)))


@tenants_app.command("remove")
def remove(tenant: Annotated[str, typer.Argument(help="tenant name")]) -> None:
    """Delete a tenant's ACLs (effective at once) and login; its topics stay until their retention ends."""
    from cli.console import console, settings_or_exit
    from cli.stack.kafka_tenants import remove_user
    from twinstream.tenant_topics import tenant_user

    settings = settings_or_exit()
    deleted = _run(lambda: remove_user(settings.kafka, tenant_user(tenant)))
    console.print(f"removed {tenant_user(tenant)}: {deleted} ACL(s) and its login")


@tenants_app.command("ingest-user")
def ingest_user(
    user: Annotated[str, typer.Argument(help="the ingest workers' SCRAM user")] = "twinstream-ingest",
    password_stdin: PasswordStdin = False,
) -> None:
    """Create the ingest workers' login: read every tenant's images, write results and dead letters."""
    from cli.console import settings_or_exit
    from cli.stack.kafka_tenants import add_ingest_user

    password = _password(password_stdin)
    _print(_run(lambda: add_ingest_user(settings_or_exit(), user, password)))
