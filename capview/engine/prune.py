"""``capview prune``: delete old releases, never current, the previous live one, pinned
ones, or anything outside ``releases/``.

retention.py holds the rules (the deploy's cleanup uses them too); scripts/cleanup.py
the one script per host that deletes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from capview.config import Environment, HostConfig
from capview.engine.context import Context, OperationResult
from capview.engine.events import DryRunScript, HostFinished, HostWarning, LogLine, PhaseFinished, PhaseStarted
from capview.engine.history import history_record
from capview.engine.hooks import snapshots_on
from capview.engine.scripts.snapshots import prune_with_releases_script
from capview.engine.hosts import HostResult, each_host, operation
from capview.engine.layout import HostPaths
from capview.engine.lock import HostLock, LockOwner, describe_holder, parse_owner
from capview.engine.retention import PruneItem, choose_deletions, classify  # noqa: F401  (public)
from capview.engine.scripts.cleanup import prune_script, stdin_list
from capview.engine.scripts.shell import Frames, one_line
from capview.engine.snapshot import Snapshot, snapshot
from capview.engine.usage import freed_disk_bytes
from capview import units
from capview.errors import EXIT_FAILED, EXIT_LOCKED, EXIT_OK, EXIT_UNREACHABLE, HostUnreachable, UsageError

@dataclass(frozen=True)
class PrunePlan:
    host: str
    keep: int
    items: tuple[PruneItem, ...] = ()
    total: int = 0  # disk bytes deleting all of ``deletions`` frees (shared links counted right)
    trash: int = 0  # leftover .trash-* entries the prune will finish
    sizes_pending: frozenset[str] = frozenset()  # issue 21: releases whose sums a cold listing did not wait for
    reachable: bool = True
    error: str | None = None

    @property
    def deletions(self) -> tuple[str, ...]:
        return tuple(i.version for i in self.items if i.action == "delete")


@dataclass(frozen=True)
class PruneRun:
    """What the host reported after the prune script."""

    deleted: tuple[str, ...] = ()
    unlinked: tuple[str, ...] = ()  # release entries that were symlinks
    skipped: tuple[tuple[str, str], ...] = ()  # (version, why) re-checked on the host
    images: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    finished_trash: int = 0
    freed: int = 0
    removing: int = 0  # trash entries the host was still removing when the script ended


def plan_from_snapshot(snap: Snapshot, keep: int) -> PrunePlan:
    st = snap.status
    items = tuple(classify(st.releases, st.current, st.previous, keep))
    dels = [i.version for i in items if i.action == "delete"]
    total = freed_disk_bytes(snap.listings[v] for v in dels if v in snap.listings)
    pending = frozenset(r.version for r in st.releases if r.usage_pending)
    return PrunePlan(st.host, keep, items, total, snap.trash, sizes_pending=pending)


def _keep_for(host: HostConfig, keep: int | None) -> int:
    return host.settings.keep_releases if keep is None else keep


async def plan_prune(ctx: Context, env: Environment, *, keep: int | None = None,
                     host: str | None = None) -> list[PrunePlan]:
    """Per host: what a prune would keep, delete and protect, and the bytes it frees."""

    async def one(h: HostConfig) -> PrunePlan:
        try:
            return plan_from_snapshot(await snapshot(ctx, h, env.name), _keep_for(h, keep))
        except UsageError:
            raise
        except Exception as exc:
            return PrunePlan(h.name, _keep_for(h, keep), reachable=False, error=one_line(str(exc)))

    return await each_host(env, host, one)


def parse_prune(frames: Iterable[tuple[str, str]]) -> PruneRun:
    """The host's frames (scripts/cleanup.py) -> what it did."""
    deleted, unlinked, skipped, images, warnings = [], [], [], [], []
    finished = freed = removing = 0
    for kind, arg in frames:
        arg = arg.strip()
        if kind == "deleted":
            deleted.append(arg)
        elif kind == "unlinked":
            unlinked.append(arg)
        elif kind == "skipped":
            v, _, why = arg.partition(" ")
            skipped.append((v, why))
        elif kind == "image":
            images.append(arg)
        elif kind == "warn" and arg:
            warnings.append(arg)
        elif kind == "finished":
            finished += 1
        elif kind == "freed" and arg.isdigit():
            freed = int(arg)
        elif kind == "removing" and arg.isdigit():
            removing = int(arg)
    return PruneRun(tuple(deleted), tuple(unlinked), tuple(skipped), tuple(images), tuple(warnings), finished, freed,
                    removing)


def size(n: int) -> str:
    return units.size(n)  # the one format every front prints


def _image_names(h: HostConfig) -> list[str]:
    b = h.settings.build
    return [b.image] if b is not None and b.image else []


