"""What the engine knows about a host, as plain data for every front."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ReleaseState = Literal["uploading", "building", "ready", "live", "superseded", "failed", "incomplete"]
Layout = Literal["releases", "legacy", "empty", "mixed"]
# States of a release a deploy is still filling (or a crashed one left behind).
IN_PROGRESS = ("uploading", "building", "ready")


@dataclass(frozen=True)
class LockInfo:
    operator: str  # user@machine
    pid: int
    operation: str
    version: str | None
    started: float
    heartbeat: float
    machine: str = ""  # hostname the holder runs on (unlock checks its pid there)


@dataclass(frozen=True)
class ReleaseInfo:
    version: str
    state: str  # ReleaseState; "incomplete" when release.json is missing/unreadable
    current: bool = False
    previous: bool = False  # the release that was live before current (rollback default)
    pinned: bool = False
    started_at: float | None = None
    deployed_at: float | None = None  # when it went live (None if never)
    size_bytes: int = 0  # apparent size of its files
    unique_bytes: int = 0  # bytes only this release holds: what deleting it frees
    files: int = 0
    operator: str | None = None
    commit: str | None = None
    image: str | None = None
    health: str | None = None  # "ok" | "failed" | None
    downtime: float | None = None  # seconds of its switch window
    error: str | None = None  # why it failed
    unique_disk_bytes: int = 0  # disk blocks (du) only this release holds: what prune frees
    symlink: str | None = None  # the releases/ entry is a symlink to this target (never followed)
    references: tuple[str, ...] = ()  # other releases its files name by absolute path (release.json)


@dataclass(frozen=True)
class HostStatus:
    host: str
    env: str
    reachable: bool
    error: str | None = None
    layout: Layout = "empty"
    current: str | None = None
    previous: str | None = None
    lock: LockInfo | None = None
    releases: tuple[ReleaseInfo, ...] = field(default_factory=tuple)
    free_bytes: int | None = None

    @property
    def needs_migration(self) -> bool:
        return self.layout in ("legacy", "mixed")
