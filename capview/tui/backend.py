"""What the dashboard talks to: a ``Backend`` injected into the App (harlequin style).

* :class:`FakeBackend` -- deterministic hosts and releases, operations that emit scripted
  engine events with small sleeps. Snapshots, Pilot tests and screenshots use it.
* :class:`EngineBackend` -- the real engine over SSH (or any injected transport).

Both speak the engine's own types (``HostStatus``, ``ReleaseInfo``, events,
``OperationResult``); plans and inspection results are the small view models below,
which ``EngineBackend`` fills from whatever the engine returns.

This module imports neither textual nor rich: the backend is plain asyncio.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol, Sequence, runtime_checkable

from capview.engine.context import OperationResult
from capview.engine.events import (
    DowntimeMeasured,
    DryRunScript,
    Emit,
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
from capview.engine.model import HostStatus, LockInfo, ReleaseInfo
from capview.errors import CapviewError, EXIT_FAILED, HostUnreachable, LockHeld, UsageError

Clock = Callable[[], float]
STATUS_CONCURRENCY = 64  # hosts whose status is fetched at once (EngineBackend.status)


# --------------------------------------------------------------------------- view models


@dataclass(frozen=True)
class EnvInfo:
    name: str
    hosts: tuple[str, ...]
    strategy: str = "rolling"
    image: str | None = None  # image repository; a release's tag is f"{image}:{version}"
    keep_releases: int = 5
    app: str = ""


@dataclass(frozen=True)
class PruneItem:
    version: str
    action: str  # keep | delete | protected
    reason: str = ""  # current | previous | pinned | failed | "within keep=3" | "beyond keep=3"
    frees_bytes: int = 0
    pinned: bool = False


@dataclass(frozen=True)
class PrunePlan:
    host: str
    items: tuple[PruneItem, ...] = ()
    error: str | None = None

    @property
    def frees_bytes(self) -> int:
        return sum(i.frees_bytes for i in self.items if i.action == "delete")


@dataclass(frozen=True)
class MigrationPlan:
    host: str
    layout: str  # releases | legacy | empty | mixed
    version: str | None = None  # the release the legacy tree becomes
    steps: tuple[str, ...] = ()  # the exact moves, in order
    junk: tuple[str, ...] = ()  # *.bak leftovers moved to .capview/legacy-junk/
    unit_lines: tuple[str, ...] = ()  # systemd unit lines that reference old paths
    blockers: tuple[str, ...] = ()  # why it cannot run (shared/data not empty, ...)
    data_files: int | None = None
    data_bytes: int | None = None
    error: str | None = None
    required: bool | None = None  # the engine's own verdict, when it gives one
    message: str = ""

    @property
    def needed(self) -> bool:
        if self.required is not None:
            return self.required
        return self.layout in ("legacy", "mixed")


@dataclass(frozen=True)
class DirEntry:
    name: str
    path: str  # relative to the release root
    kind: str  # dir | file | link
    size: int = 0
    target: str | None = None  # symlink target


@dataclass(frozen=True)
class FileChange:
    path: str
    change: str  # added | removed | changed
    size_a: int | None = None
    size_b: int | None = None


@dataclass(frozen=True)
class Comparison:
    a: str
    b: str
    changes: tuple[FileChange, ...] = ()

    def count(self, change: str) -> int:
        return sum(1 for c in self.changes if c.change == change)


# --------------------------------------------------------------------------- protocol


@runtime_checkable
class Backend(Protocol):
    """Everything the dashboard needs. Operations report progress through ``emit``."""

    label: str  # shown in the header: the config path, or "demo"/"fake"

    def environments(self) -> Sequence[EnvInfo]: ...
    def default_version(self) -> str: ...

    async def status(self, env: str, host: str | None = None) -> list[HostStatus]: ...

    async def release(self, env: str, version: str | None, *, host: str | None = None,
                      dry_run: bool = False, strategy: str | None = None,
                      emit: Emit) -> OperationResult: ...
    async def rollback(self, env: str, *, to: str | None = None, host: str | None = None,
                       force: bool = False, emit: Emit) -> OperationResult: ...
    async def plan_prune(self, env: str, *, keep: int | None = None, host: str | None = None) -> list[PrunePlan]: ...
    async def prune(self, env: str, *, keep: int | None = None, host: str | None = None,
                    emit: Emit) -> OperationResult: ...
    async def pin(self, env: str, version: str, *, host: str | None = None) -> None: ...
    async def unpin(self, env: str, version: str, *, host: str | None = None) -> None: ...
    async def unlock(self, env: str, *, host: str | None = None, force: bool = False) -> None: ...
    async def plan_migration(self, env: str, *, host: str | None = None) -> list[MigrationPlan]: ...
    async def migrate(self, env: str, *, host: str | None = None, dry_run: bool = False,
                      rewrite_unit: bool = False, emit: Emit) -> OperationResult: ...

    async def manifest(self, env: str, host: str, version: str) -> dict: ...
    async def list_dir(self, env: str, host: str, version: str, path: str = "") -> list[DirEntry]: ...
    async def read_text(self, env: str, host: str, version: str, path: str, *, limit: int = 256_000) -> str: ...
    async def release_logs(self, env: str, host: str, version: str) -> dict[str, str]: ...
    async def compare(self, env: str, host: str, a: str, b: str) -> Comparison: ...

    async def close(self) -> None: ...


# --------------------------------------------------------------------------- fake


FAKE_T0 = 1_767_268_800.0  # 2026-01-01 12:00:00 UTC: the frozen "now" snapshots use

_MB = 1_000_000

# (host, phase) durations the fake reports, in seconds
_PHASE_SECONDS = {
    "lock": 0.05, "setup": 0.04, "upload": 2.31, "link": 0.02,
    "build": 14.8, "switch": 0.41, "health": 0.83, "cleanup": 0.12,
}


@dataclass
class _FakeHost:
    name: str
    env: str
    releases: list[ReleaseInfo] = field(default_factory=list)
    reachable: bool = True
    error: str | None = None
    layout: str = "releases"
    lock: LockInfo | None = None
    free_bytes: int = 18_400 * _MB

    def find(self, version: str) -> ReleaseInfo | None:
        return next((r for r in self.releases if r.version == version), None)

    @property
    def current(self) -> str | None:
        return next((r.version for r in self.releases if r.current), None)

    @property
    def previous(self) -> str | None:
        return next((r.version for r in self.releases if r.previous), None)

    def set_live(self, version: str, at: float, operator: str | None = None, downtime: float | None = None) -> None:
        old = self.current
        out = []
        for r in self.releases:
            if r.version == version:
                r = replace(r, current=True, previous=False, state="live",
                            deployed_at=at, downtime=downtime if downtime is not None else r.downtime,
                            health="ok", operator=operator or r.operator)
            elif r.version == old:
                r = replace(r, current=False, previous=True, state="superseded")
            else:
                r = replace(r, current=False, previous=False,
                            state="superseded" if r.state == "live" else r.state)
            out.append(r)
        self.releases = out

    def status(self) -> HostStatus:
        if not self.reachable:
            return HostStatus(host=self.name, env=self.env, reachable=False, error=self.error, layout="empty")
        return HostStatus(
            host=self.name, env=self.env, reachable=True, layout=self.layout,  # type: ignore[arg-type]
            current=self.current, previous=self.previous, lock=self.lock,
            releases=tuple(self.releases), free_bytes=self.free_bytes,
        )


def _fake_releases(now: float, *, image: str) -> list[ReleaseInfo]:
    day = 86_400.0
    spec = [
        # version, state, deployed ago (None: never live), size MB, unique MB, operator, commit, health, downtime, flags
        ("v0.9.0", "superseded", 20 * day, 40.1, 7.9, "alice@laptop", "1a2b3c4", "ok", 0.52, ""),
        ("v1.0.0", "superseded", 12 * day, 41.2, 9.8, "alice@laptop", "5d6e7f8", "ok", 0.47, "pinned"),
        ("v1.1.0", "superseded", 6 * day, 41.9, 3.1, "ci@runner-3", "a9b8c7d", "ok", 0.39, ""),
        ("v1.2.0", "failed", None, 42.0, 2.7, "ci@runner-3", "0f1e2d3", "failed", 0.44, ""),
        ("v1.2.1", "superseded", 1 * day, 42.3, 2.2, "bob@desk", "4c5b6a7", "ok", 0.41, "previous"),
        ("v1.3.0", "live", 180.0, 43.6, 4.4, "alice@laptop", "9f3c2ab", "ok", 0.38, "current"),
    ]
    out = []
    for i, (v, state, ago, size, uniq, op, commit, health, down, flags) in enumerate(spec):
        started = now - (ago if ago is not None else 2 * day) - 95
        out.append(ReleaseInfo(
            version=v, state=state, current="current" in flags, previous="previous" in flags,
            pinned="pinned" in flags, started_at=started,
            deployed_at=None if ago is None else now - ago,
            size_bytes=int(size * _MB), unique_bytes=int(uniq * _MB), files=236 + 3 * i,
            operator=op, commit=commit, image=f"{image}:{v}", health=health,
            downtime=None if ago is None else down,
            error="health check: GET /healthz returned 502 for 30s; switched back to v1.1.0" if state == "failed" else None,
        ))
    return out


class FakeBackend:
    """Deterministic hosts and releases for snapshots, Pilot tests and screenshots.

    World: environment ``prod`` (prod-1, prod-2) and ``legacy`` (legacy-1). By default
    prod-2 is unreachable and legacy-1 is still in the old in-place layout and holds a
    stale lock from an interrupted migration. Operations emit the engine's events with
    small sleeps (``delay``); ``hold(host, phase)`` returns an ``asyncio.Event`` the
    operation waits on once that phase has started, so a test can freeze it mid-run.
    Versions containing ``bad`` fail their health check and are switched back.
    """

    label = "fake"

    def __init__(
        self,
        clock: Clock | None = None,
        *,
        delay: float = 0.05,
        unreachable: Iterable[str] = ("prod-2",),
        build_lines: int = 12,
        operator: str = "you@workstation",
        weird: bool = False,
    ) -> None:
        self.clock = clock or (lambda: FAKE_T0)
        self.delay = delay
        self.build_lines = build_lines
        self.operator = operator
        self.weird = weird
        self.holds: dict[tuple[str, str], asyncio.Event] = {}
        self.calls: list[tuple[str, dict]] = []  # every operation call, for tests
        self.round_trips = 0
        now = self.clock()
        self.envs = (
            EnvInfo("prod", ("prod-1", "prod-2"), "rolling", image="shop", keep_releases=3, app="shop"),
            EnvInfo("legacy", ("legacy-1",), "rolling", image="shop", keep_releases=3, app="shop"),
        )
        self.hosts: dict[str, _FakeHost] = {}
        for name in ("prod-1", "prod-2"):
            rels = _fake_releases(now, image="shop")
            if name == "prod-2":
                rels = [r for r in rels if r.version != "v0.9.0"]
            self.hosts[name] = _FakeHost(name, "prod", rels)
        self.hosts["legacy-1"] = _FakeHost(
            "legacy-1", "legacy", [], layout="legacy",
            lock=LockInfo(operator="carol@laptop", pid=4242, operation="migrate", version=None,
                          started=now - 3 * 3600, heartbeat=now - 3 * 3600 + 40),
        )
        for name in unreachable:
            h = self.hosts[name]
            h.reachable = False
            h.error = f"ssh: connect to host {name} port 22: Connection timed out after 10s"
        if weird:  # hostile remote text: markup and escape sequences must render inert
            h = self.hosts["prod-1"]
            h.releases = [
                replace(r, operator="[bold]mallory[/bold]\x1b[31m@evil", commit="\x1b[2J[red]x")
                if r.version == "v1.2.1" else r
                for r in h.releases
            ]
            h.lock = LockInfo(operator="[bold]eve\x1b[31m", pid=1, operation="release", version="v9",
                              started=now - 60, heartbeat=now - 5)

    # -- helpers

    def hold(self, host: str, phase: str) -> asyncio.Event:
        ev = self.holds.get((host, phase))
        if ev is None:
            ev = self.holds[(host, phase)] = asyncio.Event()
        return ev

    def _env(self, env: str) -> EnvInfo:
        for e in self.envs:
            if e.name == env:
                return e
        raise UsageError(f"unknown environment {env!r} (known: {', '.join(e.name for e in self.envs)})")

    def _select(self, env: str, host: str | None) -> list[_FakeHost]:
        e = self._env(env)
        if host is not None and host not in e.hosts:
            raise UsageError(f"environment {env!r} has no host {host!r}")
        return [self.hosts[h] for h in e.hosts if host is None or h == host]

    async def _sleep(self, factor: float = 1.0) -> None:
        await asyncio.sleep(self.delay * factor)

    def _ev(self, emit: Emit, cls: type[Event], host: str | None, **kw: Any) -> Event:
        ev = cls(host=host, at=self.clock(), **kw)
        emit(ev)
        return ev

    async def _checkpoint(self, host: str, phase: str) -> None:
        gate = self.holds.get((host, phase))
        if gate is not None:
            await gate.wait()

    # -- protocol: reading

    def environments(self) -> Sequence[EnvInfo]:
        return self.envs

    def default_version(self) -> str:
        return "v1.4.0"

    async def status(self, env: str, host: str | None = None) -> list[HostStatus]:
        self.round_trips += 1
        await self._sleep(0.2)
        return [h.status() for h in self._select(env, host)]

    # -- operations

    async def release(self, env: str, version: str | None, *, host: str | None = None,
                      dry_run: bool = False, strategy: str | None = None, emit: Emit) -> OperationResult:
        version = version or self.default_version()
        self.calls.append(("release", dict(env=env, version=version, host=host, dry_run=dry_run, strategy=strategy)))
        e = self._env(env)
        hosts = self._select(env, host)
        strategy = strategy or e.strategy
        self._ev(emit, OperationStarted, None, operation="release", env=env,
                 hosts=tuple(h.name for h in hosts), version=version, dry_run=dry_run)
        results: list[HostFinished] = []
        if strategy == "parallel":
            results = list(await asyncio.gather(*(self._release_host(emit, h, version, dry_run, e) for h in hosts)))
        else:
            failed = False
            for h in hosts:
                if failed:
                    results.append(self._ev(emit, HostFinished, h.name, outcome="skipped",  # type: ignore[arg-type]
                                            message="not started: an earlier host failed"))
                    continue
                r = await self._release_host(emit, h, version, dry_run, e)
                results.append(r)
                failed = r.outcome not in ("ok", "skipped")
        ok = all(r.outcome in ("ok", "skipped") for r in results)
        self._ev(emit, OperationFinished, None, operation="release", ok=ok, results=tuple(results))
        return OperationResult.from_hosts(tuple(results))

    async def _release_host(self, emit: Emit, h: _FakeHost, version: str, dry_run: bool, e: EnvInfo) -> HostFinished:
        name = h.name
        t_start = self.clock()
        phase = "lock"

        def log(line: str, stream: str = "stdout") -> None:
            emit(LogLine(host=name, at=self.clock(), line=line, stream=stream, phase=phase))

        async def begin(p: str) -> None:
            nonlocal phase
            phase = p
            self._ev(emit, PhaseStarted, name, phase=p)
            await self._sleep()

        def done(p: str, detail: str = "") -> None:
            self._ev(emit, PhaseFinished, name, phase=p, ok=True, duration=_PHASE_SECONDS[p], detail=detail)

        def fail(p: str, reason: str, outcome: str = "failed") -> HostFinished:
            self._ev(emit, PhaseFinished, name, phase=p, ok=False, duration=_PHASE_SECONDS[p], detail=reason)
            return self._ev(emit, HostFinished, name, outcome=outcome, message=reason,  # type: ignore[return-value]
                            version=version, duration=self.clock() - t_start)

        created = False
        try:
            await begin("lock")
            if not h.reachable:
                return fail("lock", f"unreachable: {h.error}")
            if h.lock is not None:
                return fail("lock", f"locked by {h.lock.operator} ({h.lock.operation}, pid {h.lock.pid})")
            if h.layout != "releases":
                return fail("lock", "legacy layout: run migrate first")
            log(f"locked .capview/lock as {self.operator}")
            await self._checkpoint(name, "lock")
            done("lock")

            await begin("setup")
            if h.find(version) is not None:
                return fail("setup", f"releases/{version} already exists (releases are immutable)")
            log(f"mkdir releases/{version}")
            await self._checkpoint(name, "setup")
            done("setup")
            if dry_run:
                self._ev(emit, DryRunScript, name, phase="upload",
                         script=f"tar -x -C releases/{version}  # 31 changed files, 209 hard links")
                for p in ("upload", "link", "build", "switch", "health", "cleanup"):
                    await begin(p)
                    log(f"dry run: would run the {p} script")
                    done(p, "dry run")
                return self._ev(emit, HostFinished, name, outcome="ok", message="dry run: nothing changed",  # type: ignore[return-value]
                                version=version, duration=self.clock() - t_start)
            h.releases.append(ReleaseInfo(version=version, state="uploading", started_at=self.clock(),
                                          operator=self.operator, commit="c0ffee1", image=f"{e.image}:{version}"))
            created = True

            await begin("upload")
            total_files, total_bytes = 240, int(38.4 * _MB)
            steps = 8
            t_up = self.clock()
            for i in range(0, steps + 1):
                # stamped on a simulated timeline so the rate is meaningful under a frozen clock
                emit(UploadProgress(host=name, at=t_up + i * _PHASE_SECONDS["upload"] / steps,
                                    files_done=total_files * i // steps, files_total=total_files,
                                    bytes_done=total_bytes * i // steps, bytes_total=total_bytes))
                await self._sleep(0.25)
            log("sent 31 changed files (6.2 MB); 209 unchanged files hard-linked from the previous release")
            await self._checkpoint(name, "upload")
            done("upload", "31 files, 6.2 MB")

            await begin("link")
            log("ln -s ../../shared/.env .env")
            log("ln -s ../../shared/data data")
            await self._checkpoint(name, "link")
            done("link")

            await begin("build")
            log(f"podman build -t {e.image}:{version} .")
            steps_text = ["STEP 1/5: FROM docker.io/library/python:3.12-slim",
                          "STEP 2/5: WORKDIR /app", "STEP 3/5: COPY . /app",
                          "STEP 4/5: RUN pip install --no-cache-dir -r requirements.txt",
                          "STEP 5/5: CMD [\"python\", \"-m\", \"shop\"]"]
            for s in steps_text:
                log(s)
            if self.weird:
                log("\x1b[31m[bold]not bold[/bold]\x1b[0m \x07 done", "stderr")
            for i in range(self.build_lines):
                log(f"build: compiling module {i + 1}/{self.build_lines}")
                if i % 500 == 499:
                    await asyncio.sleep(0)  # a real stream yields between reads (~32 KB each)
            await self._checkpoint(name, "build")
            log(f"COMMIT {e.image}:{version}")
            done("build")

            await begin("switch")
            log("systemctl --user stop shop.service")
            log(f"ln -s releases/{version} current.tmp && mv -T current.tmp current")
            await self._checkpoint(name, "switch")
            created = False  # past the switch: the release stays, whatever happens
            if "bad" in version:
                h.releases = [replace(r, state="ready") if r.version == version else r for r in h.releases]
            downtime = 0.41
            log("systemctl --user start shop.service")
            self._ev(emit, DowntimeMeasured, name, seconds=downtime)
            old = h.current
            h.set_live(version, self.clock(), self.operator, downtime)
            done("switch", f"downtime {downtime:.2f}s")

            await begin("health")
            await self._checkpoint(name, "health")
            if "bad" in version:
                log("GET http://127.0.0.1:8080/healthz -> 502 Bad Gateway", "stderr")
                if old:
                    h.set_live(old, self.clock())
                h.releases = [replace(r, state="failed", health="failed", current=False, previous=False,
                                      deployed_at=None,
                                      error=f"health check failed; switched back to {old}") if r.version == version
                              else (replace(r, previous=False) if r.version != old else r)
                              for r in h.releases]
                return fail("health", f"GET /healthz returned 502 for 30s; switched back to {old}", "rolled_back")
            log("GET http://127.0.0.1:8080/healthz -> 200 OK (after 0.8s)")
            done("health")

            await begin("cleanup")
            log("keep_releases=5: nothing to prune")
            log("unlocked")
            done("cleanup")
            return self._ev(emit, HostFinished, name, outcome="ok", version=version,  # type: ignore[return-value]
                            duration=self.clock() - t_start, round_trips=9, bytes_sent=int(6.2 * _MB))
        except asyncio.CancelledError:
            # The engine's promise: cancelling before the switch leaves the host as it was.
            if created:
                h.releases = [r for r in h.releases if r.version != version]
            self._ev(emit, PhaseFinished, name, phase=phase, ok=False, duration=0.0, detail="cancelled")
            self._ev(emit, HostFinished, name, outcome="cancelled", message=f"cancelled during {phase}; nothing switched",
                     version=version)
            raise

    async def rollback(self, env: str, *, to: str | None = None, host: str | None = None,
                       force: bool = False, emit: Emit) -> OperationResult:
        self.calls.append(("rollback", dict(env=env, to=to, host=host, force=force)))
        hosts = self._select(env, host)
        self._ev(emit, OperationStarted, None, operation="rollback", env=env,
                 hosts=tuple(h.name for h in hosts), version=to)
        results = []
        for h in hosts:
            results.append(await self._rollback_host(emit, h, to, force))
        ok = all(r.outcome in ("ok", "skipped") for r in results)
        self._ev(emit, OperationFinished, None, operation="rollback", ok=ok, results=tuple(results))
        return OperationResult.from_hosts(tuple(results))

    async def _rollback_host(self, emit: Emit, h: _FakeHost, to: str | None, force: bool) -> HostFinished:
        name = h.name

        def finish(outcome: str, message: str = "", version: str | None = None) -> HostFinished:
            return self._ev(emit, HostFinished, name, outcome=outcome, message=message,  # type: ignore[return-value]
                            version=version)

        self._ev(emit, PhaseStarted, name, phase="lock")
        await self._sleep()
        if not h.reachable:
            self._ev(emit, PhaseFinished, name, phase="lock", ok=False, duration=0.0, detail=f"unreachable: {h.error}")
            return finish("failed", f"unreachable: {h.error}")
        target = to or h.previous
        rel = h.find(target) if target else None
        reason = None
        if rel is None:
            reason = f"no retained release {target!r}" if target else "no previous release to roll back to"
        elif rel.current:
            reason = f"{target} is already current"
        elif rel.state == "failed" and not force:
            reason = f"{target} failed its health check; use force to roll back to it anyway"
        if reason:
            self._ev(emit, PhaseFinished, name, phase="lock", ok=False, duration=0.05, detail=reason)
            return finish("failed", reason, target)
        self._ev(emit, PhaseFinished, name, phase="lock", ok=True, duration=0.05)
        self._ev(emit, PhaseStarted, name, phase="switch")
        emit(LogLine(host=name, at=self.clock(), line="systemctl --user stop shop.service", phase="switch"))
        emit(LogLine(host=name, at=self.clock(), line=f"ln -s releases/{target} current.tmp && mv -T current.tmp current",
                     phase="switch"))
        emit(LogLine(host=name, at=self.clock(), line=f"podman tag shop:{target} shop:current", phase="switch"))
        await self._checkpoint(name, "switch")
        await self._sleep()
        self._ev(emit, DowntimeMeasured, name, seconds=0.36)
        h.set_live(target, self.clock(), downtime=0.36)  # type: ignore[arg-type]
        self._ev(emit, PhaseFinished, name, phase="switch", ok=True, duration=0.36, detail="downtime 0.36s")
        self._ev(emit, PhaseStarted, name, phase="health")
        await self._sleep()
        emit(LogLine(host=name, at=self.clock(), line="GET http://127.0.0.1:8080/healthz -> 200 OK", phase="health"))
        self._ev(emit, PhaseFinished, name, phase="health", ok=True, duration=0.62)
        return finish("ok", f"now serving {target}", target)

    def _plan_host(self, h: _FakeHost, keep: int) -> PrunePlan:
        if not h.reachable:
            return PrunePlan(h.name, (), error=f"unreachable: {h.error}")
        ok = sorted((r for r in h.releases if r.state not in ("failed", "incomplete", "uploading")),
                    key=lambda r: r.deployed_at or 0, reverse=True)
        newest = {r.version for r in ok[:keep]}
        items = []
        for r in sorted(h.releases, key=lambda r: r.deployed_at or r.started_at or 0, reverse=True):
            if r.current:
                item = PruneItem(r.version, "protected", "current", pinned=r.pinned)
            elif r.previous:
                item = PruneItem(r.version, "protected", "previous", pinned=r.pinned)
            elif r.pinned:
                item = PruneItem(r.version, "protected", "pinned", pinned=True)
            elif r.state in ("failed", "incomplete"):
                item = PruneItem(r.version, "delete", r.state, r.unique_bytes)
            elif r.version in newest:
                item = PruneItem(r.version, "keep", f"within keep={keep}")
            else:
                item = PruneItem(r.version, "delete", f"beyond keep={keep}", r.unique_bytes)
            items.append(item)
        return PrunePlan(h.name, tuple(items))

    async def plan_prune(self, env: str, *, keep: int | None = None, host: str | None = None) -> list[PrunePlan]:
        await self._sleep()
        keep = keep if keep is not None else self._env(env).keep_releases
        return [self._plan_host(h, keep) for h in self._select(env, host)]

    async def prune(self, env: str, *, keep: int | None = None, host: str | None = None, emit: Emit) -> OperationResult:
        self.calls.append(("prune", dict(env=env, keep=keep, host=host)))
        keep = keep if keep is not None else self._env(env).keep_releases
        hosts = self._select(env, host)
        self._ev(emit, OperationStarted, None, operation="prune", env=env, hosts=tuple(h.name for h in hosts))
        results = []
        for h in hosts:
            plan = self._plan_host(h, keep)
            self._ev(emit, PhaseStarted, h.name, phase="prune")
            if plan.error:
                self._ev(emit, PhaseFinished, h.name, phase="prune", ok=False, duration=0.0, detail=plan.error)
                results.append(self._ev(emit, HostFinished, h.name, outcome="failed", message=plan.error))
                continue
            freed = 0
            for item in plan.items:
                if item.action != "delete":
                    continue
                await self._sleep()
                emit(LogLine(host=h.name, at=self.clock(), phase="prune",
                             line=f"removed releases/{item.version} and image shop:{item.version} "
                                  f"(freed {item.frees_bytes / _MB:.1f} MB)"))
                h.releases = [r for r in h.releases if r.version != item.version]
                freed += item.frees_bytes
            self._ev(emit, PhaseFinished, h.name, phase="prune", ok=True, duration=0.2,
                     detail=f"freed {freed / _MB:.1f} MB")
            results.append(self._ev(emit, HostFinished, h.name, outcome="ok", message=f"freed {freed / _MB:.1f} MB"))
        ok = all(r.outcome == "ok" for r in results)  # type: ignore[attr-defined]
        self._ev(emit, OperationFinished, None, operation="prune", ok=ok, results=tuple(results))  # type: ignore[arg-type]
        return OperationResult.from_hosts(tuple(results))  # type: ignore[arg-type]

    async def _set_pin(self, env: str, version: str, host: str | None, pinned: bool) -> None:
        self.calls.append(("pin" if pinned else "unpin", dict(env=env, version=version, host=host)))
        await self._sleep(0.2)
        for h in self._select(env, host):
            if not h.reachable:
                continue
            h.releases = [replace(r, pinned=pinned) if r.version == version else r for r in h.releases]

    async def pin(self, env: str, version: str, *, host: str | None = None) -> None:
        await self._set_pin(env, version, host, True)

    async def unpin(self, env: str, version: str, *, host: str | None = None) -> None:
        await self._set_pin(env, version, host, False)

    async def unlock(self, env: str, *, host: str | None = None, force: bool = False) -> None:
        self.calls.append(("unlock", dict(env=env, host=host, force=force)))
        await self._sleep(0.2)
        for h in self._select(env, host):
            if h.lock is None:
                continue
            stale = self.clock() - h.lock.heartbeat > 120
            if not stale and not force:
                raise LockHeld(f"{h.name}: lock held by {h.lock.operator} ({h.lock.operation}), heartbeat "
                               f"{self.clock() - h.lock.heartbeat:.0f}s ago", hint="use force to remove it anyway")
            h.lock = None

    async def plan_migration(self, env: str, *, host: str | None = None) -> list[MigrationPlan]:
        await self._sleep()
        plans = []
        for h in self._select(env, host):
            if not h.reachable:
                plans.append(MigrationPlan(h.name, "empty", error=f"unreachable: {h.error}"))
            elif h.layout != "legacy":
                plans.append(MigrationPlan(h.name, h.layout))
            else:
                plans.append(MigrationPlan(
                    h.name, "legacy", version="v0-legacy",
                    steps=(
                        "systemctl --user stop shop.service",
                        "mv data -> shared/data  (1,204 files, 88.2 MB; same filesystem: rename)",
                        "mv .env -> shared/.env  (mode 0600)",
                        "mv shop templates static config -> releases/v0-legacy/",
                        "mv app.bak shop.bak -> .capview/legacy-junk/",
                        "ln -s ../../shared/data releases/v0-legacy/data",
                        "ln -s ../../shared/.env releases/v0-legacy/.env",
                        "ln -s releases/v0-legacy current",
                        "systemctl --user start shop.service; GET /healthz",
                    ),
                    junk=("app.bak", "shop.bak"),
                    unit_lines=("ExecStart=/home/deploy/web/shop/shop --port 8080",
                                "WorkingDirectory=/home/deploy/web/shop"),
                    data_files=1204, data_bytes=int(88.2 * _MB),
                ))
        return plans

    async def migrate(self, env: str, *, host: str | None = None, dry_run: bool = False,
                      rewrite_unit: bool = False, emit: Emit) -> OperationResult:
        self.calls.append(("migrate", dict(env=env, host=host, dry_run=dry_run, rewrite_unit=rewrite_unit)))
        plans = await self.plan_migration(env, host=host)
        self._ev(emit, OperationStarted, None, operation="migrate", env=env,
                 hosts=tuple(p.host for p in plans), dry_run=dry_run)
        results = []
        for plan in plans:
            name = plan.host

            def log(line: str, phase: str) -> None:
                emit(LogLine(host=name, at=self.clock(), line=line, phase=phase))

            if plan.error:
                results.append(self._ev(emit, HostFinished, name, outcome="failed", message=plan.error))
                continue
            if not plan.needed:
                log("already migrated: nothing to do", "detect")
                results.append(self._ev(emit, HostFinished, name, outcome="skipped", message="already migrated"))
                continue
            self._ev(emit, PhaseStarted, name, phase="detect")
            log("layout: legacy (app files, data/, .env and *.bak directly in deploy_path)", "detect")
            self._ev(emit, PhaseFinished, name, phase="detect", ok=True, duration=0.08)
            self._ev(emit, PhaseStarted, name, phase="move")
            for step in plan.steps:
                await self._sleep()
                log(("would: " if dry_run else "") + step, "move")
            self._ev(emit, PhaseFinished, name, phase="move", ok=True, duration=0.9)
            self._ev(emit, PhaseStarted, name, phase="verify")
            if dry_run:
                log("dry run: nothing was moved", "verify")
            else:
                log("verify data: 1,204 files = 1,204 files; 88,200,000 bytes = 88,200,000 bytes", "verify")
                log("verify data/app.db: PRAGMA integrity_check = ok", "verify")
                log("verify: GET /healthz -> 200 OK", "verify")
                if rewrite_unit:
                    log("rewrote shop.service (backup shop.service.bak); systemctl --user daemon-reload", "verify")
                h = self.hosts[name]
                h.layout = "releases"
                h.lock = None
                now = self.clock()
                h.releases = [ReleaseInfo("v0-legacy", "live", current=True, started_at=now, deployed_at=now,
                                          size_bytes=int(51.0 * _MB), unique_bytes=int(51.0 * _MB), files=212,
                                          operator=self.operator, health="ok", downtime=1.9)]
            self._ev(emit, PhaseFinished, name, phase="verify", ok=True, duration=0.4)
            results.append(self._ev(emit, HostFinished, name, outcome="ok",
                                    message="dry run: nothing changed" if dry_run else "migrated to releases/v0-legacy"))
        ok = all(r.outcome in ("ok", "skipped") for r in results)  # type: ignore[attr-defined]
        self._ev(emit, OperationFinished, None, operation="migrate", ok=ok, results=tuple(results))  # type: ignore[arg-type]
        return OperationResult.from_hosts(tuple(results))  # type: ignore[arg-type]

    # -- inspection

    def _tree(self, version: str) -> dict[str, tuple[str, int, str | None]]:
        """path -> (kind, size, content or link target)."""
        idx = sum(ord(c) for c in version) % 7
        tree: dict[str, tuple[str, int, str | None]] = {
            "bin": ("dir", 0, None),
            "bin/shop": ("file", 8_400_000 + idx * 1000, None),
            "templates": ("dir", 0, None),
            "templates/index.html": ("file", 2_310 + idx, "<!doctype html>\n<title>{{ title }}</title>\n"
                                     "<h1>Shop</h1>\n{% for item in items %}<li>{{ item.name }}</li>{% endfor %}\n"),
            "templates/layout.html": ("file", 1_204, "<html>\n  <body>{% block body %}{% endblock %}</body>\n</html>\n"),
            "static": ("dir", 0, None),
            "static/app.css": ("file", 14_000 + idx * 10, "body { font-family: sans-serif; }\n"),
            "static/[bold]promo[/].css": ("file", 312, "/* remote names are shown literally */\n"),
            "config": ("dir", 0, None),
            "config/app.toml": ("file", 420, "[server]\nport = 8080\n# \x1b[31m not a colour \x1b[0m\n"),
            ".env": ("link", 0, "../../shared/.env"),
            "data": ("link", 0, "../../shared/data"),
            ".capview": ("dir", 0, None),
            ".capview/release.json": ("file", 512, None),
            ".capview/build.log": ("file", 4_096, None),
            ".capview/health.log": ("file", 128, None),
        }
        if version >= "v1.2":
            tree["static/promo.js"] = ("file", 5_120, "console.log('promo');\n")
        else:
            tree["templates/old.html"] = ("file", 980, "<p>old</p>\n")
        return tree

    def _release(self, host: str, version: str) -> ReleaseInfo:
        h = self.hosts[host]
        if not h.reachable:
            raise HostUnreachable(f"{host}: {h.error}")
        rel = h.find(version)
        if rel is None:
            raise UsageError(f"{host}: no release {version!r}")
        return rel

    async def manifest(self, env: str, host: str, version: str) -> dict:
        await self._sleep(0.2)
        r = self._release(host, version)
        m = {k: v for k, v in dataclasses.asdict(r).items() if k not in ("current", "previous")
             and not (k == "unavailable" and v is None)}  # the fake's releases predate issue 16's field
        m["files"] = r.files
        m["durations"] = {p: s for p, s in _PHASE_SECONDS.items()}
        return m

    async def list_dir(self, env: str, host: str, version: str, path: str = "") -> list[DirEntry]:
        await self._sleep(0.2)
        self._release(host, version)
        tree = self._tree(version)
        prefix = f"{path}/" if path else ""
        out = []
        for p, (kind, size, extra) in tree.items():
            if p.startswith(prefix) and "/" not in p[len(prefix):]:
                out.append(DirEntry(p[len(prefix):], p, kind, size, extra if kind == "link" else None))
        out.sort(key=lambda d: (d.kind != "dir", d.name))
        return out

    async def read_text(self, env: str, host: str, version: str, path: str, *, limit: int = 256_000) -> str:
        await self._sleep(0.2)
        if path == ".capview/release.json":
            return json.dumps(await self.manifest(env, host, version), indent=2)
        if path.startswith(".capview/") and path.endswith(".log"):
            return (await self.release_logs(env, host, version)).get(path.rsplit("/", 1)[1], "")
        kind, size, content = self._tree(version).get(path, ("missing", 0, None))
        if kind == "missing":
            raise UsageError(f"{path}: no such file in releases/{version}")
        if kind != "file":
            raise UsageError(f"{path} is a {kind}, not a file")
        if content is None:
            raise UsageError(f"{path}: binary file ({size:,} bytes), not shown")
        return content[:limit]

    async def release_logs(self, env: str, host: str, version: str) -> dict[str, str]:
        await self._sleep(0.2)
        r = self._release(host, version)
        build = "\n".join([f"$ podman build -t shop:{version} .",
                           "STEP 1/5: FROM docker.io/library/python:3.12-slim",
                           "STEP 2/5: WORKDIR /app", "STEP 3/5: COPY . /app",
                           "STEP 4/5: RUN pip install --no-cache-dir -r requirements.txt",
                           "Successfully installed shop-1.0 [bold]not markup[/bold]",
                           "STEP 5/5: CMD [\"python\", \"-m\", \"shop\"]",
                           f"COMMIT shop:{version}"])
        if r.state == "failed":
            health = ("GET http://127.0.0.1:8080/healthz -> 502 Bad Gateway (x30)\n"
                      "-- service logs --\n"
                      "shop[812]: Traceback (most recent call last):\n"
                      "shop[812]: sqlite3.OperationalError: no such column: orders.coupon\n")
        else:
            health = "GET http://127.0.0.1:8080/healthz -> 200 OK (after 0.8s)\n"
        return {"build.log": build, "health.log": health}

    async def compare(self, env: str, host: str, a: str, b: str) -> Comparison:
        await self._sleep(0.2)
        self._release(host, a)
        self._release(host, b)
        ta = {p: v for p, v in self._tree(a).items() if v[0] == "file"}
        tb = {p: v for p, v in self._tree(b).items() if v[0] == "file"}
        changes = []
        for p in sorted(set(ta) | set(tb)):
            if p not in ta:
                changes.append(FileChange(p, "added", None, tb[p][1]))
            elif p not in tb:
                changes.append(FileChange(p, "removed", ta[p][1], None))
            elif ta[p][1] != tb[p][1] or p.startswith(".capview/release"):
                changes.append(FileChange(p, "changed", ta[p][1], tb[p][1]))
        return Comparison(a, b, tuple(changes))

    async def close(self) -> None:
        return None


# --------------------------------------------------------------------------- engine


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


class EngineBackend:
    """The real engine. Construct with a config path, or an already loaded ``Config``;
    ``transport`` defaults to a pooled ``SshTransport`` (inject a ``LocalTransport`` or the
    demo's transport in tests). Engine modules are imported lazily, on first use."""

    def __init__(
        self,
        config_path: Path | str | None = None,
        *,
        config: Any = None,
        transport: Any = None,
        clock: Clock | None = None,
        operator: str | None = None,
    ) -> None:
        if config is None and config_path is None:
            raise UsageError("EngineBackend needs a config path or a Config")
        self.config_path = Path(config_path) if config_path is not None else Path(config.path)
        self._config = config
        self._transport = transport
        self.clock = clock or time.time
        self.operator = operator
        self.label = str(self.config_path)

    # -- plumbing

    @property
    def config(self) -> Any:
        if self._config is None:
            from capview.config import load_config

            self._config = load_config(self.config_path)
        return self._config

    def load(self) -> "EngineBackend":
        """Parse deploy.yaml now (raises ConfigError), so the CLI can report it before the UI opens."""
        _ = self.config
        return self

    @property
    def transport(self) -> Any:
        if self._transport is None:
            from capview.remote.ssh import SshTransport

            self._transport = SshTransport()
        return self._transport

    def context(self, emit: Emit | None = None) -> Any:
        from capview.engine.context import Context
        from capview.engine.events import discard

        kw: dict[str, Any] = dict(transport=self.transport, clock=self.clock, emit=emit or discard)
        if self.operator:
            kw["operator"] = self.operator
        return Context(**kw)

    def _env(self, name: str, strategy: str | None = None) -> Any:
        env = self.config.env(name)
        if strategy and strategy != env.strategy:
            env = dataclasses.replace(env, strategy=strategy)
        return env

    # -- reading

    def environments(self) -> Sequence[EnvInfo]:
        out = []
        for e in self.config.environments:
            build = e.settings.build
            out.append(EnvInfo(
                name=e.name, hosts=tuple(h.name for h in e.hosts), strategy=e.strategy,
                image=(build.image if build is not None else None), keep_releases=e.settings.keep_releases,
                app=e.settings.app,
            ))
        return out

    def default_version(self) -> str:
        from capview.engine.layout import default_version

        envs = self.config.environments
        source = envs[0].settings.source if envs else Path.cwd()
        return default_version(source, self.clock())

    async def status(self, env: str, host: str | None = None) -> list[HostStatus]:
        from capview.engine.status import status

        e = self._env(env)
        # Reading is not deploying: max_parallel paces deploys, but the dashboard lists every
        # host at once (one read-only script each). With the default 10, 50 hosts took five
        # waves of round trips (benchmarks/tui_bench.py); the transport still caps connects.
        wanted = min(len(e.hosts), STATUS_CONCURRENCY)
        if e.max_parallel < wanted:
            e = dataclasses.replace(e, max_parallel=wanted)
        return list(await status(self.context(), e, host=host))

    # -- operations

    async def release(self, env: str, version: str | None, *, host: str | None = None,
                      dry_run: bool = False, strategy: str | None = None, emit: Emit) -> OperationResult:
        from capview.engine.deploy import release

        return await release(self.context(emit), self._env(env, strategy), version, host=host, dry_run=dry_run)

    async def rollback(self, env: str, *, to: str | None = None, host: str | None = None,
                       force: bool = False, emit: Emit) -> OperationResult:
        from capview.engine.rollback import rollback

        return await rollback(self.context(emit), self._env(env), to=to, host=host, force=force)

    async def plan_prune(self, env: str, *, keep: int | None = None, host: str | None = None) -> list[PrunePlan]:
        from capview.engine.prune import plan_prune

        plans = await _maybe_await(plan_prune(self.context(), self._env(env), keep=keep, host=host))
        out = []
        for p in plans:
            items = tuple(
                PruneItem(
                    version=_get(i, "version"), action=_get(i, "action", "keep"), reason=_get(i, "reason", "") or "",
                    frees_bytes=int(_get(i, "frees_bytes", 0) or 0), pinned=bool(_get(i, "pinned", False)),
                )
                for i in _get(p, "items", ()) or ()
            )
            out.append(PrunePlan(host=_host_name(_get(p, "host")), items=items, error=_get(p, "error")))
        return out

    async def prune(self, env: str, *, keep: int | None = None, host: str | None = None, emit: Emit) -> OperationResult:
        from capview.engine.prune import prune

        return await prune(self.context(emit), self._env(env), keep=keep, host=host)

    async def pin(self, env: str, version: str, *, host: str | None = None) -> None:
        from capview.engine.ops import pin

        _raise_if_failed(await pin(self.context(), self._env(env), version, host=host), "pin")

    async def unpin(self, env: str, version: str, *, host: str | None = None) -> None:
        from capview.engine.ops import unpin

        _raise_if_failed(await unpin(self.context(), self._env(env), version, host=host), "unpin")

    async def unlock(self, env: str, *, host: str | None = None, force: bool = False) -> None:
        from capview.engine.ops import unlock

        _raise_if_failed(await unlock(self.context(), self._env(env), host=host, force=force), "unlock")

    async def plan_migration(self, env: str, *, host: str | None = None) -> list[MigrationPlan]:
        from capview.engine.migrate import plan_migration

        plans = await _maybe_await(plan_migration(self.context(), self._env(env), host=host))
        out = []
        for p in plans:
            steps = _get(p, "steps", None) or _get(p, "moves", None) or ()
            out.append(MigrationPlan(
                host=_host_name(_get(p, "host")), layout=_get(p, "layout", "empty"),
                version=_get(p, "version", None) or _get(p, "legacy_version", None),
                steps=tuple(str(s) for s in steps), junk=tuple(_get(p, "junk", ()) or ()),
                unit_lines=tuple(_get(p, "unit_lines", ()) or ()),
                blockers=tuple(_get(p, "blockers", ()) or ()),
                data_files=_get(p, "data_files"), data_bytes=_get(p, "data_bytes"), error=_get(p, "error"),
                required=_get(p, "needed", None), message=_get(p, "message", "") or "",
            ))
        return out

    async def migrate(self, env: str, *, host: str | None = None, dry_run: bool = False,
                      rewrite_unit: bool = False, emit: Emit) -> OperationResult:
        from capview.engine.migrate import migrate

        return await migrate(self.context(emit), self._env(env), host=host, dry_run=dry_run,
                             rewrite_unit=rewrite_unit)

    # -- inspection

    def _host(self, env: str, host: str) -> Any:
        return self._env(env).host(host)

    async def manifest(self, env: str, host: str, version: str) -> dict:
        text = await self.read_text(env, host, version, ".capview/release.json")
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise CapviewError(f"{host}: releases/{version}/.capview/release.json is not valid JSON ({exc})")
        return data if isinstance(data, dict) else {"manifest": data}

    async def list_dir(self, env: str, host: str, version: str, path: str = "") -> list[DirEntry]:
        from capview.engine.inspect import list_dir

        entries = await list_dir(self.context(), self._host(env, host), version, path)
        out = []
        for e in entries:
            name = _get(e, "name")
            out.append(DirEntry(
                name=name, path=f"{path}/{name}" if path else name,
                kind=_get(e, "type", None) or _get(e, "kind", "file"), size=int(_get(e, "size", 0) or 0),
                target=_get(e, "link_target", None) or _get(e, "target", None),
            ))
        return out

    async def read_text(self, env: str, host: str, version: str, path: str, *, limit: int = 256_000) -> str:
        from capview.engine.inspect import read_text

        return await read_text(self.context(), self._host(env, host), version, path, limit)

    async def release_logs(self, env: str, host: str, version: str) -> dict[str, str]:
        from capview.engine.inspect import release_logs

        logs = await release_logs(self.context(), self._host(env, host), version)
        return {f"{name}.log": text for name, text in logs.items() if text is not None}

    async def compare(self, env: str, host: str, a: str, b: str) -> Comparison:
        from capview.engine.inspect import compare

        result = await compare(self.context(), self._host(env, host), a, b)
        changes = [FileChange(e.path, "added", None, e.size) for e in result.added]
        changes += [FileChange(e.path, "removed", e.size, None) for e in result.removed]
        changes += [FileChange(c.path, "changed", c.old.size, c.new.size) for c in result.changed]
        changes.sort(key=lambda c: c.path)
        return Comparison(a, b, tuple(changes))

    async def close(self) -> None:
        if self._transport is not None:
            await self._transport.close()


def _raise_if_failed(result: Any, what: str) -> None:
    """Engine ops return an OperationResult; the UI wants an exception it can show."""
    if not isinstance(result, OperationResult) or result.ok:
        return
    msg = "; ".join(f"{h.host}: {h.message or h.outcome}" for h in result.hosts
                    if h.outcome not in ("ok", "skipped")) or f"{what} failed"
    if result.exit_code == 3:
        raise LockHeld(msg, hint="force removes a live lock: only if you know its operation is dead")
    if result.exit_code == 4:
        raise HostUnreachable(msg)
    raise CapviewError(msg)


def _host_name(h: Any) -> str:
    return h if isinstance(h, str) else _get(h, "name", str(h))


async def _maybe_await(value: Any) -> Any:
    if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
        return await value
    return value


__all__ = [
    "Backend", "FakeBackend", "EngineBackend", "EnvInfo", "PrunePlan", "PruneItem", "MigrationPlan",
    "DirEntry", "FileChange", "Comparison", "FAKE_T0", "EXIT_FAILED",
]