@dataclass(frozen=True)
class _HostPrune:
    """Runs one host's prune and reports it as events."""

    ctx: Context
    host: HostConfig

    def emit(self, cls, **kw) -> None:
        self.ctx.event(cls, self.host.name, **kw)

    def log(self, line: str) -> None:
        self.emit(LogLine, line=line, stream="info", phase="cleanup")

    def show_plan(self, plan: PrunePlan) -> None:
        for i in plan.items:
            frees = "not summed yet" if i.version in plan.sizes_pending else size(i.frees_bytes)
            extra = f", frees {frees}" if i.action == "delete" else ""
            self.log(f"{i.action:9} {i.version} ({i.reason}{extra})")
            if i.action == "delete" and i.reason.startswith("symlink"):
                self.emit(HostWarning, message=f"releases/{i.version} is a {i.reason}")
        if plan.trash:
            self.log(f"finish {plan.trash} leftover .trash-* entr{'y' if plan.trash == 1 else 'ies'}")

    async def execute(self, plan: PrunePlan, *, take_lock: bool, dry_run: bool) -> tuple[str, PruneRun]:
        """Run (or, dry, only show) the prune: (one-line summary, what the host did). Raises PruneLocked."""
        ctx, h = self.ctx, self.host
        rec = history_record("prune", h.name, ctx.operator, ctx.clock(), outcome="ok", keep=plan.keep)
        frames = Frames.new()
        lock = HostLock(HostPaths(h.settings.deploy_path), LockOwner.new(ctx.operator, "prune", None, ctx.clock()))
        script = prune_script(lock.paths, frames, _image_names(h), record=rec,
                              lock=lock.acquire_script(ctx.clock(), frames) if take_lock else "",
                              unlock=lock.release_script() if take_lock else "")
        if snapshots_on(h.settings):  # issue 18: a release's data snapshot goes with it
            script += f"( {prune_with_releases_script(lock.paths, h.settings.data.snapshots)}) > /dev/null 2>&1 || :\n"
        self.show_plan(plan)
        if dry_run:
            self.emit(DryRunScript, phase="cleanup", script=script)
            return f"dry run: would delete {len(plan.deletions)}, freeing {size(plan.total)}", PruneRun()
        res = await ctx.transport.run(h, script, stdin=stdin_list(plan.deletions))
        parts = frames.parse(res.stdout)
        if res.exit_status == 3:
            raise PruneLocked(describe_holder(parse_owner(parts), ctx.clock(), h.env, h.name))
        if not res.ok:
            raise RuntimeError(one_line(res.stderr or f"prune script exited {res.exit_status}"))
        run = parse_prune((k, a) for k, a, _ in parts)
        for v in run.deleted:
            self.log(f"deleted {v}")
        for v in run.unlinked:
            self.log(f"unlinked releases/{v} (a symlink; its target was not touched)")
        for v, why in run.skipped:
            self.log(f"kept {v}: {why}")
        for ref in run.images:
            self.log(f"removed image {ref}")
        for w in run.warnings:
            self.emit(HostWarning, message=w)
        n = len(run.deleted) + len(run.unlinked)
        later = ""
        if run.removing:  # the host's rm outlived RM_WAIT (scripts/cleanup.py): say the space is still coming
            later = f" (still being removed on the host: {run.removing} releases/.trash-* dirs)"
            self.log(f"the files of the deleted releases are still being removed on the host ({run.removing} "
                     "releases/.trash-* dirs): the space frees as it goes; the next prune finishes any leftovers")
        return f"deleted {n} release{'' if n == 1 else 's'}, freed {size(run.freed)}{later}", run


class PruneLocked(Exception):
    pass


async def _prune_host(ctx: Context, env: Environment, h: HostConfig, keep: int | None,
                      dry_run: bool, take_lock: bool = True) -> HostResult:
    hp = _HostPrune(ctx, h)
    t0 = ctx.clock()
    ctx.event(PhaseStarted, h.name, phase="cleanup")

    def finish(ok: bool, outcome: str, message: str, code: int) -> HostResult:
        took = ctx.clock() - t0
        ctx.event(PhaseFinished, h.name, phase="cleanup", ok=ok, duration=took, detail=message)
        hf = HostFinished(host=h.name, at=ctx.clock(), outcome=outcome, message=message, duration=took)
        ctx.emit(hf)
        return HostResult(hf, code)

    try:  # the exact total of a set needs every inode (detail); the deletes do not: sums (or the usage cache)
        snap = await snapshot(ctx, h, env.name, detail=dry_run)
    except Exception as exc:
        code = EXIT_UNREACHABLE if isinstance(exc, (HostUnreachable, OSError)) else EXIT_FAILED
        return finish(False, "failed", one_line(str(exc)), code)
    try:
        plan = plan_from_snapshot(snap, _keep_for(h, keep))
        message, _ = await hp.execute(plan, take_lock=take_lock, dry_run=dry_run)
    except PruneLocked as exc:
        return finish(False, "failed", str(exc), EXIT_LOCKED)
    except UsageError:
        raise
    except Exception as exc:
        return finish(False, "failed", one_line(str(exc)), EXIT_FAILED)
    return finish(True, "ok", message, EXIT_OK)


async def prune(ctx: Context, env: Environment, *, keep: int | None = None, host: str | None = None,
                dry_run: bool = False) -> OperationResult:
    """Prune every selected host (concurrently); exit 3 if a host is locked, 4 if unreachable."""
    if keep is not None and keep < 0:
        raise UsageError(f"--keep must be 0 or more, not {keep}")
    return await operation(ctx, env, host, "prune", lambda h: _prune_host(ctx, env, h, keep, dry_run),
                           dry_run=dry_run)
