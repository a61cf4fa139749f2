"""The `twinstream` command line: one typer app, each command group in its own module of `cli.commands`.

Heavy imports (torch, ray, kafka) happen inside the commands that need them, so `twinstream --help`
and `twinstream stack status` stay fast.
"""

from __future__ import annotations

import typer

from cli.commands import models, policy, serve, stack, stream, system, tenants, train
from cli.report import report_command

app = typer.Typer(
    name="twinstream",
    help="Streaming similarity matching with Siamese networks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(stack.app, name="stack")
app.add_typer(tenants.tenants_app, name="tenants")
app.add_typer(policy.app, name="policy")
for group in (system, train, serve, stream, models):
    group.register(app)
app.command("report")(report_command)


def main() -> None:
    """Run the command line."""
    app()


if __name__ == "__main__":
    main()
