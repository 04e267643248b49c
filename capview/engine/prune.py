"""Prune: delete old releases, never current, the previous live one, pinned ones,
or anything outside ``releases/``.

``classify`` is the single source of the rules (the deploy's cleanup phase uses
it too). Deleting is one script per host: each release is first renamed to
``releases/.trash-<name>`` (so a half-deleted release is never listed as a
release), then removed; leftovers from an interrupted prune are finished first.
The space freed is measured on the host with ``du`` before/after.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal, Sequence

from capview.config import Environment, HostConfig
from capview.engine.context import Context, OperationResult
from capview.engine.events import (
    DryRunScript, HostFinished, LogLine, OperationFinished, OperationStarted, PhaseFinished, PhaseStarted, HostWarning,
)
from capview.engine.frames import Frames, one_line
from capview.engine.history import history_record
from capview.engine.layout import HostPaths, validate_version
from capview.engine.lock import LockOwner, acquire_script, describe_holder, parse_owner, release_script
from capview.engine.model import ReleaseInfo
from capview.engine.script import q
from capview.engine.status import IN_PROGRESS, Snapshot, each_host, release_order, snapshot
from capview.engine.usage import freed_disk_bytes
from capview import units
from capview.errors import EXIT_FAILED, EXIT_LOCKED, EXIT_OK, EXIT_UNREACHABLE, HostUnreachable, UsageError

Action = Literal["keep", "delete", "protected"]


@dataclass(frozen=True)
class PruneItem:
    version: str
    action: Action
    reason: str
    frees_bytes: int = 0  # disk bytes only this release holds


@dataclass(frozen=True)
class PrunePlan:
    host: str
    keep: int
    items: tuple[PruneItem, ...] = ()
    total: int = 0  # disk bytes deleting all of ``deletions`` frees (shared links counted right)
    trash: int = 0  # leftover .trash-* entries the prune will finish
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


def classify(releases: Sequence[ReleaseInfo], current: str | None, previous: str | None,
             keep: int) -> list[PruneItem]:
    """The prune rules, oldest release first.

    Keep the ``keep`` newest successful releases by deploy time (fallback: start
    time). Failed and incomplete ones are deleted first, whatever their age.
    Current, previous-live and pinned releases are always protected, as is a
    release a running deploy holds the lock for.
    """
    if keep < 0:
        raise UsageError(f"keep must be 0 or more, not {keep}")
    ok = [r for r in releases if r.state in ("live", "superseded") and r.symlink is None]
    newest = {r.version for r in sorted(ok, key=release_order, reverse=True)[:keep]}
    items: list[PruneItem] = []
    for r in sorted(releases, key=release_order):
        if r.version == current:
            action, why = "protected", "current"
        elif r.version == previous:
            action, why = "protected", "previous live (rollback target)"
        elif r.pinned:
            action, why = "protected", "pinned"
        elif r.symlink is not None:
            action, why = "delete", f"symlink to {r.symlink!r}: unlinked, not followed"
        elif r.state in IN_PROGRESS:
            action, why = "protected", f"{r.state}: deploy in progress"
        elif r.state in ("failed", "incomplete"):
            action, why = "delete", r.state
        elif r.version in newest:
            action, why = "keep", f"within keep {keep}"
        else:
            action, why = "delete", f"older than the newest {keep}"
        items.append(PruneItem(r.version, action, why, r.unique_disk_bytes if action == "delete" else 0))
    return keep_referenced(items, releases)


def keep_referenced(items: list[PruneItem], releases: Sequence[ReleaseInfo]) -> list[PruneItem]:
    """issue 13: never delete a release that a retained one names by absolute path
    (a venv's shebangs, a config pointing into releases/<v>/): it would break that one.
    Repeated until stable, since a release kept this way may name another."""
    refs = {r.version: set(r.references) for r in releases}
    changed = True
    while changed:
        changed = False
        retained = {i.version for i in items if i.action != "delete"}
        for n, i in enumerate(items):
            if i.action != "delete" or i.reason.startswith("symlink"):
                continue
            by = sorted(v for v in retained if i.version in refs.get(v, ()))
            if by:
                items[n] = PruneItem(i.version, "protected", f"referenced by {', '.join(by)} "
                                     f"(absolute paths into releases/{i.version}/)")
                changed = True
    return items


def choose_deletions(releases: Sequence[ReleaseInfo], current: str | None, previous: str | None,
                     keep: int) -> list[str]:
    return [i.version for i in classify(releases, current, previous, keep) if i.action == "delete"]


def plan_from_snapshot(snap: Snapshot, keep: int) -> PrunePlan:
    st = snap.status
    items = tuple(classify(st.releases, st.current, st.previous, keep))
    dels = [i.version for i in items if i.action == "delete"]
    total = freed_disk_bytes(snap.listings[v] for v in dels if v in snap.listings)
    return PrunePlan(st.host, keep, items, total, snap.trash)


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


def prune_script(dp: str, versions_to_delete: Sequence[str], images: Sequence[str] | None,
                 *, record: dict | None = None, lock_owner: LockOwner | None = None,
                 now: float = 0.0, frames: Frames | None = None) -> str:
    """One sh script deleting ``versions_to_delete`` (re-checking current/pinned on the
    host), removing ``<image>:<version>`` for each image, appending ``record`` to the
    history with "deleted" and "freed" filled in. With ``lock_owner`` it takes the
    lock itself (exit 3 if held); otherwise the caller already holds it."""
    frames = frames or Frames.new()  # callers that parse the output pass theirs
    paths = HostPaths(dp)
    versions = " ".join(q(validate_version(v)) for v in versions_to_delete)
    imgs = " ".join(q(i) for i in images or ())
    out = [frames.prelude(), "export LC_ALL=C", "warn() { sec warn; printf '%s\\n' \"$*\"; }",
           f"cd {q(paths.root)}",
           '[ ! -L releases ] || { echo "releases is a symlink: refusing to prune through it" >&2; exit 1; }',
           "[ -d releases ] || { sec freed; echo 0; sec end; exit 0; }"]
    if lock_owner is not None:
        out += [acquire_script(paths, lock_owner, now).rstrip("\n"),
                "unlock_() {", release_script(paths, lock_owner).rstrip("\n"), "}",
                "trap unlock_ EXIT", "trap 'exit 130' INT TERM HUP"]
    out.append(r"""kb() { du -sk releases 2>/dev/null | { read -r k _ || true; echo "${k:-0}"; }; }
before=$(kb)
for t in releases/.trash-*; do
  [ -e "$t" ] || [ -L "$t" ] || continue
  if err=$(rm -rf -- "$t" 2>&1); then sec finished; printf '%s\n' "$t"; else warn "$err"; fi
done
cur=$(readlink current 2>/dev/null || true); cur=${cur%/}; cur=${cur##*/}
dl=""; dj=""""")
    out.append(f"for v in {versions}; do" if versions else "for v in; do")
    out.append(r"""  r=releases/$v; t=releases/.trash-$v
  if [ "$cur" = "$v" ]; then sec skipped "$v"; echo "it is current"; continue; fi
  if [ -L "$r" ]; then
    # a symlinked entry is unlinked, never followed
    if err=$(rm -f -- "$r" 2>&1); then sec unlinked "$v"; dj="$dj${dj:+,}\"$v\""; else warn "$err"; fi
    continue
  fi
  if [ ! -d "$r" ]; then sec skipped "$v"; echo "no longer exists"; continue; fi
  if [ -e "$r/.capview/pinned" ]; then sec skipped "$v"; echo "pinned"; continue; fi
  if ! err=$(mv -- "$r" "$t" 2>&1); then warn "$err"; continue; fi
  dl="$dl $v"; dj="$dj${dj:+,}\"$v\""
  sec deleted "$v"
  err=$(rm -rf -- "$t" 2>&1) || warn "$err (left in $t; the next prune retries)"
done""")
    if imgs:
        out.append(f"""if [ -n "$dl" ]; then
  if command -v podman >/dev/null 2>&1; then
    for v in $dl; do for img in {imgs}; do
      ref="$img:$v"
      if podman image exists "$ref" 2>/dev/null; then
        if err=$(podman rmi "$ref" 2>&1); then sec image; printf '%s\\n' "$ref"; else warn "$err"; fi
      fi
    done; done
  else warn "podman not found: images of pruned releases were not removed"; fi
fi""")
    out.append('after=$(kb); freed=$(( (before - after) * 1024 )); [ "$freed" -ge 0 ] || freed=0')
    if record is not None:
        # The host fills in what it actually deleted and freed.
        doc = json.dumps({**record, "deleted": "@@D@@", "freed": "@@F@@"}, sort_keys=True,
                         separators=(",", ":"), ensure_ascii=True)
        head, rest = doc.split('"@@D@@"')
        mid, tail = rest.split('"@@F@@"')
        out.append(f"mkdir -p {q(paths.meta)}")
        out.append(f"printf '%s[%s]%s%s%s\\n' {q(head)} \"$dj\" {q(mid)} \"$freed\" {q(tail)} >> {q(paths.history)}")
    out += ["sec freed", 'echo "$freed"', "sec end"]
    return "\n".join(out) + "\n"


def parse_prune(stdout: str, frames: Frames) -> PruneRun:
    deleted, unlinked, skipped, images, warnings = [], [], [], [], []
    finished = freed = 0
    for kind, arg, body in frames.parse(stdout):
        text = body.rstrip("\n")
        if kind == "deleted":
            deleted.append(arg)
        elif kind == "unlinked":
            unlinked.append(arg)
        elif kind == "skipped":
            skipped.append((arg, text))
        elif kind == "image":
            images.append(text)
        elif kind == "warn":
            warnings.extend(line for line in text.splitlines() if line.strip())
        elif kind == "finished":
            finished += 1
        elif kind == "freed" and text.strip().isdigit():
            freed = int(text.strip())
    return PruneRun(tuple(deleted), tuple(unlinked), tuple(skipped), tuple(images), tuple(warnings), finished, freed)


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
            extra = f", frees {size(i.frees_bytes)}" if i.action == "delete" else ""
            self.log(f"{i.action:9} {i.version} ({i.reason}{extra})")
            if i.action == "delete" and i.reason.startswith("symlink"):
                self.emit(HostWarning, message=f"releases/{i.version} is a {i.reason}")
        if plan.trash:
            self.log(f"finish {plan.trash} leftover .trash-* entr{'y' if plan.trash == 1 else 'ies'}")

    async def execute(self, plan: PrunePlan, *, take_lock: bool, dry_run: bool) -> tuple[str, PruneRun]:
        """Run (or, dry, only show) the prune: (one-line summary, what the host did). Raises PruneLocked."""
        ctx, h = self.ctx, self.host
        rec = history_record("prune", h.name, ctx.operator, ctx.clock(), outcome="ok", keep=plan.keep)
        owner = LockOwner.new(ctx.operator, "prune", None, ctx.clock()) if take_lock else None
        frames = Frames.new()
        script = prune_script(h.settings.deploy_path, plan.deletions, _image_names(h), record=rec,
                              lock_owner=owner, now=ctx.clock(), frames=frames)
        self.show_plan(plan)
        if dry_run:
            self.emit(DryRunScript, phase="cleanup", script=script)
            return f"dry run: would delete {len(plan.deletions)}, freeing {size(plan.total)}", PruneRun()
        res = await ctx.transport.run(h, script)
        if res.exit_status == 3:
            raise PruneLocked(describe_holder(parse_owner(res.stdout), ctx.clock()))
        if not res.ok:
            raise RuntimeError(one_line(res.stderr or f"prune script exited {res.exit_status}"))
        run = parse_prune(res.stdout, frames)
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
        return f"deleted {n} release{'' if n == 1 else 's'}, freed {size(run.freed)}", run


class PruneLocked(Exception):
    pass


async def _prune_host(ctx: Context, env: Environment, h: HostConfig, keep: int | None,
                      dry_run: bool, take_lock: bool = True) -> tuple[HostFinished, int]:
    hp = _HostPrune(ctx, h)
    t0 = ctx.clock()
    ctx.event(PhaseStarted, h.name, phase="cleanup")

    def finish(ok: bool, outcome: str, message: str, code: int) -> tuple[HostFinished, int]:
        took = ctx.clock() - t0
        ctx.event(PhaseFinished, h.name, phase="cleanup", ok=ok, duration=took, detail=message)
        hf = HostFinished(host=h.name, at=ctx.clock(), outcome=outcome, message=message, duration=took)
        ctx.emit(hf)
        return hf, code

    try:
        snap = await snapshot(ctx, h, env.name)
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
    hosts = env.select(host)
    if keep is not None and keep < 0:
        raise UsageError(f"--keep must be 0 or more, not {keep}")
    ctx.event(OperationStarted, None, operation="prune", env=env.name,
              hosts=tuple(h.name for h in hosts), dry_run=dry_run)
    done = await each_host(env, host, lambda h: _prune_host(ctx, env, h, keep, dry_run))
    result = OperationResult.from_hosts(tuple(d[0] for d in done), tuple(d[1] for d in done))
    ctx.event(OperationFinished, None, operation="prune", ok=result.ok, results=result.hosts)
    return result


async def cleanup_after_deploy(ctx: Context, host: HostConfig, *, keep: int | None = None) -> PruneRun:
    """The deploy's cleanup phase (the deploy holds the lock): same rules, never raises;
    a failure becomes a HostWarning event, since the switch already happened."""
    try:
        snap = await snapshot(ctx, host)
        _, run = await _HostPrune(ctx, host).execute(plan_from_snapshot(snap, _keep_for(host, keep)),
                                                     take_lock=False, dry_run=False)
        return run
    except Exception as exc:
        ctx.event(HostWarning, host.name, message=f"cleanup: {one_line(str(exc))}")
        return PruneRun(warnings=(one_line(str(exc)),))
