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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import humanize

from capview.engine.events import HostWarning
from capview.engine.history import history_record
from capview.engine.hostrun import PhaseFailed, failure
from capview.engine.hosts import HostResult
from capview.engine.layout import HostPaths, validate_version
from capview.engine.model import LockInfo
from capview.engine.releases_meta import ReleaseListing, parse_release_listing
from capview.engine.scripts.release import listing
from capview.engine.scripts import lock as lock_sh
from capview.engine.scripts.shell import Frames, append_line, last_line
from capview.errors import EXIT_LOCKED

STALE_AFTER = 120.0  # seconds without a heartbeat


def local_machine_id() -> str:
    """This machine's stable id: /etc/machine-id, else a random id kept in capview's
    local state dir (made once). Hostnames repeat across machines; this does not."""
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text:
            return text
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "capview" / "machine-id"
    try:
        text = state.read_text().strip()
        if text:
            return text
    except OSError:
        pass
    made = secrets.token_hex(16)
    try:
        state.parent.mkdir(parents=True, exist_ok=True)
        tmp = state.with_suffix(f".tmp.{os.getpid()}")
        tmp.write_text(made + "\n")
        os.replace(tmp, state)
        return state.read_text().strip() or made
    except OSError:
        return made  # nowhere to keep it: this run's locks are never taken over automatically


