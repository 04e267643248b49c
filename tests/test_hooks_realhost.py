"""Issue 18 on the real testbed (sshd, systemd --user, real sqlite3): hooks at their
points, a real schema migration in before_start, the SQLite snapshot taken with the app
stopped, and rollback --restore-data bringing back the data the old release left."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
from pathlib import Path

import pytest

from faultkit import Hitter, db_state, settle
from invariants import assert_states_consistent, current_release
from capview.config import DataConfig, HealthConfig, HooksConfig
from capview.engine.context import Context
from capview.engine.data import plan_data
from capview.engine.deploy import release
from capview.engine.events import HostWarning, LogLine
from capview.engine.rollback import rollback
from capview.remote.ssh import SshTransport
from realhost import make_source, new_app

pytestmark = [pytest.mark.testbed, pytest.mark.slow]

DB = "data/app.db"
# The hook runs the release's own migration (as a real app ships it): with the old
# service stopped (a running app makes it fail), recording what it saw; v2's migration
# adds a column once (user_version says whether it ran).
HOOK = (
    'systemctl --user is-active -q "$UNIT" && { echo "the app is running!"; exit 9; }; '
    'echo "$CAPVIEW_VERSION|$CAPVIEW_PREVIOUS|$CAPVIEW_OPERATION|$CAPVIEW_ENV|$CAPVIEW_HOST|$CAPVIEW_RELEASE_PATH|'
    '$CAPVIEW_DEPLOY_PATH|$CAPVIEW_SHARED_PATH|$(pwd)" >> "$CAPVIEW_SHARED_PATH/hook-runs"; '
    '[ ! -f migrate.sh ] || sh migrate.sh'
)
MIGRATE_V2 = (
    'if [ "$(sqlite3 data/app.db "PRAGMA user_version")" -lt 2 ]; then\n'
    '  sqlite3 data/app.db "ALTER TABLE hits ADD COLUMN note TEXT; PRAGMA user_version = 2;" && echo "migrated to 2"\n'
    'fi\n'
)


def ctx(t, events: list | None = None) -> Context:
    return Context(transport=t, operator="tester@ci", emit=(events.append if events is not None else lambda e: None))


def settings_for(app, **hooks) -> dict:
    return {"health": HealthConfig(url=f"http://127.0.0.1:{app.port}/health", timeout=5, interval=0.2),
            "data": DataConfig(sqlite=(DB,), snapshots=3),
            "hooks": HooksConfig(timeout=hooks.pop("timeout", 60), **{k: tuple(v) for k, v in hooks.items()})}


def hits(app, n: int) -> None:
    for _ in range(n):
        assert app.get("/hit")[0] == 200


def rows(path: Path) -> int:
    return sqlite3.connect(path).execute("SELECT count(*) FROM hits").fetchone()[0]


def columns(path: Path) -> list[str]:
    return [r[1] for r in sqlite3.connect(path).execute("PRAGMA table_info(hits)")]


def logs(events: list) -> list[str]:
    return [e.line for e in events if isinstance(e, LogLine)]


def unanswered_window(hitter, old: str, new: str) -> tuple[float, float]:
    """(the last request ``old`` answered was sent, the first ``new`` answered arrived):
    the app served nobody in between, by the client's own clock (this machine's)."""
    last_old = max(sent for sent, _, v in hitter.served if v == old)
    first_new = min(got for _, got, v in hitter.served if v == new)
    return last_old, first_new


async def test_migration_runs_once_with_the_app_stopped_and_restore_data_brings_v1_data_back(host, tmp_path):
    app = new_app(host, build=False)
    shared = Path(app.deploy_path, "shared")
    db = shared / DB
    migrate = HOOK.replace("$UNIT", app.unit)
    kw = settings_for(app, before_start=[migrate], after_upload=["echo uploaded $CAPVIEW_VERSION; ls VERSION"],
                      after_switch=["echo switched to $CAPVIEW_VERSION"], after_rollback=["echo back on $CAPVIEW_VERSION"])
    async with SshTransport() as t:
        ev1: list = []
        r = await release(ctx(t, ev1), app.env(make_source(tmp_path, "v1"), **kw), "v1")
        assert r.ok, r.hosts[0].message
        assert "[after_upload] uploaded v1" in logs(ev1) and "[after_upload] VERSION" in logs(ev1)
        hits(app, 40)  # v1 writes rows
        assert db.exists() and columns(db) == ["id", "at", "version"]

        ev2: list = []
        with Hitter(app, every=0.02) as hitter:  # ~50 writes/s through the deploy
            await asyncio.sleep(0.5)
            r = await release(ctx(t, ev2), app.env(make_source(tmp_path, "v2", extra={"migrate.sh": MIGRATE_V2}), **kw),
                              "v2")
            await asyncio.sleep(0.5)
        assert r.ok, r.hosts[0].message
        assert current_release(app.deploy_path) == "v2" and app.get() == (200, "v2")
        # the migration ran once, in v2's directory, with the app stopped and every variable set
        runs = (shared / "hook-runs").read_text().splitlines()
        rel = f"{app.deploy_path}/releases/v2"
        assert runs[0].startswith("v1||release|") and runs[1:] == [f"v2|v1|release|test|{host.name}|{rel}|{app.deploy_path}|{app.deploy_path}/shared|{rel}"]
        assert "note" in columns(db)
        assert "[before_start] migrated to 2" in logs(ev2) and "[after_switch] switched to v2" in logs(ev2)
        log = Path(rel, ".capview", "hooks.log")
        assert (log.stat().st_mode & 0o777) == 0o600 and "migrated to 2" in log.read_text()
        assert "== before_start 1/1" in log.read_text() and "uploaded v2" in log.read_text()

        # the snapshot: v1's data as v1 left it, taken with the app stopped -> every row
        # acknowledged before the stop is in it (none was written while it was taken)
        snap = shared / ".snapshots" / "v1" / DB
        assert columns(snap) == ["id", "at", "version"]
        v1_rows = rows(snap)
        v1_acked = sqlite3.connect(snap).execute("SELECT count(*) FROM hits WHERE version='v1'").fetchone()[0]
        assert v1_rows == v1_acked >= 40 and hitter.ok > 40
        # the app was stopped when it was taken: no row v1 wrote is missing from it, and the
        # snapshot file was written after the unit went inactive and before it was active again
        live_v1 = sqlite3.connect(db).execute("SELECT count(*) FROM hits WHERE version='v1'").fetchone()[0]
        assert live_v1 == v1_rows
        quiet_from, quiet_to = unanswered_window(hitter, "v1", "v2")
        assert quiet_from <= snap.stat().st_mtime <= quiet_to, (quiet_from, snap.stat().st_mtime, quiet_to)
        meta = json.loads((snap.parent.parent / "meta.json").read_text())
        assert meta["from"] == "v1" and meta["dbs"][DB]["tables"] == [{"name": "hits", "rows": v1_rows}]
        assert meta["dbs"][DB]["integrity"] == [{"integrity_check": "ok"}]
        kept = Path(app.deploy_path, "releases", "v1", ".capview", "data-snapshot.json")
        assert json.loads(kept.read_text()) == meta  # recorded in v1's own metadata too
        total_acked = 40 + hitter.ok
        state, now_rows = db_state(app)
        assert state == "ok" and now_rows >= total_acked  # no acknowledged row lost across the switch

        hits(app, 15)  # v2 writes rows with its new schema
        # without --restore-data: the plan warns of the schema change
        (plan,) = await plan_data(ctx(t), app.env(tmp_path, **kw), to="v1")
        assert plan.target == "v1" and plan.schema == [f"{DB}: user_version 0 -> 2"], plan
        assert any(f"{now_rows + 15} rows now, {v1_rows} then" in line for line in plan.losses), plan.losses

        ev3: list = []
        r = await rollback(ctx(t, ev3), app.env(tmp_path, **kw), to="v1", restore_data=True)
        assert r.ok, r.hosts[0].message
    settle(app.deploy_path)
    assert_states_consistent(app.deploy_path)
    assert current_release(app.deploy_path) == "v1" and app.get() == (200, "v1")
    assert rows(db) == v1_rows and columns(db) == ["id", "at", "version"]  # v1 serves the v1-era data
    assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert "[after_rollback] back on v1" in logs(ev3)
    assert (shared / "hook-runs").read_text().count("\n") == 2  # before_start is not run by a rollback
    # the data as it was before the restore is its own snapshot (the restore can be undone)
    (undo,) = [d for d in (shared / ".snapshots").iterdir() if d.name.startswith("_restore-")]
    assert rows(undo / DB) == now_rows + 15 and "note" in columns(undo / DB)
    assert sqlite3.connect(undo / DB).execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert app.get("/hit") == (200, f"v1 {v1_rows + 1}")  # v1 writes on its own data again
    assert app.history()[-1]["restore_data"] is True


async def test_failing_migration_reverts_to_the_old_release_on_its_own_data(host, tmp_path):
    app = new_app(host, build=False)
    db = Path(app.deploy_path, "shared", DB)
    broken = ("sqlite3 data/app.db 'ALTER TABLE hits ADD COLUMN half TEXT'; "
              "printf 'boom \\033]52;c;aGk=\\007 \\033[31mred\\n'; exit 3")
    async with SshTransport() as t:
        kw = settings_for(app, on_failure=["echo failed $CAPVIEW_VERSION; exit 4"])
        assert (await release(ctx(t), app.env(make_source(tmp_path, "v1"), **kw), "v1")).ok
        hits(app, 10)
        events: list = []
        r = await release(ctx(t, events), app.env(make_source(tmp_path, "v2"), **{**kw, **settings_for(
            app, before_start=[broken], on_failure=["echo failed $CAPVIEW_VERSION; exit 4"])}), "v2")
    settle(app.deploy_path)
    h = r.hosts[0]
    assert h.outcome == "rolled_back" and "before_start hook failed" in h.message, h.message
    assert current_release(app.deploy_path) == "v1" and app.get() == (200, "v1")
    assert_states_consistent(app.deploy_path)
    assert app.release_json("v2")["state"] == "failed"
    assert app.release_json("v2")["error"] == "before_start hook failed"
    # the half-applied migration was undone from the snapshot before v1 started again
    assert columns(db) == ["id", "at", "version"] and rows(db) == 10
    log = Path(app.deploy_path, "releases", "v2", ".capview", "hooks.log").read_text()
    assert "boom" in log and "before_start 1 failed: exit 3" in log
    lines = logs(events)
    assert any(line.startswith("[before_start] boom") for line in lines)  # streamed to the live view
    assert "[on_failure] failed v2" in lines
    assert any(isinstance(e, HostWarning) and "hooks.on_failure failed" in e.message for e in events)
    assert not Path(app.deploy_path, ".capview", "lock").exists()


async def test_failing_after_upload_hook_fails_before_the_switch(host, tmp_path):
    app = new_app(host, build=False)
    async with SshTransport() as t:
        kw = settings_for(app)
        assert (await release(ctx(t), app.env(make_source(tmp_path, "v1"), **kw), "v1")).ok
        kw = settings_for(app, after_upload=["echo checking; test -f NOPE"])
        r = await release(ctx(t), app.env(make_source(tmp_path, "v2"), **kw), "v2")
        r3 = await release(ctx(t), app.env(make_source(tmp_path, "v3"), **settings_for(app, after_upload=["sleep 30"],
                                                                                         timeout=1)), "v3")
    assert r.hosts[0].outcome == "failed" and "hooks.after_upload command 1 failed (exit 1)" in r.hosts[0].message
    assert r3.hosts[0].outcome == "failed" and "timed out" in r3.hosts[0].message, r3.hosts[0].message
    assert current_release(app.deploy_path) == "v1" and app.get() == (200, "v1")
    assert app.release_json("v2")["state"] == "failed"
    assert_states_consistent(app.deploy_path)


async def test_dry_run_lists_the_hooks_and_rollback_runs_before_start_only_when_asked(host, tmp_path):
    app = new_app(host, build=False)
    shared = Path(app.deploy_path, "shared")
    record = 'echo "$CAPVIEW_OPERATION $CAPVIEW_VERSION $CAPVIEW_PREVIOUS" >> "$CAPVIEW_SHARED_PATH/runs"'
    kw = settings_for(app, before_start=[record], after_rollback=["echo rolled back"], after_upload=["true"])
    async with SshTransport() as t:
        for v in ("v1", "v2"):
            assert (await release(ctx(t), app.env(make_source(tmp_path, v), **kw), v)).ok
        events: list = []
        r = await release(ctx(t, events), app.env(make_source(tmp_path, "v3"), **kw), "v3", dry_run=True)
        assert r.ok
        listed = [line for line in logs(events) if line.startswith("would run hooks.")]
        assert listed == ["would run hooks.after_upload [1/1] (timeout 60s): true",
                          f"would run hooks.before_start [1/1] (timeout 60s): {record}"]
        assert not Path(app.deploy_path, "releases", "v3").exists()
        assert (await rollback(ctx(t), app.env(tmp_path, **kw), to="v1")).ok
        assert (shared / "runs").read_text().splitlines() == ["release v1 ", "release v2 v1"]
        ev: list = []
        assert (await rollback(ctx(t, ev), app.env(tmp_path, **kw), to="v2", run_hooks=True)).ok
        assert "[after_rollback] rolled back" in logs(ev)
    assert (shared / "runs").read_text().splitlines()[-1] == "rollback v2 v1"
    assert current_release(app.deploy_path) == "v2" and app.get() == (200, "v2")
    assert_states_consistent(app.deploy_path)


async def test_a_background_process_left_by_a_hook_does_not_hold_the_switch(host, tmp_path):
    app = new_app(host, build=False)
    shared = Path(app.deploy_path, "shared")
    # the child keeps the hook's stdout open for 60 s; the switch must not wait for it
    left = 'sleep 60 & echo $! > "$CAPVIEW_SHARED_PATH/bg.pid"; echo left a child'
    kw = settings_for(app, before_start=[left])
    try:
        async with SshTransport() as t:
            events: list = []
            r = await asyncio.wait_for(release(ctx(t, events), app.env(make_source(tmp_path, "v1"), **kw), "v1"), 40)
        assert r.ok, r.hosts[0].message
        assert "[before_start] left a child" in logs(events)
        assert app.get() == (200, "v1")
    finally:
        pid = (shared / "bg.pid").read_text().strip() if (shared / "bg.pid").exists() else ""
        if pid.isdigit():
            app.sh(f"kill {pid} 2>/dev/null || true")


async def test_a_snapshot_goes_with_its_release_when_pruned(host, tmp_path):
    from capview.engine.prune import prune

    app = new_app(host, build=False)
    snaps = Path(app.deploy_path, "shared", ".snapshots")
    kw = settings_for(app)
    async with SshTransport() as t:
        for v in ("v1", "v2", "v3"):
            assert (await release(ctx(t), app.env(make_source(tmp_path, v), keep_releases=5, **kw), v)).ok
            hits(app, 3)
        assert sorted(p.name for p in snaps.iterdir()) == ["v1", "v2"]
        r = await prune(ctx(t), app.env(tmp_path, keep_releases=5, **kw), keep=2)
        assert r.ok, r.hosts[0].message
    assert not Path(app.deploy_path, "releases", "v1").exists()
    assert sorted(p.name for p in snaps.iterdir()) == ["v2"]
    assert_states_consistent(app.deploy_path)
