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
    machine: str = ""  # hostname the holder runs on (shown; never trusted alone)
    machine_id: str = ""  # issue 17: the holder's stable machine id (lock.local_machine_id)
    host_heartbeat: float | None = None  # the heartbeat by the HOST's clock (date +%s there)
    host_now: float | None = None  # the host's clock when the lock was read (None: not asked)

    @property
    def host_age(self) -> float | None:
        """Seconds since the heartbeat, both ends on the host's clock (None: unknown)."""
        if self.host_heartbeat is None or self.host_now is None:
            return None
        return max(0.0, self.host_now - self.host_heartbeat)


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
    unavailable: float | None = None  # seconds clients had no answer: stop begun -> first healthy answer (issue 16)
    usage_pending: bool = False  # issue 21: a cold listing did not wait for its sums (size/unique/files are 0)


ServiceCondition = Literal["running", "starting", "down", "crash-looping", "unknown"]
# A unit that systemd restarted on its own this recently is still called crash-looping.
RECENT_RESTART_SECONDS = 30.0


@dataclass(frozen=True)
class ServiceState:
    """What the service manager says about the app, read in the status round trip
    (issue 16). systemd-user: the unit's properties; ``command``: the status command's
    exit code; ``none``: nothing (unknown)."""

    manager: str = "none"  # systemd-user | command | none
    unit: str | None = None
    load_state: str | None = None  # systemd LoadState: loaded | not-found | ...
    active_state: str | None = None  # active | activating | deactivating | inactive | failed | reloading
    sub_state: str | None = None  # running | auto-restart | dead | exited | failed ...
    restarts: int | None = None  # NRestarts: automatic restarts since the last explicit start
    main_status: int | None = None  # ExecMainStatus: the main process's last exit code (or signal)
    main_pid: int | None = None
    since_seconds: float | None = None  # how long it has been in this state
    status_exit: int | None = None  # command manager: the status command's exit code
    error: str | None = None  # the manager could not be asked (host text: make it inert)

    @property
    def condition(self) -> ServiceCondition:
        if self.manager == "command":
            if self.status_exit is None:
                return "unknown"
            return "running" if self.status_exit == 0 else "down"
        if self.manager != "systemd-user" or self.active_state is None:
            return "unknown"
        if self.sub_state == "auto-restart":
            return "crash-looping"
        recent = self.since_seconds is not None and self.since_seconds < RECENT_RESTART_SECONDS
        if self.restarts and self.active_state in ("active", "activating", "reloading") and recent:
            return "crash-looping"
        if self.active_state in ("active", "reloading"):
            return "running"
        if self.active_state == "activating":
            return "starting"
        return "down"  # inactive, failed, deactivating, or a unit that is not loaded

    @property
    def down(self) -> bool:
        """Known not to serve: what ``check`` fails on and no front may call healthy."""
        return self.condition in ("down", "crash-looping")

    @property
    def summary(self) -> str:
        """A few words for a table cell or a message (host words: make it inert)."""
        c = self.condition
        if c == "unknown":
            return "unknown" if self.error is None else f"unknown ({self.error})"
        if self.manager == "command":
            return c if self.status_exit == 0 else f"down (status exit {self.status_exit})"
        parts = [f"{self.active_state}/{self.sub_state}" if self.sub_state else str(self.active_state)]
        if self.load_state and self.load_state != "loaded":
            parts = [f"unit {self.load_state}"]
        if self.restarts:
            parts.append(f"restarted {self.restarts}x")
        if c != "running" and self.main_status:
            parts.append(f"exit {self.main_status}")
        return f"{c}: " + ", ".join(parts)


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
    service: ServiceState = field(default_factory=ServiceState)  # issue 16
    # the last history records a reader is shown, oldest first: they come with the listing,
    # so the dashboard's activity pane costs no round trip of its own (JSON leaves them out)
    recent: tuple[dict, ...] = field(default_factory=tuple)

    @property
    def needs_migration(self) -> bool:
        return self.layout in ("legacy", "mixed")
