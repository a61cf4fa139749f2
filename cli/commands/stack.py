"""`twinstream stack up|down|status|prepare`: the local stack (Kafka, Redis, Milvus, Prometheus, Ray)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.console import console, print_parts, settings_or_exit

app = typer.Typer(help="The local stack: Kafka, Redis, Milvus, Prometheus, Ray.", no_args_is_help=True)

PartsOption = Annotated[
    list[str] | None, typer.Option("--part", "-p", help="only this part (repeatable): kafka, redis, …")
]
StateDirOption = Annotated[Path | None, typer.Option(help="state directory (default: paths.state_dir)")]


@app.command("up")
def up(part: PartsOption = None, state_dir: StateDirOption = None) -> None:
    """Start the stack (each part that is not running yet) and wait until every part answers."""
    from cli.stack import Stack, StackError

    stack = Stack(settings_or_exit(), state_dir)
    try:
        with console.status("starting the stack (first run resolves the Kafka jars with Maven)…"):
            statuses = stack.up(part)
    except StackError as exc:
        console.print(f"[red]stack up failed:[/red] {exc}")
        raise typer.Exit(1) from None
    print_parts(f"twinstream stack ({stack.state_dir})", statuses)


@app.command("prepare")
def prepare() -> None:
    """Fetch what the stack needs before its first start (the Kafka broker jars, via Maven)."""
    from cli.stack import StackError
    from cli.stack.kafka import resolve_kafka_jars

    settings = settings_or_exit()
    try:
        libs = resolve_kafka_jars(settings)
    except StackError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    console.print(f"Kafka {settings.kafka.version} jars: {libs}")


@app.command("down")
def down(part: PartsOption = None, state_dir: StateDirOption = None) -> None:
    """Stop the parts this stack started (by pid); leaves nothing of ours running."""
    from cli.stack import Stack

    stopped = Stack(settings_or_exit(), state_dir).down(part)
    console.print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


@app.command("status")
def status(part: PartsOption = None, state_dir: StateDirOption = None) -> None:
    """Tell what runs."""
    from cli.stack import Stack

    stack = Stack(settings_or_exit(), state_dir)
    print_parts(f"twinstream stack ({stack.state_dir})", stack.status(part))
