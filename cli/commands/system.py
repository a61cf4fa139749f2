"""`twinstream demo | bench | settings`: the whole system end to end, the benchmarks, the settings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.console import console, settings_or_exit

app = typer.Typer()


@app.command("demo")
def demo(
    dataset: Annotated[
        str | None,
        typer.Option(
            help="att-faces | digits | omniglot | folder:PATH (default: att-faces when present, else digits)"
        ),
    ] = None,
    keep_running: Annotated[
        bool, typer.Option(help="leave everything running and print how to try it")
    ] = False,
    workers: Annotated[int, typer.Option(min=1, help="Ray Train workers and ingest workers")] = 2,
    max_per_identity: Annotated[
        int, typer.Option(min=1, help="arriving photos per identity (each: one identify, two verifies)")
    ] = 60,
    out: Annotated[Path, typer.Option(help="where run directories with the report go")] = Path("runs"),
) -> None:
    """The whole system end to end: stack, model, Ray Serve, Kafka ingest, Milvus, a report."""
    from cli.demo.models import choose_dataset
    from cli.demo.run import DemoOptions, run_demo
    from cli.stack import StackError

    settings = settings_or_exit()
    if dataset is None:
        dataset, why = choose_dataset(settings)
        console.print(f"demo data set: [bold]{dataset}[/bold] ({why}; choose one with --dataset)")
    opts = DemoOptions(
        dataset=dataset,
        keep_running=keep_running,
        workers=workers,
        max_per_identity=max_per_identity,
        out_dir=out,
    )
    try:
        figures = run_demo(settings, opts, console)
    except StackError as exc:
        console.print(f"[red]demo failed:[/red] {exc}")
        raise typer.Exit(1) from None
    if figures.answered < figures.requests:
        console.print(f"[red]{figures.requests - figures.answered} request(s) got no result[/red]")
        raise typer.Exit(1)


@app.command("bench")
def bench(
    which: Annotated[str, typer.Argument(help="serve | stream | reindex | train | all")] = "all",
) -> None:
    """Run the benchmarks one after another; print and save their same-run ratios (runs/bench/)."""
    from rich.table import Table

    from cli.bench.runner import BENCHMARKS, run_benchmarks

    names = list(BENCHMARKS) if which == "all" else [which]
    if any(n not in BENCHMARKS for n in names):
        console.print(f"[red]unknown benchmark {which!r}: choose serve, stream, reindex, train or all[/red]")
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
    """Print the effective settings as JSON (environment applied; keys, tokens and passwords masked)."""
    console.print_json(settings_or_exit().model_dump_json())


def register(root: typer.Typer) -> None:
    """Mount ``demo``, ``bench`` and ``settings`` on the root app."""
    root.registered_commands.extend(app.registered_commands)
