"""The per-host deploy lock, client side: who we are in owner.json, whether we hold it,
and how to tell a stale lock from a busy one (all staleness rules live here).

owner.json's heartbeat is refreshed during long phases so ``capview unlock`` can
tell a stale lock from a busy one. Only the holder (matched by a random token)
removes the lock. The scripts are in scripts/lock.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
from dataclasses import dataclass
from typing import Literal

import humanize

from capview.engine.hostrun import PhaseFailed, failure
from capview.engine.hosts import HostResult
from capview.engine.layout import HostPaths
from capview.engine.model import LockInfo
from capview.engine.releases_meta import ReleaseListing, parse_release_listing
from capview.engine.scripts.release import listing
from capview.engine.scripts import lock as lock_sh
from capview.engine.scripts.shell import Frames, last_line
from capview.errors import EXIT_LOCKED

STALE_AFTER = 120.0  # seconds without a heartbeat


@dataclass(frozen=True)
class LockOwner:
    operator: str
    operation: str
    version: str | None
    started: float
    token: str
    pid: int
    machine: str

    @classmethod
    def new(cls, operator: str, operation: str, version: str | None, now: float) -> "LockOwner":
        return cls(operator, operation, version, now, secrets.token_hex(8), os.getpid(), socket.gethostname())

    def as_json(self, heartbeat: float) -> dict:
        return {
            "operator": self.operator, "operation": self.operation, "version": self.version,
            "started": self.started, "heartbeat": heartbeat, "token": self.token,
            "pid": self.pid, "machine": self.machine,
        }


LockState = Literal["free", "tried", "taken", "released"]


class HostLock:
    """One operation's lock on one host: taken, tried (asked for, answer lost), released.

    It hands out its scripts, so an operation folds "take" or "release" into whatever
    script it is sending anyway (a release snippet is harmless when we do not hold it)."""

    def __init__(self, paths: HostPaths, owner: LockOwner) -> None:
        self.paths = paths
        self.owner = owner
        self.state: LockState = "free"

    @property
    def token(self) -> str:
        return self.owner.token

    @property
    def held(self) -> bool:
        return self.state == "taken"

    @property
    def maybe_held(self) -> bool:
        """Taken, or asked for without an answer (the connection dropped, or Ctrl-C)."""
        return self.state in ("taken", "tried")

    def acquire_script(self, now: float, frames: Frames) -> str:
        return lock_sh.acquire(self.paths, self.owner.as_json(now), frames)

    def release_script(self) -> str:
        return lock_sh.release(self.paths, self.token)

    def heartbeat_script(self, now: float) -> str:
        return lock_sh.heartbeat(self.paths, self.token, self.owner.as_json(now))

    def trying(self) -> None:
        self.state = "tried"

    def answered(self, taken: bool) -> None:
        self.state = "taken" if taken else "free"

    def released(self) -> None:
        self.state = "released"


def unlock_hint(env: str, host: str) -> str:
    return f"if the lock remains: capview unlock {env or 'ENV'} --host {host} --force"


def parse_owner(frames: list[tuple[str, str, str]]) -> LockInfo | None:
    for kind, _, body in frames:
        if kind == "owner":
            return owner_from_json(body)
    return None


def owner_from_json(text: str) -> LockInfo | None:
    try:
        d = json.loads(text)
        return LockInfo(
            operator=str(d.get("operator", "?")), pid=int(d.get("pid", 0)),
            operation=str(d.get("operation", "?")), version=d.get("version"),
            started=float(d.get("started", 0)), heartbeat=float(d.get("heartbeat", 0)),
            machine=str(d.get("machine", "")),
        )
    except (ValueError, TypeError, AttributeError):
        return None


def describe_holder(info: LockInfo | None, now: float) -> str:
    if info is None:
        return "locked (owner.json unreadable - a crashed run? see: capview unlock ENV --force)"
    what = info.operation + (f" {info.version}" if info.version else "")
    return (
        f"locked by {info.operator} (pid {info.pid}, {what}, started "
        f"{humanize.naturaldelta(max(0.0, now - info.started))} ago, heartbeat "
        f"{humanize.naturaldelta(max(0.0, now - info.heartbeat))} ago)"
    )


def pid_gone(pid: int) -> bool:
    if pid <= 0:
        return False  # unknown: cannot prove it is gone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # exists, owned by someone else
    return False


def why_not_stale(info: LockInfo | None, now: float, machine: str) -> str | None:
    """None when the lock may be removed without --force, else the reason it may not.

    Abandoned = heartbeat older than STALE_AFTER AND the holder ran on this machine AND
    its pid is gone. A holder on another machine cannot be checked from here."""
    if info is None:
        return "its owner.json is unreadable"
    if now - info.heartbeat <= STALE_AFTER:
        return "its heartbeat is recent (the holder may still be running)"
    if info.machine != machine:
        return f"the holder ran on {info.machine or 'an unknown machine'}, so its process cannot be checked from here"
    if not pid_gone(info.pid):
        return f"process {info.pid} on this machine is still running"
    return None


def stale_hint(info: LockInfo | None, env: str, host: str, prefix: str = "") -> str:
    """How to get past a held lock. When the holder ran on this machine and its process
    is gone (a killed capview), plain ``unlock`` would still wait for the heartbeat to
    age: name the exact command that works."""
    env = env or "ENV"
    if info is not None and info.machine == socket.gethostname() and pid_gone(info.pid):
        return f"process {info.pid} is gone, the lock is stale: capview unlock {env} --host {host} --force"
    return f"{prefix}if it is stale: capview unlock {env} --host {host}"


HEARTBEAT_EVERY = 30.0


async def keep_alive(transport, host, lock: HostLock, clock, every: float = HEARTBEAT_EVERY) -> None:
    """Refresh owner.json's heartbeat while we hold the lock (run as a task; cancel it)."""
    while True:
        await asyncio.sleep(every)
        if lock.held:
            try:
                await transport.run(host, lock.heartbeat_script(clock()))
            except Exception:
                pass  # a missed heartbeat only makes the lock look older


