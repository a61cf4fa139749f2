"""What every CLI command shares: one rich console, settings built once (or a clean exit), part tables."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from twinstream.config import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from cli.stack.component import PartStatus

console = Console()

_STATE_COLOURS = {
    "started": "green",
    "running": "green",
    "stopped": "yellow",
    "absent": "yellow",
    "failed": "red",
}


def settings_or_exit() -> Settings:
    """The process's settings, or exit 2 with every invalid variable named (secrets redacted)."""
    try:
        return load_settings()
    except SettingsError as exc:
        console.print(str(exc), markup=False, style="red")
        raise typer.Exit(2) from None


def print_parts(title: str, statuses: Sequence[PartStatus]) -> None:
    """A table of the stack's parts: state, endpoint, pid and a note."""
    table = Table(title=title)
    for column in ("part", "state", "endpoint", "pid", "note"):
        table.add_column(column)
    for s in statuses:
        colour = _STATE_COLOURS.get(str(s.state), "white")
        table.add_row(s.name, f"[{colour}]{s.state}[/{colour}]", s.endpoint, str(s.pid or ""), s.note)
    console.print(table)
