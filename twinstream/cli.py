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
    dataset: Annotated[str, typer.Option(help="digits | omniglot | att-faces | folder:PATH")] = "digits",
    keep_running: Annotated[
        bool, typer.Option(help="leave everything running and print how to try it")
    ] = False,
    workers: Annotated[int, typer.Option(min=1, help="Ray Train workers and ingest workers")] = 2,
    max_per_identity: Annotated[int, typer.Option(min=1, help="arrivals streamed per identity")] = 60,
    out: Annotated[Path, typer.Option(help="where run directories with the report go")] = Path("runs"),
) -> None:
    """The whole system end to end: stack, Ray Train, Ray Serve, Kafka ingest, Milvus, a report."""
    from twinstream.demo.run import DemoOptions, run_demo
    from twinstream.stack import StackError

    opts = DemoOptions(
        dataset=dataset,
        keep_running=keep_running,
        workers=workers,
        max_per_identity=max_per_identity,
        out_dir=out,
    )
    try:
        figures = run_demo(settings_or_exit(), opts, console)
    except StackError as exc:
        console.print(f"[red]demo failed:[/red] {exc}")
        raise typer.Exit(1) from None
    if figures.answered < figures.requests:
        console.print(f"[red]{figures.requests - figures.answered} request(s) got no result[/red]")
        raise typer.Exit(1)


@app.command("bench")
def bench(
    which: Annotated[str, typer.Argument(help="serve | stream | train | all")] = "all",
) -> None:
    """Run the benchmarks in bench/ one after another; print and save their ratios (bench/results/)."""
    from rich.table import Table

    from twinstream.bench import BENCHMARKS, run_benchmarks

    names = list(BENCHMARKS) if which == "all" else [which]
    if any(n not in BENCHMARKS for n in names):
        console.print(f"[red]unknown benchmark {which!r}: choose serve, stream, train or all[/red]")
        raise typer.Exit(2)
    path, summary = run_benchmarks(names, echo=console.print)
    table = Table("ratio (measured in this run)", "value", title=f"twinstream bench · {summary['machine']}")
    for name, value in summary["ratios"].items():
        table.add_row(name, f"{value:.3f}")
    console.print(table)
    failed = [n for n, b in summary["benchmarks"].items() if "error" in b]
    console.print(f"wrote {path} and {path.with_suffix('.png')}" + (f"; failed: {failed}" if failed else ""))
    raise typer.Exit(1 if failed else 0)


@app.command("settings")
def show_settings() -> None:
    """Print the effective settings as JSON (environment variables applied)."""
    console.print_json(settings_or_exit().model_dump_json())


def _register_service_commands() -> None:
    from twinstream.cli_services import register
    from twinstream.cli_tenants import tenants_app

    register(app)
    app.add_typer(tenants_app, name="tenants")


_register_service_commands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
