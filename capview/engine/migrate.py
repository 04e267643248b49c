"""``capview migrate-data``: move a host from the old overwrite-in-place layout
(app files, ``data/``, ``.env`` and ``*.bak`` directly in deploy_path) to releases.

plan (read-only probe) -> the switch transaction (switching.py) with migrate's pieces
(scripts/migrate.py: stop, move by rename, verify, swap, start, health; any failure
restores the original tree exactly, but for the reason, status and last log lines it
saves in ``.capview/migrate-health.log``) -> the legacy release's manifest, so the next
deploy sends only changes. Hosts go as the environment's strategy says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from capview.config import Environment, HostConfig
from capview.engine import switching
from capview.engine.context import Context, OperationResult
from capview.engine.events import DryRunScript, HostWarning, LogLine
from capview.engine.history import history_record
from capview.engine.hostrun import HostRun
from capview.engine.hosts import HostResult, each_host, operation
from capview.engine.layout import CURRENT_TMP, LAYOUT_NAMES, HostPaths, current_version, validate_version
from capview.engine.lock import LockOwner, describe_holder, owner_from_json
from capview.engine.manifest import Entry, manifest_text, safe_relpath
from capview.engine.scripts import migrate as sh
from capview.engine.scripts.migrate import probe_script, secret_files, shared_items
from capview.engine.scripts.shell import Frames, bodies, one_line
from capview.engine.scripts.switch import SwitchPlan, transaction
from capview.engine.scripts.upload import write_manifest_script
from capview.errors import EXIT_FAILED, EXIT_LOCKED, EXIT_OK, EXIT_UNREACHABLE, HostUnreachable, UsageError

LEGACY_VERSION = "legacy"
JUNK = HostPaths("").legacy_junk


@dataclass(frozen=True)
class MigrationPlan:
    host: str
    layout: str  # releases | legacy | empty | mixed (status.py's words)
    needed: bool
    version: str = LEGACY_VERSION
    steps: tuple[str, ...] = ()
    app_entries: tuple[str, ...] = ()  # top-level names that become releases/<version>/...
    shared_moves: tuple[str, ...] = ()  # configured shared paths present in the old layout
    junk: tuple[str, ...] = ()  # *.bak leftovers -> .capview/legacy-junk/
    unit_path: str | None = None
    unit_lines: tuple[str, ...] = ()  # unit lines naming the old paths
    unit_rewrite: str | None = None  # the unit text --rewrite-unit would install
    blockers: tuple[str, ...] = ()  # why it cannot run (nothing is touched)
    data_files: int | None = None
    data_bytes: int | None = None
    databases: tuple[str, ...] = ()
    sqlite3: bool = False
    message: str = ""
    reachable: bool = True
    error: str | None = None


def unit_refs(text: str, dp: str, home: str | None = None) -> list[str]:
    """Unit lines that point into deploy_path but not via current/, shared/ or releases/
    (also written as ``%h/...``, systemd's specifier for the user's home, when ``home`` is given)."""
    pat = _old_path_re(dp, home)
    return [line.strip() for line in text.splitlines() if not line.lstrip().startswith("#") and pat.search(line)]


def rewrite_unit(text: str, dp: str, home: str | None = None) -> str:
    """Old paths -> ``<dp>/current/...`` (``.env`` and ``data`` resolve through the release's links);
    a ``%h/...`` path keeps its ``%h`` form."""
    out = []
    for line in text.splitlines(keepends=True):
        out.append(line if line.lstrip().startswith("#")
                   else _old_path_re(dp, home).sub(lambda m: m.group(0) + "/current", line))
    return "".join(out)


def _old_path_re(dp: str, home: str | None = None) -> re.Pattern:
    dp = dp.rstrip("/")
    roots = [re.escape(dp)]
    home = (home or "").rstrip("/")
    if home and dp.startswith(home + "/"):
        roots.append(re.escape("%h" + dp[len(home):]))
    return re.compile("(?:" + "|".join(roots) + r")(?![\w.+-])(?!/(?:current|shared|releases|\.capview)(?:[/\s\"';:]|$))")


def _parse_probe(h: HostConfig, out: str, frames: Frames, version: str) -> MigrationPlan:
    dp = h.settings.deploy_path
    items = shared_items(h)
    parts = frames.parse(out)
    got: dict[str, str] = {}
    item_info: dict[int, str] = {}
    targets: dict[int, str] = {}
    for kind, arg, body in parts:
        if kind == "item" and arg.isdigit():
            item_info[int(arg)] = body.strip()
        elif kind == "target" and arg.isdigit():
            targets[int(arg)] = body.strip()
        else:
            got[kind] = body
    if "end" not in got:
        raise ValueError("probe output was cut short")
    if "nodp" in got:
        return MigrationPlan(h.name, "empty", False, version, message=f"{dp} does not exist: nothing to migrate")
    dev = got.get("dev", "").strip()
    top = []
    for rec in got.get("top", "").split("\0"):
        bits = rec.split(" ", 2)
        if len(bits) == 3:
            top.append((bits[0], bits[1], bits[2]))
    names = {n for _, _, n in top}
    has_releases = "releases" in names
    current = current_version(got.get("current", "").rstrip("\n"), dp) if got.get("current", "").strip() else None
    stray = sorted(n for _, _, n in top if n not in LAYOUT_NAMES and not n.startswith(CURRENT_TMP))
    if has_releases:
        layout = "mixed" if stray else "releases"
        msg = "already migrated" if layout == "releases" else ""
        blockers = () if layout == "releases" else (
            "both releases/ and old in-place files exist (" + ", ".join(stray[:8]) + "): sort them out by hand",)
        return MigrationPlan(h.name, layout, False, version, blockers=blockers, message=msg or
                             "releases/ already exists next to old files")
    junk = tuple(n for n in stray if n.endswith(".bak"))
    app = tuple(n for n in stray if n not in junk and n not in items)
    if not stray:
        return MigrationPlan(h.name, "empty", False, version, message="nothing deployed here: nothing to migrate")
    blockers: list[str] = []
    for t, d, n in top:
        if n in stray and d != dev and t != "l":
            blockers.append(f"{n} is a mount point (another filesystem): it cannot be moved by rename")
    if any(n == "current" and t != "l" for t, _, n in top):
        blockers.append("current exists and is not a symlink")
    shared_dev = got.get("shareddev", "").strip()
    if shared_dev and shared_dev != dev:
        blockers.append("shared/ is on another filesystem: data would have to be copied, refusing")
    moves = []
    for i, it in enumerate(items):
        if i in item_info:
            moves.append(it)
            idev = item_info[i].split(" ")[0]
            if idev != dev and not item_info[i].endswith(" link"):
                blockers.append(f"{it} is on another filesystem: it cannot be moved by rename")
        if targets.get(i) == "used":
            if i in item_info:
                blockers.append(f"shared/{it} already exists and is not empty")
    stats = got.get("stats", "").split()
    dbs = tuple(sorted(p for p in got.get("dbs", "").split("\0") if p.strip("\n")))
    unit_path = got.get("unitpath", "").strip() or None
    unit_text = got.get("unit")
    home = got.get("home", "").strip() or None
    lines = tuple(unit_refs(unit_text, dp, home)) if unit_text else ()
    rewrite = rewrite_unit(unit_text, dp, home) if unit_text and lines else None
    if rewrite is not None and "unitwritable" not in got:
        rewrite = None
    rel = f"releases/{version}"
    steps = [f"stop the service ({h.settings.service.manager})"]
    steps += [f"move {m} -> shared/{m} (rename)" for m in moves]
    steps += [f"create empty shared/{it}" for i, it in enumerate(items) if i not in item_info and i not in targets]
    steps += [f"move {j} -> {JUNK}/" for j in junk]
    steps.append(f"move {len(app)} app entr{'y' if len(app) == 1 else 'ies'} -> {rel}/")
    steps += [f"link {rel}/{it} -> shared/{it}" for it in items]
    steps += [f"shared/{it}: mode 0600 (secrets)" for it in secret_files(h)]
    steps.append("verify: same file count and bytes under shared/; PRAGMA integrity_check "
                 + (f"on {len(dbs)} SQLite file(s)" if got.get("sqlite3", "").strip() else "skipped (no sqlite3 on host)"))
    if lines:
        steps.append(f"{unit_path} names old paths: use --rewrite-unit (backup kept) or the service may not start")
    steps += [f"current -> {rel}", "start the service", "health check",
              "on any failure: put every file back where it was"]
    data_files = int(stats[0]) if len(stats) == 2 and stats[0].isdigit() else None
    data_bytes = int(stats[1]) if len(stats) == 2 and stats[1].isdigit() else None
    return MigrationPlan(
        h.name, "legacy", True, version, tuple(steps), app, tuple(moves), junk, unit_path, lines, rewrite,
        tuple(blockers), data_files, data_bytes, dbs, bool(got.get("sqlite3", "").strip()),
        message="old in-place layout: migration needed" if current is None else "",
    )


async def _probe(ctx: Context, h: HostConfig, version: str) -> MigrationPlan:
    frames = Frames.new()
    res = await ctx.transport.run(h, probe_script(h, frames))
    if not res.ok:
        raise RuntimeError(one_line(res.stderr or f"probe exited {res.exit_status}"))
    return _parse_probe(h, res.stdout, frames, version)


async def plan_migration(ctx: Context, env: Environment, host: str | None = None,
                         version: str = LEGACY_VERSION) -> list[MigrationPlan]:
    """Per host: its layout and, for an old in-place one, every step migrate would take."""
    validate_version(version)
    for h in env.select(host):
        for it in shared_items(h):
            if not safe_relpath(it):
                raise UsageError(f"shared path {it!r} must be relative and stay inside shared/")

    async def one(h: HostConfig) -> MigrationPlan:
        try:
            return await _probe(ctx, h, version)
        except Exception as exc:
            return MigrationPlan(h.name, "empty", False, version, reachable=False, error=one_line(str(exc)))

    return await each_host(env, host, one)


def release_doc(version: str, operator: str, now: float) -> dict:
    return {"version": version, "operator": operator, "started_at": now, "deployed_at": now, "finished_at": now,
            "commit": None, "image": None, "bytes_sent": 0, "phases": {}, "health": None, "error": None,
            "previous": None, "migrated": True}


def build_manifest(listing: str, sums: str, skip: set[str]) -> dict[str, Entry]:
    digests = {}
    for rec in sums.split("\0"):
        if len(rec) > 66 and rec[64:66] == "  ":
            digests[rec[66:].removeprefix("./")] = rec[:64]
    f = listing.split("\0")
    entries: dict[str, Entry] = {}
    for i in range(0, len(f) - 4, 5):
        y, mode, size, link, path = f[i: i + 5]
        if y not in ("f", "d", "l") or path in skip or not safe_relpath(path):
            continue
        digest = digests.get(path, "-") if y == "f" else (link if y == "l" else "-")
        if y == "f" and digest == "-":
            continue
        entries[path] = Entry(path, y, int(mode, 8) if y != "l" else 0o777, int(size) if y == "f" else 0, digest)
    return dict(sorted(entries.items()))


async def _write_manifest(run: HostRun, version: str) -> int:
    frames = Frames.new()
    res = await run.run(sh.manifest_list_script(run.paths.root, version, frames), quiet=True)
    if not res.ok:
        raise RuntimeError(one_line(res.stderr or "listing the release failed"))
    got = bodies(frames.parse(res.stdout))
    entries = build_manifest(got.get("list", ""), got.get("sums", ""), set(shared_items(run.host)))
    res = await run.run(write_manifest_script(run.paths, version), stdin=manifest_text(entries).encode(), quiet=True)
    if not res.ok:
        raise RuntimeError(one_line(res.stderr or "writing the manifest failed"))
    return len(entries)


class _HostMigrate(HostRun):
    def __init__(self, ctx: Context, host: HostConfig, plan: MigrationPlan) -> None:
        super().__init__(ctx, host)
        self.plan = plan

    def note(self, line: str, phase: str = "switch") -> None:
        self.ctx.event(LogLine, self.host.name, line=line, stream="info", phase=phase)

    def on_frame(self, kind: str, arg: str) -> None:
        if kind == "note":
            self.note(arg)
        elif kind == "junk":
            self.note(f"kept leftover in {JUNK}/: {arg}")
        elif kind == "stage":
            self.note(f"step: {arg}")

    def switch_plan(self, unit_text: str | None, fail_at: str | None) -> SwitchPlan:
        ctx, h, plan = self.ctx, self.host, self.plan
        now = ctx.clock()
        owner = LockOwner.new(ctx.operator, "migrate", plan.version, now)
        record = history_record("migrate", h.name, ctx.operator, now, version=plan.version, to=plan.version,
                                moved=list(plan.shared_moves), junk=list(plan.junk),
                                unit_rewritten=unit_text is not None, **{"from": None})
        release = release_doc(plan.version, ctx.operator, now)
        unit_path = plan.unit_path if unit_text is not None else None
        suffix = f".capview-bak.{int(now)}"
        return SwitchPlan(
            op="migrate", settings=h.settings, token=owner.token, target=plan.version, revert="restore",
            live_doc=sh.live_doc(release), live_host=sh.SIZES, record=record, take_lock=owner.as_json(now),
            precheck=sh.precheck(h, fail_at),
            after_stop=sh.moves(h, plan.version, release, unit_path=unit_path, unit_text=unit_text,
                                backup_suffix=suffix),
            before_start="stage start\n", before_health="stage health\n",
            restore=sh.restore(h, plan.version, unit_path=unit_path, suffix=suffix),
            cleanup=sh.success_cleanup(h), after_finish=sh.undo_meta(), retag=False)

    async def execute(self, *, dry_run: bool, rewrite_unit_file: bool, fail_at: str | None) -> HostResult:
        ok, msg, code = await self.migrate(dry_run=dry_run, rewrite_unit_file=rewrite_unit_file, fail_at=fail_at)
        return HostResult(self.finish("ok" if ok else "failed", msg, self.plan.version), EXIT_OK if ok else code)

    async def migrate(self, *, dry_run: bool, rewrite_unit_file: bool, fail_at: str | None) -> tuple[bool, str, int]:
        ctx, h, plan = self.ctx, self.host, self.plan
        if not plan.reachable:
            return False, plan.error or "unreachable", EXIT_UNREACHABLE
        if not plan.needed:
            return (not plan.blockers), ("; ".join(plan.blockers) or plan.message or "nothing to do"), \
                (EXIT_FAILED if plan.blockers else EXIT_OK)
        for step in plan.steps:
            self.note(step, "setup")
        if plan.junk:
            self.note(f"leftovers kept in {JUNK}/: " + ", ".join(plan.junk), "setup")
        if plan.blockers:
            return False, "cannot migrate: " + "; ".join(plan.blockers), EXIT_FAILED
        for line in plan.unit_lines:
            ctx.event(HostWarning, h.name, message=f"{plan.unit_path}: {line}")
        unit_text = None
        if rewrite_unit_file:
            if plan.unit_rewrite is None and plan.unit_lines:
                return False, f"{plan.unit_path} is not writable: cannot --rewrite-unit", EXIT_FAILED
            unit_text = plan.unit_rewrite
        sp = self.switch_plan(unit_text, fail_at)
        if dry_run:
            ctx.event(DryRunScript, h.name, phase="switch", script=transaction(sp, Frames.new()))
            return True, f"dry run: would migrate to releases/{plan.version}", EXIT_OK
        r = await switching.switch(self, sp, on_frame=self.on_frame)
        v = r.values
        if r.outcome == "refused" and "already" in v:
            return True, "already migrated", EXIT_OK
        if r.outcome == "refused" and r.reason == "locked":
            return False, describe_holder(owner_from_json(v.get("owner", "")), ctx.clock(), self.host.env, self.host.name), EXIT_LOCKED
        if r.outcome == "refused" and "fail" in v:
            return False, f"cannot migrate: {v['fail']}", EXIT_FAILED
        if r.outcome in ("notstarted", "refused"):
            return False, ("migration did not complete (the connection was lost); the host keeps its original "
                           "layout"), EXIT_UNREACHABLE
        if r.outcome == "unknown":
            return False, switching.unknown(r, h), EXIT_UNREACHABLE
        if r.outcome != "ok":
            why = v.get("fail") or r.reason or "unknown error"
            saved = (f"; health.log (the reason, the service's status, its last log lines): {self.paths.migrate_health_log}"
                     if "savedlog" in v else "")
            return False, (f"migration failed: {why}; " + ("the original layout was put back"
                           if "restored" in v else "restore did not finish - check the host") + saved), EXIT_FAILED
        try:
            n = await _write_manifest(self, plan.version)
            self.note(f"wrote the manifest of releases/{plan.version} ({n} entries)", "cleanup")
        except Exception as exc:  # the migration itself succeeded; the next deploy just sends everything
            ctx.event(HostWarning, h.name, message=f"manifest not written ({one_line(str(exc))}): the next deploy sends every file")
        return True, f"migrated: current -> releases/{plan.version}", EXIT_OK


async def migrate(ctx: Context, env: Environment, host: str | None = None, dry_run: bool = False,
                  rewrite_unit: bool = False, *, version: str = LEGACY_VERSION,
                  fail_at: str | None = None) -> OperationResult:
    """Migrate every selected host, as the environment's strategy says (rolling: one at a
    time, stop at the first failure).

    ``fail_at`` (tests only) fails the host script on purpose at a stage: stop,
    shared, junk, app, link, verify, unit, switch, start or health."""
    plans = {p.host: p for p in await plan_migration(ctx, env, host, version)}

    async def one(h: HostConfig) -> HostResult:
        run = _HostMigrate(ctx, h, plans[h.name])
        try:
            return await run.execute(dry_run=dry_run, rewrite_unit_file=rewrite_unit, fail_at=fail_at)
        except HostUnreachable as exc:
            return HostResult(run.finish("failed", one_line(str(exc)), version), EXIT_UNREACHABLE)
        except (UsageError, ValueError, RuntimeError, OSError) as exc:
            return HostResult(run.finish("failed", one_line(str(exc) or type(exc).__name__), version), EXIT_FAILED)

    return await operation(ctx, env, host, "migrate", one, version=version, dry_run=dry_run,
                           follow_strategy=True)
