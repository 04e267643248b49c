"""The dashboard's model of a running operation, fed by engine events.

The engine calls ``emit(event)`` at full speed (a build can print 100,000 lines);
``Operation.apply`` only updates plain data here: phase states, upload progress, and
bounded per-host :class:`LogStream` buffers. Widgets read it on their own timers
(log panes every ~0.1 s) or when the App posts a collapsing ``OperationChanged``
message, so bursts cost the UI one redraw, not one per event. No textual import here.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from capview.engine.events import (
    PHASES,
    DowntimeMeasured,
    DryRunScript,
    Event,
    HostFinished,
    LogLine,
    OperationFinished,
    OperationStarted,
    PhaseFinished,
    PhaseStarted,
    UploadProgress,
    HostWarning as WarningEvent,
)
from capview.engine.restart import RESTART_PHASES
from capview.engine.rollback import ROLLBACK_PHASES

from capview.inert import line as _line
from capview.units import plural


def word(name: str | None) -> str:
    """An engine identifier as a user reads it: ``rolled_back`` -> ``rolled back``."""
    return _line(name or "").replace("_", " ")


# Columns a progress screen starts with: the phases the engine emits for each operation
# (engine.events.PHASES for a release; rollback.py's and restart.py's timed phases; prune's
# one cleanup phase). Migrate starts with none: its screen shows the plan's steps instead.
EXPECTED_PHASES: dict[str, tuple[str, ...]] = {
    "release": PHASES,
    "rollback": ROLLBACK_PHASES,
    "restart": RESTART_PHASES,
    "prune": ("cleanup",),
}


class LogStream:
    """A bounded line buffer with a running total, so several readers can follow it."""

    __slots__ = ("lines", "total")

    def __init__(self, maxlen: int = 5000) -> None:
        self.lines: deque[str] = deque(maxlen=maxlen)
        self.total = 0

    def append(self, line: str) -> None:
        self.lines.append(line)
        self.total += 1

    def since(self, seen: int) -> tuple[list[str], int]:
        """Lines after the reader's ``seen`` count (the newest ``maxlen`` at most), and the new count."""
        new = self.total - seen
        if new <= 0:
            return [], self.total
        n = len(self.lines)
        if new >= n:
            return list(self.lines), self.total
        return list(itertools.islice(self.lines, n - new, n)), self.total


@dataclass
class PhaseState:
    state: str = "pending"  # pending | running | done | failed
    started: float | None = None
    duration: float | None = None
    detail: str = ""


@dataclass
class HostProgress:
    host: str
    phases: dict[str, PhaseState]
    log: LogStream
    upload: UploadProgress | None = None
    upload_started: float | None = None  # engine clock at the first UploadProgress
    downtime: float | None = None
    outcome: str | None = None
    message: str = ""
    current_phase: str | None = None
    warnings: list[str] = field(default_factory=list)
    skipped: frozenset[str] = frozenset()  # phases that do not apply to this host (no build configured)
    scripts: dict[str, str] = field(default_factory=dict)  # dry run: phase -> the script it would run

    @property
    def upload_rate(self) -> float | None:
        u = self.upload
        if u is None or self.upload_started is None:
            return None
        elapsed = u.at - self.upload_started
        return u.bytes_done / elapsed if elapsed > 0 else None

    @property
    def switched(self) -> bool:
        return self.phases.get("switch", PhaseState()).state != "pending"