async def take_with_listing(run, lock: HostLock) -> ReleaseListing:
    """One trip on ``run`` (a HostRun): take the lock and read the releases (rollback, restart).
    Raises PhaseFailed (exit 3 with the holder when it is held)."""
    frames = Frames.new()
    script = frames.prelude() + lock.acquire_script(run.ctx.clock(), frames) + listing(
        run.paths, frames, manifest_of_current=False)
    lock.trying()
    res = await run.run(script, quiet=True)
    lock.answered(res.exit_status == 0)
    if res.exit_status == 3:
        info = parse_owner(frames.parse(res.stdout))
        raise PhaseFailed(describe_holder(info, run.ctx.clock()), code=EXIT_LOCKED,
                          hint=stale_hint(info, run.host.env, run.host.name))
    if res.exit_status != 0:
        raise PhaseFailed(f"reading releases failed: {last_line(res.stderr) or res.exit_status}")
    return parse_release_listing(res.stdout, frames, run.paths.root)


async def unlock_quietly(run, lock: HostLock) -> None:
    """Release the lock if it may be ours (before any switch began); never raises."""
    if not lock.maybe_held:
        return
    try:
        await run.run(lock.release_script(), quiet=True, timeout=30)
        lock.released()
    except Exception as exc:
        run.log(f"could not release the lock ({exc}); {unlock_hint(run.host.env, run.host.name)}")


async def locked_listing(run, lock: HostLock, choose, version: str | None):
    """The lock phase of rollback and restart, in one trip: take the lock, read the
    releases, ``choose(listing) -> (target, detail)`` (PhaseFailed refuses). Returns
    (listing, target); on any failure the lock is released and this host's HostResult
    is returned instead."""
    try:
        async with run.timed("lock") as info:
            listing = await take_with_listing(run, lock)
            target, info["detail"] = choose(listing)
            return listing, target
    except asyncio.CancelledError:
        await asyncio.shield(unlock_quietly(run, lock))
        raise
    except Exception as exc:
        await unlock_quietly(run, lock)
        message, code = failure(exc)
        return HostResult(run.finish("failed", message, version), code)
