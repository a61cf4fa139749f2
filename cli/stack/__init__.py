"""The local stack: Kafka, Redis, Milvus, Prometheus and a Ray head as processes we own.

`twinstream stack up | down | status`, `make demo` and the test fixtures all go through `Stack`, so the
stack that tests exercise is the one users run. State, logs and pid files live under one directory
(``settings.paths.state_dir``, default ``.twinstream/``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from cli.stack.component import Component, PartStatus, State
from cli.stack.kafka import KafkaBroker
from cli.stack.parts import Milvus, Prometheus, RayHead, Redis
from cli.stack.process import ManagedProcess, StackError, free_port
from twinstream.config import Settings
from twinstream.metrics.endpoint import register_scrape_target

PART_TYPES: dict[str, type[Component]] = {
    "kafka": KafkaBroker,
    "redis": Redis,
    "milvus": Milvus,
    "prometheus": Prometheus,
    "ray": RayHead,
}
ALL_PARTS = tuple(PART_TYPES)

__all__ = [
    "ALL_PARTS",
    "PartStatus",
    "Stack",
    "StackError",
    "State",
    "free_port",
    "register_scrape_target",
]


class Stack:
    """Starts, stops and reports the parts; only ever touches processes it started (by pid)."""

    def __init__(self, settings: Settings, state_dir: Path | None = None) -> None:
        self.settings = settings
        self.state_dir = (state_dir or settings.paths.state_dir).resolve()
        self.parts: dict[str, Component] = {
            name: cls(settings, self.state_dir) for name, cls in PART_TYPES.items()
        }

    def _select(self, names: Iterable[str] | None) -> list[Component]:
        chosen = list(names or ALL_PARTS)
        unknown = [n for n in chosen if n not in self.parts]
        if unknown:
            raise StackError(f"unknown stack part(s) {unknown}; choose from {list(ALL_PARTS)}")
        return [self.parts[n] for n in ALL_PARTS if n in chosen]

    def up(self, names: Iterable[str] | None = None) -> list[PartStatus]:
        """Start each chosen part that is not already running and wait until it answers."""
        return [part.up() for part in self._select(names)]

    def down(self, names: Iterable[str] | None = None, grace_s: float = 20.0) -> list[str]:
        """Stop the chosen parts we started, in reverse order; returns the names stopped.

        Each part gets SIGTERM and up to ``grace_s`` to exit cleanly (Kafka and Milvus flush their logs)
        before SIGKILL; a throw-away state directory can pass a short grace. A full `down` also stops the
        processes a demo left running (``<state_dir>/demo/*.pid``).
        """
        stopped = []
        if names is None:
            stopped = [f"demo {p.stem}" for p in sorted((self.state_dir / "demo").glob("*.pid"))
                       if ManagedProcess(p.stem, p.parent).stop(timeout_s=grace_s)]  # fmt: skip
        return stopped + [part.name for part in reversed(self._select(names)) if part.down(grace_s)]

    def restart(self, name: str) -> PartStatus:
        part = self._select([name])[0]
        part.down()
        return part.up()

    def status(self, names: Iterable[str] | None = None) -> list[PartStatus]:
        return [part.status() for part in self._select(names)]

    def part(self, name: str) -> Component:
        return self._select([name])[0]
