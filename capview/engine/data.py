"""What a rollback does to the data (issue 18), read before anything changes.

:func:`plan_data` reads, per host and in one read-only trip, the releases and history
(to know the target), every snapshot's meta.json and a description of the live
databases (``sqlite3 -readonly``: the app keeps running). From them:

* ``--restore-data``: what restoring the target's snapshot loses (the snapshot's time;
  rows per table and bytes now vs then), or why it cannot (no snapshot of the target);
* without it: whether the rollback crosses a schema change (``user_version`` or the
  schema hash differ between the target's snapshot and now), with the choice explained.

The target's snapshot is the one tagged with its name: taken while it was stopped for
the release after it, i.e. the data as it last left it (engine/hooks.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from capview import inert, units
from capview.config import Environment, HostConfig
from capview.engine.context import Context
from capview.engine.hooks import snapshots_on
from capview.engine.hostrun import PhaseFailed
from capview.engine.hosts import each_host
from capview.engine.releases_meta import parse_release_listing
from capview.engine.rollback import choose_target
from capview.engine.scripts.shell import Frames, one_line
from capview.engine.scripts.snapshots import probe_script
from capview.engine.snapshots import SnapshotMeta, parse_meta, schema_changed


@dataclass
class DataPlan:
    """One host's data facts for a rollback (host strings are shown through inert.py)."""

    host: str
    target: str | None = None
    snapshot: SnapshotMeta | None = None  # the target's snapshot (the data as it last left it)
    now: SnapshotMeta | None = None  # the live databases
    schema: list[str] = field(default_factory=list)  # what differs in schema, snapshot vs now
    losses: list[str] = field(default_factory=list)  # what a restore would lose, one line per item
    error: str = ""  # unreachable, or no target

    @property
    def restorable(self) -> bool:
        return self.snapshot is not None and not self.error

    def to_dict(self) -> dict:
        snap = self.snapshot
        return {"host": self.host, "target": self.target, "error": self.error or None, "schema_changes": self.schema,
                "snapshot": None if snap is None else {
                    "taken_at": snap.taken_at, "from": snap.serving, "integrity_ok": snap.ok,
                    "dbs": {d.path: {"bytes": d.bytes, "user_version": d.user_version, "tables": d.tables}
                            for d in snap.dbs}},
                "now": None if self.now is None else {
                    d.path: {"bytes": d.bytes, "user_version": d.user_version, "tables": d.tables} for d in self.now.dbs},
                "losses": self.losses}


def losses(snap: SnapshotMeta, now: SnapshotMeta | None) -> list[str]:
    """Rows per table and bytes, now vs in the snapshot: what a restore takes away."""
    current = {d.path: d for d in (now.dbs if now else ())}
    out = []
    for d in snap.dbs:
        n = current.get(d.path)
        if n is None:
            out.append(f"{d.path}: not there now; the snapshot's {d.bytes} bytes come back")
            continue
        out.append(f"{d.path}: {n.bytes} bytes now, {d.bytes} bytes in the snapshot")
        for table in sorted(set(d.tables) | set(n.tables)):
            then_rows, now_rows = d.tables.get(table), n.tables.get(table)
            if then_rows == now_rows:
                continue
            if then_rows is None:
                out.append(f"  table {table}: {now_rows} rows now, not in the snapshot (dropped)")
            elif now_rows is None:
                out.append(f"  table {table}: not there now, {then_rows} rows in the snapshot")
            else:
                diff = now_rows - then_rows
                what = f"{diff} rows written since are lost" if diff > 0 else f"{-diff} rows deleted since come back"
                out.append(f"  table {table}: {now_rows} rows now, {then_rows} then ({what})")
    return out


async def plan_data(ctx: Context, env: Environment, *, to: str | None = None, host: str | None = None,
                    force: bool = False) -> list[DataPlan]:
    """Per host with ``data.sqlite`` configured: the facts above. Never changes anything."""

    async def one(h: HostConfig) -> DataPlan:
        plan = DataPlan(h.name)
        if not snapshots_on(h.settings):
            plan.error = "no data.sqlite configured (or data.snapshots: 0)"
            return plan
        frames = Frames.new()
        try:
            res = await ctx.transport.run(h, probe_script(h, frames, ctx.clock()))
        except Exception as exc:
            plan.error = one_line(str(exc) or type(exc).__name__)
            return plan
        listing = parse_release_listing(res.stdout, frames, h.settings.deploy_path)
        try:
            plan.target = choose_target(listing, to, force, h.name)
        except PhaseFailed as exc:
            plan.error = str(exc)
            return plan
        for kind, arg, body in frames.parse(res.stdout):
            if kind == "snapmeta" and arg == plan.target:
                plan.snapshot = parse_meta(body)
            elif kind == "live":
                plan.now = parse_meta(body.partition("@meta ")[2])
        if plan.snapshot is not None:
            plan.losses = losses(plan.snapshot, plan.now)
            if plan.now is not None:
                plan.schema = schema_changed(plan.snapshot, plan.now)
        return plan

    return await each_host(env, host, one)


def data_words(plans: list[DataPlan], *, restore: bool, how: str, now: float | None = None) -> list[str]:
    """The plan in words, one line per entry (indented lines belong to the one above), the
    same in every front; ``how`` says how that front asks for a restore ("add --restore-data",
    "press d"). Everything from a host goes through inert.py."""
    now = time.time() if now is None else now
    out = []
    for p in plans:
        host = inert.clip(p.host, 40)
        if p.error:
            out.append(f"{host}: data: {inert.clip(p.error, 300)}")
            continue
        target = inert.clip(p.target or "?", 64)
        snap = p.snapshot
        if restore:
            if snap is None:
                out.append(f"{host}: no data snapshot of {target} (one is taken when the release after it starts) "
                           "- nothing can be restored")
                continue
            when = units.ago(now - snap.taken_at) if snap.taken_at is not None else "at an unknown time"
            out.append(f"{host}: restoring the data {target} left, snapshot taken {when}; "
                       "the data as it is now is kept as a snapshot first. It loses:")
            out += [f"  {inert.clip(line, 300)}" for line in p.losses] or ["  nothing (no change since)"]
        elif p.schema:
            changes = "; ".join(inert.clip(s, 200) for s in p.schema)
            out.append(f"{host}: warning: rolling back to {target} crosses a schema change ({changes}). {target} "
                       "will run on the data as it is now; to run it on the data it left instead (losing what was "
                       f"written since), {how}")
    return out