@dataclass(frozen=True)
class LockOwner:
    operator: str
    operation: str
    version: str | None
    started: float
    token: str
    pid: int
    machine: str
    machine_id: str = ""

    @classmethod
    def new(cls, operator: str, operation: str, version: str | None, now: float) -> "LockOwner":
        return cls(operator, operation, version, now, secrets.token_hex(8), os.getpid(), socket.gethostname(),
                   local_machine_id())

    def as_json(self, heartbeat: float) -> dict:
        return {
            "operator": self.operator, "operation": self.operation, "version": self.version,
            "started": self.started, "heartbeat": heartbeat, "token": self.token,
            "pid": self.pid, "machine": self.machine, "machine_id": self.machine_id,
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

    def take_over_script(self, now: float, seen: str, dead_release: str | None, record_line: str) -> str:
        return lock_sh.take_over(self.paths, self.owner.as_json(now), seen, dead_release, record_line)

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
    """The holder from a refusal's frames: owner.json, with the host's clock (host_now)."""
    host_now = None
    for kind, arg, body in frames:
        if kind == "host_now":
            host_now = _number(arg)
        if kind == "owner":
            info = owner_from_json(body)
            return replace(info, host_now=host_now) if info is not None else None
    return None


def switch_running(frames: list[tuple[str, str, str]]) -> bool:
    return any(kind == "switch_running" for kind, _, _ in frames)


def _number(text) -> float | None:
    try:
        return float(str(text).strip())
    except ValueError:
        return None


def owner_from_json(text: str) -> LockInfo | None:
    try:
        d = json.loads(text)
        hb = d.get("host_heartbeat")
        return LockInfo(
            operator=str(d.get("operator", "?")), pid=int(d.get("pid", 0)),
            operation=str(d.get("operation", "?")), version=d.get("version"),
            started=float(d.get("started", 0)), heartbeat=float(d.get("heartbeat", 0)),
            machine=str(d.get("machine", "")), machine_id=str(d.get("machine_id") or ""),
            host_heartbeat=float(hb) if isinstance(hb, (int, float)) and not isinstance(hb, bool) else None,
        )
    except (ValueError, TypeError, AttributeError):
        return None


def heartbeat_age(info: LockInfo, now: float) -> float:
    """The heartbeat's age: by the host's clock when known (issue 17), else by ours."""
    age = info.host_age
    return age if age is not None else max(0.0, now - info.heartbeat)


def describe_holder(info: LockInfo | None, now: float, env: str = "", host: str = "") -> str:
    if info is None:
        where = f" --host {host}" if host else ""
        return (f"locked (owner.json unreadable - a crashed run? if no capview runs there: "
                f"capview unlock {env or 'ENV'}{where} --force)")
    what = info.operation + (f" {info.version}" if info.version else "")
    where = f" on {info.machine}" if info.machine else ""
    clock = " by the host's clock" if info.host_age is not None else ""
    return (
        f"locked by {info.operator} (pid {info.pid}{where}, {what}, started "
        f"{humanize.naturaldelta(max(0.0, now - info.started))} ago, heartbeat "
        f"{humanize.naturaldelta(heartbeat_age(info, now))} ago{clock})"
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


def same_machine(info: LockInfo, machine_id: str | None = None) -> bool:
    """The holder ran here: its machine id AND its hostname are ours. A lock written
    before machine ids (none recorded) is never judged from its hostname alone."""
    return bool(info.machine_id) and info.machine_id == (machine_id or local_machine_id()) \
        and info.machine == socket.gethostname()


def why_not_stale(info: LockInfo | None, now: float, machine_id: str | None = None) -> str | None:
    """None when the lock may be removed (or taken over) without --force, else why not.

    The one rule (issue 17): the holder is provably gone = it ran on this machine (same
    machine id and hostname) and its pid is gone here. Nothing else proves it: a holder
    on another machine cannot be checked from here, whatever its heartbeat says, and a
    clock is never trusted for it. (``now`` is kept for the callers' wording.)"""
    if info is None:
        return "its owner.json is unreadable"
    if not same_machine(info, machine_id):
        where = info.machine or "an unknown machine"
        if info.machine == socket.gethostname():
            where += " (same hostname, another machine id)" if info.machine_id else " (no machine id recorded)"
        return f"the holder ran on {where}, so its process cannot be checked from here"
    if not pid_gone(info.pid):
        return f"process {info.pid} on this machine is still running"
    return None


def stale_hint(info: LockInfo | None, env: str, host: str, *, now: float | None = None,
               running: bool = False) -> str:
    """The single command to get past a held lock. ``--force`` is advised only when the
    holder cannot be alive by the evidence we have: never for a fresh heartbeat."""
    env = env or "ENV"
    if running:
        return "a switch is still finishing on the host; run the command again in a minute"
    if info is not None and why_not_stale(info, 0.0) is None:
        return f"process {info.pid} is gone, the lock is stale: capview unlock {env} --host {host}"
    if info is None:
        return f"capview unlock {env} --host {host} --force (owner.json is unreadable)"
    age = heartbeat_age(info, now) if now is not None else info.host_age
    if age is not None and age > STALE_AFTER:
        return (f"its heartbeat is {humanize.naturaldelta(age)} old; if nothing runs capview on "
                f"{info.machine or 'that machine'} any more: capview unlock {env} --host {host} --force")
    return (f"it may still be running: wait for it (release and rollback take --wait-lock 2m); "
            f"capview unlock {env} --host {host} tells when it may be removed")


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


async def take_over(run, lock: HostLock, parts: list[tuple[str, str, str]], frames: Frames, then: str = ""):
    """issue 17: after a refusal, take over a lock whose holder is provably gone (this
    machine, its pid gone, no switch still running on the host), removing the release it
    left incomplete, in one more trip (only then). Returns (result, frames) of that trip,
    or None when the holder may be alive (the refusal stands)."""
    info = parse_owner(parts)
    if info is None or switch_running(parts) or why_not_stale(info, run.ctx.clock()) is not None:
        return None
    seen = next((b for k, _, b in parts if k == "owner"), "").rstrip("\n")
    dead = info.version if info.operation == "release" and isinstance(info.version, str) else None
    try:
        dead = validate_version(dead) if dead else None
    except Exception:
        dead = None
    rec = history_record("takeover", run.host.name, run.ctx.operator, run.ctx.clock(), outcome="ok",
                         holder=info.operator, pid=info.pid, version=info.version, operation=info.operation)
    script = frames.prelude() + lock.take_over_script(run.ctx.clock(), seen, dead, append_line(run.paths.history, rec)) + then
    lock.trying()
    res = await run.run(script, quiet=True)
    got = frames.parse(res.stdout)
    lock.answered(any(k == "locked" for k, _, _ in got))  # ``then`` may fail after the take (setup: EXISTS)
    if lock.held:
        removed = [a for k, a, _ in got if k == "removed"]
        said = (f"took over the lock of {info.operator} ({info.operation} {info.version or ''}, pid {info.pid} "
                f"on this machine is gone)" + (f"; removed the release it left incomplete: {dead}" if removed else ""))
        run.ctx.event(HostWarning, run.host.name, message=said)  # said out loud: not a log line
    return res, got


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
        parts = frames.parse(res.stdout)
        took = await take_over(run, lock, parts, frames, listing(run.paths, frames, manifest_of_current=False))
        if took is not None:
            res, parts = took
        if res.exit_status == 3:
            info = parse_owner(parts)
            raise PhaseFailed(describe_holder(info, run.ctx.clock(), run.host.env, run.host.name), code=EXIT_LOCKED,
                              hint=stale_hint(info, run.host.env, run.host.name, now=run.ctx.clock(),
                                              running=switch_running(parts)))
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
