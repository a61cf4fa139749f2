"""Standalone entry point: ``python -m training.train …`` (what ``ray job submit … --`` runs)."""

from __future__ import annotations

import typer

from training.commands import train


def main() -> None:
    """Run the ``train`` command with this process's arguments."""
    typer.run(train)


if __name__ == "__main__":
    main()
