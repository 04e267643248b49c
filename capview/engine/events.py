"""The event stream every front (CLI lines, JSON, Textual) renders.

Events are plain frozen dataclasses; ``to_dict`` gives the JSON form. ``at`` is
the engine clock's time (seconds since the epoch), so replays are deterministic.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Literal

PHASES = ("lock", "setup", "upload", "link", "build", "switch", "health", "cleanup")
Phase = str
Outcome = Literal["ok", "failed", "rolled_back", "skipped", "cancelled"]


@dataclass(frozen=True)
class Event:
    host: str | None
    at: float

    @property
    def kind(self) -> str:
        return type(self).__name__

    def to_dict(self) -> dict:
        return {"event": self.kind, **asdict(self)}


@dataclass(frozen=True)
class OperationStarted(Event):
    operation: str  # "release", "rollback", "prune", "migrate", "check", ...
    env: str
    hosts: tuple[str, ...]
    version: str | None = None
    dry_run: bool = False


@dataclass(frozen=True)
class PhaseStarted(Event):
    phase: Phase


@dataclass(frozen=True)
class PhaseFinished(Event):
    phase: Phase
    ok: bool
    duration: float
    detail: str = ""  # failure reason or a short summary ("12 files, 3.1 MB")


@dataclass(frozen=True)
class LogLine(Event):
    line: str
    stream: str = "stdout"  # stdout | stderr | info
    phase: Phase | None = None


@dataclass(frozen=True)
class UploadProgress(Event):
    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int

    def can_replace(self, other: "Event") -> bool:  # bursts collapse in the UI
        return isinstance(other, UploadProgress) and other.host == self.host


@dataclass(frozen=True)
class HostWarning(Event):
    message: str


@dataclass(frozen=True)
class DowntimeMeasured(Event):
    seconds: float  # stop begun -> start returned


@dataclass(frozen=True)
class DryRunScript(Event):
    phase: Phase
    script: str


@dataclass(frozen=True)
class HostFinished(Event):
    outcome: Outcome
    message: str = ""
    version: str | None = None
    duration: float = 0.0
    round_trips: int = 0
    bytes_sent: int = 0


@dataclass(frozen=True)
class OperationFinished(Event):
    operation: str
    ok: bool
    results: tuple[HostFinished, ...] = field(default_factory=tuple)


Emit = Callable[[Event], None]


def discard(_: Event) -> None:
    """An Emit that drops everything (for callers that only want the result)."""
