"""Small host operations: init, pin/unpin, history, unlock. One script per host each
(scripts/ops.py, scripts/lock.py)."""

from __future__ import annotations

from capview.config import Environment, HostConfig
from capview.engine.context import Context, OperationResult
from capview.engine.events import HostWarning
from capview.engine.history import history_record, parse_history_counted, shown_record
from capview.engine.hosts import Done, each_host, failed, log, small_op
from capview.engine.layout import HostPaths, validate_version
from capview.engine.lock import describe_holder, parse_owner, stale_hint, switch_running, why_not_stale
from capview.engine.scripts import lock as lock_sh
from capview.engine.scripts.ops import append_record, history_script, init_script, pin_script
from capview.engine.scripts.shell import Frames, kinds, one_line
from capview.errors import EXIT_LOCKED, RemoteError


def _run_checked(res, what: str) -> str:
    if not res.ok:
        raise RemoteError(one_line(res.stderr or f"{what} script exited {res.exit_status}"),
                          exit_status=res.exit_status, stderr=res.stderr)
    return res.stdout


# ---------------------------------------------------------------- init

async def init(ctx: Context, env: Environment, host: str | None = None) -> OperationResult:
    """Create releases/, shared/ (configured dirs; files empty, mode 0600), .capview/.
    Idempotent: says what already existed. Refuses on an old in-place layout."""

    async def one(h: HostConfig) -> Done:
        frames = Frames.new()
        rec = history_record("init", h.name, ctx.operator, ctx.clock(), outcome="ok")
        out = _run_checked(await ctx.transport.run(h, init_script(h, frames, rec)), "init")
        created, existed = [], []
        for kind, _, body in frames.parse(out):
            if kind == "refused":
                return failed(body.strip())
            if kind == "legacy":
                return failed(f"{h.settings.deploy_path} holds an app deployed in place (old layout): "
                              f"run capview migrate-data {h.env or 'ENV'} instead of init")
            if kind in ("created", "exists"):
                path = body.rstrip("\n")
                (created if kind == "created" else existed).append(path)
                log(ctx, h, f"{'created' if kind == 'created' else 'exists '} {path}")
        if not created:
            return Done(True, "already initialised (everything existed)")
        return Done(True, f"created {len(created)}, {len(existed)} already existed")

    return await small_op(ctx, env, host, "init", one)


# ---------------------------------------------------------------- pin / unpin

async def _pin(ctx: Context, env: Environment, version: str, host: str | None, pin: bool) -> OperationResult:
    validate_version(version)
    op = "pin" if pin else "unpin"

    async def one(h: HostConfig) -> Done:
        frames = Frames.new()
        rec = history_record(op, h.name, ctx.operator, ctx.clock(), version=version, outcome="ok")
        out = _run_checked(await ctx.transport.run(h, pin_script(h.settings.deploy_path, version, pin, frames, rec)), op)
        seen = kinds(frames.parse(out))
        if "missing" in seen:
            return failed(f"no release {version} on {h.name}", version=version)
        if "already" in seen:
            return Done(True, f"{version} was already {'pinned' if pin else 'not pinned'}", version=version)
        if "changed" not in seen:
            raise RemoteError(f"{op} script ended early")
        return Done(True, f"{version} {'pinned: prune will keep it' if pin else 'unpinned'}", version=version)

    return await small_op(ctx, env, host, op, one, version=version)


async def pin(ctx: Context, env: Environment, version: str, host: str | None = None) -> OperationResult:
    """Mark a release so prune (and deploy cleanup) never deletes it."""
    return await _pin(ctx, env, version, host, True)


async def unpin(ctx: Context, env: Environment, version: str, host: str | None = None) -> OperationResult:
    return await _pin(ctx, env, version, host, False)


# ---------------------------------------------------------------- history

async def history(ctx: Context, env: Environment, host: str | None = None,
                  limit: int | None = 1000) -> dict[str, list[dict]]:
    """Per host, its history records oldest first (the last ``limit``). An unreachable
    host maps to [] and a HostWarning event says why; so do skipped unreadable lines."""

    async def one(h: HostConfig) -> tuple[str, list[dict]]:
        frames = Frames.new()
        try:
            out = _run_checked(await ctx.transport.run(h, history_script(h.settings.deploy_path, frames, limit)), "history")
        except Exception as exc:
            ctx.event(HostWarning, h.name, message=f"history unavailable: {one_line(str(exc))}")
            return h.name, []
        body = next((b for k, _, b in frames.parse(out) if k == "history"), "")
        records, skipped = parse_history_counted(body)
        shown = [r for r in records if shown_record(r)]
        skipped += len(records) - len(shown)
        if skipped:
            ctx.event(HostWarning, h.name, message=f"history: skipped {skipped} unreadable "
                                                   f"line{'' if skipped == 1 else 's'} of {HostPaths(h.settings.deploy_path).history}")
        return h.name, shown

    return dict(await each_host(env, host, one))


# ---------------------------------------------------------------- unlock

async def unlock(ctx: Context, env: Environment, host: str | None = None, force: bool = False) -> OperationResult:
    """Show who holds a host's lock; remove it only when it is provably abandoned
    (lock.why_not_stale) or with ``force``. Removal re-checks on the host that
    owner.json is still the one we judged, so a lock taken meanwhile is never removed.
    Exit 3 (with the reason and the --force hint) when a lock is kept."""

    async def one(h: HostConfig) -> Done:
        paths = HostPaths(h.settings.deploy_path)
        frames = Frames.new()
        res = await ctx.transport.run(h, lock_sh.read_owner(paths, frames))
        if not res.ok:
            raise RemoteError(one_line(res.stderr or "reading the lock failed"))
        parts = frames.parse(res.stdout)
        owner = next((b for k, _, b in parts if k == "owner"), None)
        if owner is None:
            return Done(True, "not locked")
        seen = owner.rstrip("\n")
        info = parse_owner(parts)
        now = ctx.clock()
        holder = describe_holder(info, now, h.env, h.name)
        log(ctx, h, holder)
        reason = None if force else why_not_stale(info, now)
        if reason is not None:  # issue 17: the same hint as release's refusal (--force only if it cannot be alive)
            hint = stale_hint(info, h.env or env.name, h.name, now=now, running=switch_running(parts))
            return failed(f"{holder}; kept because {reason} - {hint}", EXIT_LOCKED)
        rec = history_record("unlock", h.name, ctx.operator, now, outcome="ok", forced=force,
                             holder=(info.operator if info else None), version=(info.version if info else None))
        frames = Frames.new()
        res = await ctx.transport.run(h, lock_sh.remove_if_unchanged(paths, seen, frames, append_record(paths, rec)))
        if not res.ok:
            raise RemoteError(one_line(res.stderr or "removing the lock failed"))
        seen = kinds(frames.parse(res.stdout))
        if "changed" in seen:
            return failed("the lock changed hands while we looked; not removed (run unlock again)", EXIT_LOCKED)
        if "gone" in seen:
            return Done(True, "the lock was released meanwhile")
        return Done(True, f"removed lock ({'forced; ' if force else ''}was {holder})")

    return await small_op(ctx, env, host, "unlock", one)
