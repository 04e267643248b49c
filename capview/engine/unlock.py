"""``capview unlock``: show who holds a host's lock; remove it only when it is
provably abandoned (or with --force).

Abandoned = heartbeat older than 2 minutes AND the holder ran on this machine
AND its pid is gone. A holder on another machine cannot be checked from here,
so that needs --force. Removal re-checks on the host that owner.json is still
the one we judged, so a lock taken meanwhile is never removed.
"""

from __future__ import annotations

import os
import socket

from capview.config import Environment, HostConfig
from capview.engine.context import Context, OperationResult
from capview.engine.frames import Frames, one_line
from capview.engine.history import append_record_script, history_record
from capview.engine.hostop import Done, failed, log, run_op
from capview.engine.layout import HostPaths
from capview.engine.lock import describe_holder, owner_from_json
from capview.engine.model import LockInfo
from capview.engine.script import q
from capview.errors import EXIT_LOCKED, RemoteError

STALE_AFTER = 120.0  # seconds without a heartbeat


def read_script(dp: str, frames: Frames) -> str:
    lock = HostPaths(dp).lock
    return frames.prelude() + (
        f"if [ -d {q(lock)} ]; then sec owner; cat {q(lock + '/owner.json')} 2>/dev/null || true; fi\nsec end\n"
    )


def remove_script(dp: str, seen: str, frames: Frames, record: dict) -> str:
    lock = HostPaths(dp).lock
    return frames.prelude() + (
        f"if [ ! -d {q(lock)} ]; then sec gone; exit 0; fi\n"
        # $(...) drops trailing newlines; ``seen`` is compared the same way
        f'if [ "$(cat {q(lock + "/owner.json")} 2>/dev/null || true)" != {q(seen)} ]; then sec changed; exit 0; fi\n'
        f"rm -rf {q(lock)}\n"
        + append_record_script(dp, record)
        + "sec removed\n"
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
    """None when the lock may be removed without --force, else the reason it may not."""
    if info is None:
        return "its owner.json is unreadable"
    if now - info.heartbeat <= STALE_AFTER:
        return "its heartbeat is recent (the holder may still be running)"
    if info.machine != machine:
        return f"the holder ran on {info.machine or 'an unknown machine'}, so its process cannot be checked from here"
    if not pid_gone(info.pid):
        return f"process {info.pid} on this machine is still running"
    return None


async def unlock(ctx: Context, env: Environment, host: str | None = None, force: bool = False) -> OperationResult:
    """Exit 3 (with the reason and the --force hint) when a lock is kept."""

    async def one(h: HostConfig) -> Done:
        dp = h.settings.deploy_path
        frames = Frames.new()
        res = await ctx.transport.run(h, read_script(dp, frames))
        if not res.ok:
            raise RemoteError(one_line(res.stderr or "reading the lock failed"))
        owner = next(((b) for k, _, b in frames.parse(res.stdout) if k == "owner"), None)
        if owner is None:
            return Done(True, "not locked")
        seen = owner.rstrip("\n")
        info = owner_from_json(seen)
        now = ctx.clock()
        holder = describe_holder(info, now)
        log(ctx, h, holder)
        reason = None if force else why_not_stale(info, now, socket.gethostname())
        if reason is not None:
            return failed(f"{holder}; kept because {reason} (use --force if you are sure it is abandoned)", EXIT_LOCKED)
        rec = history_record("unlock", h.name, ctx.operator, now, outcome="ok", forced=force,
                             holder=(info.operator if info else None), version=(info.version if info else None))
        frames = Frames.new()
        res = await ctx.transport.run(h, remove_script(dp, seen, frames, rec))
        if not res.ok:
            raise RemoteError(one_line(res.stderr or "removing the lock failed"))
        kinds = {k for k, _, _ in frames.parse(res.stdout)}
        if "changed" in kinds:
            return failed("the lock changed hands while we looked; not removed (run unlock again)", EXIT_LOCKED)
        if "gone" in kinds:
            return Done(True, "the lock was released meanwhile")
        return Done(True, f"removed lock ({'forced; ' if force else ''}was {holder})")

    return await run_op(ctx, env, host, "unlock", one)
