"""The shape every part of the local stack shares: prepare, start, wait until it answers, stop."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from cli.stack.process import ManagedProcess, StackError, wait_until
from twinstream.config import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY_DIR = REPO_ROOT / "deploy"


class State(StrEnum):
    STARTED = "started"
    RUNNING = "running"  # was already running: `up` twice is harmless
    STOPPED = "stopped"
    ABSENT = "absent"  # a binary the part needs is not installed
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class PartStatus:
    """What `stack status` and `stack up` print for one part."""

    name: str
    state: State
    endpoint: str
    pid: int | None = None
    note: str = ""


class Component(ABC):
    """One part of the stack, run as a process the stack owns."""

    name: str = ""
    start_timeout_s: float = 60.0

    def __init__(self, settings: Settings, state_dir: Path) -> None:
        self.settings = settings
        self.state_dir = state_dir
        self.home = state_dir / self.name
        self.proc = ManagedProcess(self.name, self.home)

    @property
    @abstractmethod
    def endpoint(self) -> str: ...

    @abstractmethod
    def argv(self) -> list[str]: ...

    @abstractmethod
    def ready(self) -> bool:
        """True when the part really answers (a round trip, not just an open port)."""

    def env(self) -> dict[str, str]:
        return {}

    def missing(self) -> str:
        """Why the part cannot run here ("" when it can)."""
        return ""

    def prepare(self) -> None:  # noqa: B027 - an optional hook, empty by default
        """Render configs, fetch jars, format storage: whatever must precede the first start."""

    def after_ready(self) -> None:  # noqa: B027 - an optional hook, empty by default
        """Work that needs the running part (creating topics)."""

    def up(self) -> PartStatus:
        if reason := self.missing():
            return PartStatus(self.name, State.ABSENT, self.endpoint, note=reason)
        if self.proc.alive():
            # Ours and running: wait for it rather than start a second copy on the same port; one
            # that never answers is replaced (stopped by pid first, so nothing is orphaned).
            try:
                wait_until(self._answers_or_died, self.start_timeout_s, self.name, self.proc.log_file)
                self.after_ready()
                return self.status()
            except StackError:
                self.proc.stop(timeout_s=10)
        self.home.mkdir(parents=True, exist_ok=True)
        self.prepare()
        self.proc.start(self.argv(), env=self.env())
        try:
            wait_until(self._answers_or_died, self.start_timeout_s, f"{self.name}", self.proc.log_file)
        except StackError:
            tail = self.proc.log_tail(8)
            self.proc.stop(timeout_s=5)
            raise StackError(
                f"{self.name} failed to start; read {self.proc.log_file}\n--- last lines ---\n{tail}"
            ) from None
        self.after_ready()
        return PartStatus(self.name, State.STARTED, self.endpoint, self._pid())

    def down(self, grace_s: float = 20.0) -> bool:
        """SIGTERM, up to ``grace_s`` for a clean exit, then SIGKILL; True if something was stopped."""
        return self.proc.stop(timeout_s=grace_s)

    def status(self) -> PartStatus:
        if reason := self.missing():
            return PartStatus(self.name, State.ABSENT, self.endpoint, note=reason)
        if not self.proc.alive():
            return PartStatus(self.name, State.STOPPED, self.endpoint)
        state = State.RUNNING if self._answers() else State.FAILED
        note = "" if state is State.RUNNING else f"not answering; read {self.proc.log_file}"
        return PartStatus(self.name, state, self.endpoint, self._pid(), note)

    def _pid(self) -> int | None:
        rec = self.proc.record()
        return rec.pid if rec else None

    def _answers(self) -> bool:
        try:
            return self.ready()
        except Exception:  # any client error while probing means "not answering"
            return False

    def _answers_or_died(self) -> bool:
        if not self.proc.alive():
            raise StackError(f"{self.name} exited during start-up")
        return self.ready()


def render_template(template: Path, target: Path, values: dict[str, object]) -> Path:
    """Fill ``${key}`` placeholders of a deploy/ config into the state dir."""
    text = template.read_text()
    for key, value in values.items():
        text = text.replace("${" + key + "}", str(value))
    if "${" in text:
        start = text.index("${")
        raise StackError(f"{template}: unfilled placeholder {text[start : text.index('}', start) + 1]}")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return target
