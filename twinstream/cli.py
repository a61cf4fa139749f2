"""The `twinstream` command line (typer): one composition root per command.

Heavy imports (torch, ray, kafka) happen inside the commands that need them, so `twinstream --help`
and `twinstream stack status` stay fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from twinstream.config import Settings, SettingsError, load_settings

app = typer.Typer(
    name="twinstream",
    help="Streaming similarity matching with Siamese networks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
stack_app = typer.Typer(help="The local stack: Kafka, Redis, Milvus, Prometheus, Ray.", no_args_is_help=True)
app.add_typer(stack_app, name="stack")
console = Console()

PartsOption = Annotated[
    list[str] | None, typer.Option("--part", "-p", help="only this part (repeatable): kafka, redis, …")
]
StateDirOption = Annotated[Path | None, typer.Option(help="state directory (default: paths.state_dir)")]


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


def print_parts(title: str, statuses: list) -> None:  # list[PartStatus]
    table = Table(title=title)
    for column in ("part", "state", "endpoint", "pid", "note"):
        table.add_column(column)
    colours = {
        "started": "green",
        "running": "green",
        "stopped": "yellow",
        "absent": "yellow",
        "failed": "red",
    }
    for s in statuses:
        colour = colours.get(str(s.state), "white")
        table.add_row(s.name, f"[{colour}]{s.state}[/{colour}]", s.endpoint, str(s.pid or ""), s.note)
    console.print(table)


@stack_app.command("up")
def stack_up(part: PartsOption = None, state_dir: StateDirOption = None) -> None:
    """Start the stack (each part that is not running yet) and wait until every part answers."""
    from twinstream.stack import Stack, StackError

    stack = Stack(settings_or_exit(), state_dir)
    try:
        with console.status("starting the stack (first run resolves the Kafka jars with Maven)…"):
            statuses = stack.up(part)
    except StackError as exc:
        console.print(f"[red]stack up failed:[/red] {exc}")
        raise typer.Exit(1) from None
    print_parts(f"twinstream stack ({stack.state_dir})", statuses)


@stack_app.command("prepare")
def stack_prepare() -> None:
    """Fetch what the stack needs before its first start (the Kafka broker jars, via Maven)."""
    from twinstream.stack import StackError
    from twinstream.stack.kafka import resolve_kafka_jars

    settings = settings_or_exit()
    try:
        libs = resolve_kafka_jars(settings)
    except StackError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    console.print(f"Kafka {settings.kafka.version} jars: {libs}")


@stack_app.command("down")
def stack_down(part: PartsOption = None, state_dir: StateDirOption = None) -> None:
    """Stop the parts this stack started (by pid); leaves nothing of ours running."""
    from twinstream.stack import Stack

    stopped = Stack(settings_or_exit(), state_dir).down(part)
    console.print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


@stack_app.command("status")
def stack_status(part: PartsOption = None, state_dir: StateDirOption = None) -> None:
    """Tell what runs."""
    from twinstream.stack import Stack

    stack = Stack(settings_or_exit(), state_dir)
    print_parts(f"twinstream stack ({stack.state_dir})", stack.status(part))


@app.command("demo")
def demo(
    keep_running: Annotated[bool, typer.Option(help="leave the stack running afterwards")] = False,
) -> None:
    """Bring the stack up, print its endpoints, and (unless --keep-running) bring it down again."""
    from twinstream.stack import Stack, StackError

    stack = Stack(settings_or_exit())
    try:
        with console.status("starting the stack…"):
            statuses = stack.up()
        print_parts("twinstream stack", statuses)
    except StackError as exc:
        console.print(f"[red]demo failed:[/red] {exc}")
        raise typer.Exit(1) from None
    finally:
        if not keep_running:
            stack.down()
            console.print("stack stopped (use --keep-running to keep it)")


@app.command("settings")
def show_settings() -> None:
    """Print the effective settings as JSON (environment variables applied)."""
    console.print_json(settings_or_exit().model_dump_json())


def main() -> None:
    app()


if __name__ == "__main__":
    main()