class Operation:
    """One release / rollback / prune / migrate, as the UI sees it."""

    _ids = itertools.count(1)

    def __init__(self, kind: str, env: str, hosts: tuple[str, ...], *, version: str | None = None,
                 dry_run: bool = False, title: str = "", max_lines: int = 5000,
                 skip: Mapping[str, Iterable[str]] | None = None) -> None:
        self.id = next(self._ids)
        self.kind = kind
        self.env = env
        self.version = version
        self.dry_run = dry_run
        self.title = title or f"{kind} {env}"
        self.max_lines = max_lines
        self.skip = {h: frozenset(p) for h, p in (skip or {}).items()}
        # a phase no host runs (no build configured anywhere) gets no column
        self.hidden = frozenset.intersection(*self.skip.values()) if hosts and len(self.skip) == len(hosts) \
            else frozenset()
        self.phase_names: list[str] = [p for p in EXPECTED_PHASES.get(kind, ()) if p not in self.hidden]
        self.hosts: dict[str, HostProgress] = {}
        for h in hosts:
            self._host(h)
        self.log = LogStream(max_lines)  # every host's lines, prefixed
        self.mirror: LogStream | None = None  # e.g. the App's activity pane
        self.state = "running"  # running | ok | failed | cancelled | error
        self.result: Any = None
        self.error: BaseException | None = None
        self.worker: Any = None
        self.ready: Any = None  # an asyncio.Event the UI sets when it is ready to show progress
        self.changes = 0  # bumped on every state change a view may want to redraw
        self.started_at: float | None = None
        self.finished_at: float | None = None

    # -- model

    def _host(self, name: str) -> HostProgress:
        hp = self.hosts.get(name)
        if hp is None:
            hp = self.hosts[name] = HostProgress(
                name, {p: PhaseState() for p in self.phase_names}, LogStream(self.max_lines),
                skipped=self.skip.get(name, frozenset()),
            )
        return hp

    def _phase(self, hp: HostProgress, phase: str) -> PhaseState:
        if phase not in self.phase_names and phase not in self.hidden:
            self.phase_names.append(phase)
            for other in self.hosts.values():
                other.phases.setdefault(phase, PhaseState())
        return hp.phases.setdefault(phase, PhaseState())

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def switched(self) -> bool:
        """True once any host has begun its switch: past the point where cancelling is safe."""
        if self.kind == "migrate":  # data is being moved from the first step on
            return any(ps.state != "pending" for hp in self.hosts.values() for ps in hp.phases.values())
        return self.kind in ("release", "rollback") and any(hp.switched for hp in self.hosts.values())

    def switched_hosts(self) -> list[str]:
        if self.kind == "migrate":
            return [h for h, hp in self.hosts.items() if any(ps.state != "pending" for ps in hp.phases.values())]
        return [h for h, hp in self.hosts.items() if hp.switched]

    def apply(self, ev: Event) -> bool:
        """Fold one engine event in. Returns True when views need a redraw (not for log lines)."""
        if isinstance(ev, LogLine):
            host = ev.host or "-"
            line = ev.line
            if ev.stream == "stderr":
                line = "! " + line
            if ev.host:
                self._host(ev.host).log.append(line)
            self._combined(f"{host}: {line}")
            return False
        if isinstance(ev, UploadProgress):
            hp = self._host(ev.host or "-")
            if hp.upload_started is None:
                hp.upload_started = ev.at
            hp.upload = ev
        elif isinstance(ev, PhaseStarted):
            hp = self._host(ev.host or "-")
            ps = self._phase(hp, ev.phase)
            ps.state, ps.started = "running", ev.at
            hp.current_phase = ev.phase
        elif isinstance(ev, PhaseFinished):
            hp = self._host(ev.host or "-")
            ps = self._phase(hp, ev.phase)
            ps.state = "done" if ev.ok else "failed"
            ps.duration, ps.detail = ev.duration, ev.detail
            if not ev.ok:
                self._note(hp, f"{ev.phase} failed: {ev.detail}")
        elif isinstance(ev, DowntimeMeasured):
            self._host(ev.host or "-").downtime = ev.seconds
        elif isinstance(ev, WarningEvent):
            if ev.host:
                hp = self._host(ev.host)
                hp.warnings.append(ev.message)
                self._note(hp, f"warning: {ev.message}")
            else:
                self._combined(f"warning: {ev.message}")
        elif isinstance(ev, DryRunScript):
            # kept for the script viewer (s), not poured into the log: a migrate script is
            # ~150 lines of shell with framing markers
            hp = self._host(ev.host or "-")
            hp.scripts[ev.phase] = ev.script
            lines = ev.script.count("\n") + (not ev.script.endswith("\n"))
            note = f"dry run: the {ev.phase} script ({plural(lines, 'line')}) changes nothing; s shows it"
            hp.log.append(note)
            self._combined(f"{hp.host}: {note}")
        elif isinstance(ev, HostFinished):
            if ev.host:
                hp = self._host(ev.host)
                hp.outcome, hp.message = ev.outcome, ev.message
                hp.current_phase = None
                # phases that never ran stay pending; a running one ends with the host
                for ps in hp.phases.values():
                    if ps.state == "running":
                        ps.state = "done" if ev.outcome in ("ok", "skipped") else "failed"
                self._note(hp, word(ev.outcome) + (f": {ev.message}" if ev.message else ""))
        elif isinstance(ev, OperationStarted):
            self.started_at = ev.at
            self.env = ev.env or self.env
            if ev.version:
                self.version = ev.version
            for h in ev.hosts:
                self._host(h)
        elif isinstance(ev, OperationFinished):
            self.finished_at = ev.at
            if self.state == "running":
                self.state = "ok" if ev.ok else "failed"
        self.changes += 1
        return True

    def _combined(self, line: str) -> None:
        self.log.append(line)
        if self.mirror is not None:
            self.mirror.append(line)

    def _note(self, hp: HostProgress, text: str) -> None:
        hp.log.append(f"== {text}")
        self._combined(f"{hp.host}: == {text}")

    def finish(self, result: Any) -> None:
        """The worker returned (an OperationResult, normally)."""
        self.result = result
        if self.state == "running":
            ok = getattr(result, "ok", True)
            self.state = "ok" if ok else "failed"
        self.changes += 1

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.state = "error"
        self._combined(f"error: {error}")
        self.changes += 1

    def cancelled(self) -> None:
        if self.state == "running":
            self.state = "cancelled"
        for hp in self.hosts.values():
            for ps in hp.phases.values():
                if ps.state == "running":
                    ps.state, ps.detail = "failed", "cancelled"
        self._combined("cancelled")
        self.changes += 1

    @property
    def finished(self) -> bool:
        return not self.running

    def summary(self) -> str:
        """One line for the completion notification."""
        what = self.title
        if self.state == "ok":
            ok = sum(1 for hp in self.hosts.values() if hp.outcome == "ok")
            skipped = sum(1 for hp in self.hosts.values() if hp.outcome == "skipped")
            tail = f", {skipped} skipped" if skipped else ""
            return f"{what}: done on {plural(ok or len(self.hosts), 'host')}{tail}"
        if self.state == "cancelled":
            return f"{what}: cancelled before the switch; the live release is unchanged"
        if self.state == "error":
            return f"{what}: error: {self.error}"
        bad = [hp for hp in self.hosts.values() if hp.outcome not in ("ok", "skipped", None)]
        if not bad:
            return f"{what}: failed: see the log"
        # the same message on every host (a version that exists everywhere) is said once
        messages = {hp.message for hp in bad}
        if len(bad) > 1 and len(messages) == 1:
            return f"{what}: {word(bad[0].outcome)} on {plural(len(bad), 'host')}: {bad[0].message}"
        return f"{what}: " + "; ".join(f"{hp.host} {word(hp.outcome)}" + (f" ({hp.message})" if hp.message else "")
                                      for hp in bad)
