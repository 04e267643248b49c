"""migrate-data on hand-built legacy trees (LocalTransport, a fake service)."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from capview.config import ServiceConfig
from capview.engine.context import Context
from capview.engine.events import HostFinished, LogLine, HostWarning
from capview.engine.manifest import parse_manifest
from capview.engine.migrate import migrate, plan_migration, rewrite_unit, unit_refs
from capview.engine.status import snapshot
from capview.remote.local import LocalTransport
from fakehost import FakeHost, environment, host_config, tree_hash

STAGES = ["stop", "shared", "junk", "app", "link", "verify", "switch", "start", "health"]


class Rec(list):
    def __call__(self, ev):
        self.append(ev)

    def finished(self):
        return [e for e in self if isinstance(e, HostFinished)]


def mkctx(rec=None) -> Context:
    return Context(transport=LocalTransport(), clock=lambda: 7000.0,
                   emit=rec if rec is not None else (lambda e: None), operator="tester@box")


def seed_legacy(dp: Path) -> None:
    """The old layout: binary, templates, data/app.db, .env, app.bak, an odd name."""
    (dp / "templates").mkdir(parents=True)
    (dp / "templates" / "index.html").write_text("<h1>{{ v }}</h1>")
    (dp / "app").write_bytes(b"\x7fELF fake binary")
    (dp / "app").chmod(0o755)
    (dp / "app.bak").write_bytes(b"old binary")
    (dp / ".env").write_text("SECRET=1\n")
    (dp / ".env").chmod(0o600)
    (dp / "odd\nname").write_text("weird")
    os.symlink("templates/index.html", dp / "index-link")
    (dp / "data").mkdir()
    db = sqlite3.connect(dp / "data" / "app.db")
    db.execute("create table t (x)")
    db.executemany("insert into t values (?)", [(i,) for i in range(100)])
    db.commit()
    db.close()
    (dp / "data" / "uploads").mkdir()
    (dp / "data" / "uploads" / "a.png").write_bytes(os.urandom(3000))


@pytest.fixture
def svc(tmp_path):
    """A 'command' service: running while the flag file exists."""
    flag = tmp_path / "running"
    flag.touch()
    return ServiceConfig(manager="command", start=f"touch {flag}", stop=f"rm -f {flag}", status=f"test -f {flag}"), flag


LOG = Path(".capview") / "migrate-health.log"


def but_the_log(root: Path, dp: Path) -> str:
    """tree_hash of ``root`` but for the failure's .capview/migrate-health.log, which a failed
    migration always leaves (mode 0600), and .capview when that log is all it holds."""
    log = dp / LOG
    assert log.is_file() and stat.S_IMODE(log.stat().st_mode) == 0o600
    skip = (log, dp / ".capview") if os.listdir(dp / ".capview") == [LOG.name] else (log,)
    return tree_hash(root, skip)


def legacy_host(tmp_path, svc_cfg, **kw):
    dp = tmp_path / "web" / "my-app"
    seed_legacy(dp)
    return dp, host_config(dp, service=svc_cfg, **kw)


async def test_plan_describes_the_legacy_layout(tmp_path, svc):
    dp, h = legacy_host(tmp_path, svc[0])
    before = tree_hash(dp)
    [plan] = await plan_migration(mkctx(), environment(h))
    assert plan.layout == "legacy" and plan.needed and not plan.blockers
    assert plan.app_entries == ("app", "index-link", "odd\nname", "templates")
    assert plan.shared_moves == ("data", ".env") and plan.junk == ("app.bak",)
    assert plan.data_files == 3 and plan.data_bytes > 3000
    assert plan.databases == ("data/app.db",)
    assert any("releases/legacy" in s for s in plan.steps)
    assert tree_hash(dp) == before


async def test_migrate_moves_by_rename_verifies_and_serves_from_current(tmp_path, svc):
    dp, h = legacy_host(tmp_path, svc[0])
    ino = (dp / "data" / "app.db").stat().st_ino
    rec = Rec()
    res = await migrate(mkctx(rec), environment(h))
    assert res.ok, rec.finished()
    assert os.readlink(dp / "current") == "releases/legacy"
    rel = dp / "releases" / "legacy"
    assert (dp / "current" / "app").read_bytes() == b"\x7fELF fake binary"
    assert stat.S_IMODE((rel / "app").stat().st_mode) == 0o755
    assert os.readlink(rel / "data") == "../../shared/data" and os.readlink(rel / ".env") == "../../shared/.env"
    assert (dp / "shared" / "data" / "app.db").stat().st_ino == ino  # renamed, never copied
    assert stat.S_IMODE((dp / "shared" / ".env").stat().st_mode) == 0o600
    assert sqlite3.connect(dp / "current" / "data" / "app.db").execute("select count(*) from t").fetchone() == (100,)
    assert (dp / ".capview" / "legacy-junk" / "app.bak").read_bytes() == b"old binary"
    assert (rel / "odd\nname").read_text() == "weird" and os.readlink(rel / "index-link") == "templates/index.html"
    assert svc[1].exists()  # service running again
    assert not (dp / ".capview" / "lock").exists()
    last = FakeHost(dp).records()[-1]
    assert (last["op"], last["to"], last["outcome"]) == ("migrate", "legacy", "ok") and last["downtime"] >= 0
    lines = [e.line for e in rec if isinstance(e, LogLine)]
    assert any("integrity_check ok for 1 SQLite" in line for line in lines)
    man = parse_manifest((rel / ".capview" / "manifest.tsv").read_text())
    assert set(man) == {"app", "templates", "templates/index.html", "odd\nname", "index-link"}
    assert man["index-link"].digest == "templates/index.html" and man["app"].mode == 0o755
    st = (await snapshot(mkctx(), h)).status
    assert (st.layout, st.current, st.releases[0].state) == ("releases", "legacy", "live")
    # second run
    rec2 = Rec()
    res = await migrate(mkctx(rec2), environment(h))
    assert res.ok and rec2.finished()[0].message == "already migrated"


@pytest.mark.parametrize("stage", STAGES)
async def test_failure_mid_way_restores_the_legacy_tree_exactly(tmp_path, svc, stage):
    dp, h = legacy_host(tmp_path, svc[0])
    before = tree_hash(tmp_path / "web")
    ino = (dp / "data" / "app.db").stat().st_ino
    rec = Rec()
    res = await migrate(mkctx(rec), environment(h), fail_at=stage)
    assert not res.ok and res.exit_code == 1
    msg = rec.finished()[0].message
    assert f"forced failure at {stage}" in msg and "original layout was put back" in msg
    assert f"{dp}/.capview/migrate-health.log" in msg
    assert but_the_log(tmp_path / "web", dp) == before
    assert os.listdir(dp / ".capview") == ["migrate-health.log"]
    assert f"did not come up: forced failure at {stage}" in (dp / LOG).read_text()
    assert sorted(os.listdir(dp)) == sorted([".capview", ".env", "app", "app.bak", "data", "index-link", "odd\nname",
                                             "templates"])
    assert (dp / "data" / "app.db").stat().st_ino == ino
    assert svc[1].exists()  # the old service is running again


async def test_unhealthy_after_switch_restores(tmp_path, svc):
    cfg, flag = svc
    broken = ServiceConfig(manager="command", start="true", stop=cfg.stop, status=cfg.status)  # never comes up
    dp, h = legacy_host(tmp_path, broken)
    before = tree_hash(dp)
    rec = Rec()
    res = await migrate(mkctx(rec), environment(h))
    assert not res.ok and "health check failed" in rec.finished()[0].message
    assert but_the_log(dp, dp) == before


async def test_corrupt_database_fails_verification_and_restores(tmp_path, svc):
    dp, h = legacy_host(tmp_path, svc[0])
    (dp / "data" / "broken.db").write_bytes(b"SQLite format 3\x00" + b"garbage" * 100)
    before = tree_hash(dp)
    rec = Rec()
    res = await migrate(mkctx(rec), environment(h))
    assert not res.ok and "integrity_check failed" in rec.finished()[0].message and "broken.db" in rec.finished()[0].message
    assert but_the_log(dp, dp) == before
    assert "integrity_check failed" in (dp / LOG).read_text()


async def test_blockers_nonempty_shared_data_and_mixed(tmp_path, svc):
    dp, h = legacy_host(tmp_path, svc[0])
    (dp / "shared" / "data").mkdir(parents=True)
    (dp / "shared" / "data" / "other.db").write_text("x")
    before = tree_hash(dp)
    [plan] = await plan_migration(mkctx(), environment(h))
    assert plan.blockers == ("shared/data already exists and is not empty",)
    res = await migrate(mkctx(), environment(h))
    assert not res.ok and tree_hash(dp) == before
    (dp / "releases").mkdir()
    [plan] = await plan_migration(mkctx(), environment(h))
    assert plan.layout == "mixed" and not plan.needed and plan.blockers


async def test_empty_shared_dir_from_init_makes_way_and_comes_back(tmp_path, svc):
    dp, h = legacy_host(tmp_path, svc[0])
    (dp / "shared" / "data").mkdir(parents=True)
    before = tree_hash(tmp_path / "web")
    res = await migrate(mkctx(), environment(h), fail_at="health")
    assert not res.ok and but_the_log(tmp_path / "web", dp) == before
    res = await migrate(mkctx(), environment(h))
    assert res.ok and (dp / "shared" / "data" / "app.db").exists()
    assert not (dp / LOG).exists()  # the earlier failure's log goes with a migration that worked


async def test_nested_shared_paths(tmp_path, svc):
    from capview.config import SharedConfig
    dp, h = legacy_host(tmp_path, svc[0], shared=SharedConfig(dirs=("data", "templates/cache"), files=(".env", "conf/app.ini")))
    (dp / "templates" / "cache").mkdir()
    (dp / "templates" / "cache" / "c1").write_text("cached")
    before = tree_hash(tmp_path / "web")
    res = await migrate(mkctx(), environment(h), fail_at="health")
    assert not res.ok and but_the_log(tmp_path / "web", dp) == before
    res = await migrate(mkctx(), environment(h))
    assert res.ok
    rel = dp / "releases" / "legacy"
    assert os.readlink(rel / "templates" / "cache") == "../../../shared/templates/cache"
    assert (rel / "templates" / "cache" / "c1").read_text() == "cached"
    assert (rel / "conf" / "app.ini").read_bytes() == b""  # placeholder, mode 0600
    assert stat.S_IMODE((dp / "shared" / "conf" / "app.ini").stat().st_mode) == 0o600


UNIT = """[Unit]
Description=my app
# old: /srv/my-app
[Service]
WorkingDirectory={dp}
ExecStart={dp}/app --db {dp}/data/app.db
EnvironmentFile={dp}/.env
ExecStartPost=/bin/true {dp}/current/app {dp}-other {dp}/shared/x
"""


def test_unit_refs_and_rewrite():
    dp = "/srv/my-app"
    text = UNIT.format(dp=dp)
    assert unit_refs(text, dp) == [
        "WorkingDirectory=/srv/my-app", "ExecStart=/srv/my-app/app --db /srv/my-app/data/app.db",
        "EnvironmentFile=/srv/my-app/.env"]
    new = rewrite_unit(text, dp)
    assert "WorkingDirectory=/srv/my-app/current\n" in new
    assert "ExecStart=/srv/my-app/current/app --db /srv/my-app/current/data/app.db" in new
    assert "EnvironmentFile=/srv/my-app/current/.env" in new
    assert "/srv/my-app/current/app /srv/my-app-other /srv/my-app/shared/x" in new
    assert "# old: /srv/my-app\n" in new
    assert unit_refs(new, dp) == []


@pytest.fixture
def fake_systemctl(tmp_path, monkeypatch):
    """systemctl --user stand-in: a unit file, an 'active' flag, a call log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    unit = unit_dir / "app.service"
    log = tmp_path / "systemctl.log"
    flag = tmp_path / "active"
    flag.touch()
    (bin_dir / "systemctl").write_text(f"""#!/bin/sh
shift  # --user
echo "$*" >> {log}
case $1 in
  show) echo {unit} ;;
  status) echo systemctl-fake-status ;;
  is-active) test -f {flag} ;;
  stop) rm -f {flag} ;;
  start) touch {flag} ;;
  *) : ;;
esac
""")
    (bin_dir / "systemctl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return unit, log, flag


async def test_rewrite_unit_with_backup_and_restore_on_failure(tmp_path, fake_systemctl):
    unit, log, flag = fake_systemctl
    dp, h = legacy_host(tmp_path, ServiceConfig(manager="systemd-user", unit="app.service"))
    unit.write_text(UNIT.format(dp=dp))
    [plan] = await plan_migration(mkctx(), environment(h))
    assert plan.unit_path == str(unit) and len(plan.unit_lines) == 3 and plan.unit_rewrite
    before_unit, before = unit.read_text(), tree_hash(dp)
    res = await migrate(mkctx(), environment(h), rewrite_unit=True, fail_at="health")
    assert not res.ok and unit.read_text() == before_unit and but_the_log(dp, dp) == before
    assert "systemctl-fake-status" in (dp / LOG).read_text()  # the unit's status
    assert flag.exists() and list(unit.parent.iterdir()) == [unit]
    rec = Rec()
    res = await migrate(mkctx(rec), environment(h), rewrite_unit=True)
    assert res.ok, rec.finished()
    assert f"WorkingDirectory={dp}/current" in unit.read_text()
    backups = [p for p in unit.parent.iterdir() if p.name.startswith("app.service.capview-bak")]
    assert len(backups) == 1 and backups[0].read_text() == before_unit
    assert "daemon-reload" in log.read_text()
    assert any(isinstance(e, HostWarning) and "ExecStart" in e.message for e in rec)


async def test_dry_run_and_empty_and_already(tmp_path, svc):
    dp, h = legacy_host(tmp_path, svc[0])
    before = tree_hash(dp)
    res = await migrate(mkctx(), environment(h), dry_run=True)
    assert res.ok and tree_hash(dp) == before
    rec = Rec()
    res = await migrate(mkctx(rec), environment(host_config(tmp_path / "nothing")))
    assert res.ok and "nothing to migrate" in rec.finished()[0].message


async def test_a_failed_migration_saves_its_health_log_and_the_host_stays_in_the_old_layout(tmp_path, svc):
    """Issue 16: a migration whose health check fails leaves .capview/migrate-health.log
    (0600: the reason, the status, the service's last log lines); everything else is as
    before, and the host still reads as the old layout, to check, status and migrate-data."""
    from capview.engine.check import check

    cfg, flag = svc
    applog = tmp_path / "app.log"
    applog.write_text("".join(f"app line {i}\n" for i in range(300)) + "boom: cannot bind :8080 \x1b[31mred\n")
    broken = ServiceConfig(manager="command", start="true", stop=cfg.stop, status=cfg.status, logs=f"cat {applog}")
    dp, h = legacy_host(tmp_path, broken)
    before = tree_hash(tmp_path / "web")
    [chk_before] = await check(mkctx(), environment(h))
    assert any("old layout" in f for f in chk_before.failures), chk_before
    rec = Rec()
    res = await migrate(mkctx(rec), environment(h))
    msg = rec.finished()[0].message
    assert not res.ok and "health check failed" in msg and "original layout was put back" in msg
    assert msg.endswith(f"{dp}/.capview/migrate-health.log"), msg
    log = dp / LOG
    assert stat.S_IMODE(log.stat().st_mode) == 0o600 and os.listdir(dp / ".capview") == ["migrate-health.log"]
    text = log.read_text()
    assert text.startswith("capview: migrate legacy did not come up: health check failed")
    assert "boom: cannot bind :8080 \x1b[31mred" in text and "app line 299" in text  # the last lines, kept raw
    assert "app line 0\n" not in text  # the last 200 only
    assert but_the_log(tmp_path / "web", dp) == before
    # still the old layout: nothing half-migrated about a .capview holding just the log
    [plan] = await plan_migration(mkctx(), environment(h))
    assert (plan.layout, plan.needed, plan.blockers) == ("legacy", True, ())
    st = (await snapshot(mkctx(), h)).status
    assert st.layout == "legacy" and st.current is None and not st.releases, st
    [chk] = await check(mkctx(), environment(h))
    assert (chk.ok, chk.failures, chk.current) == (chk_before.ok, chk_before.failures, None), chk
    # a second failure overwrites the log; a migration that works removes it
    res = await migrate(mkctx(), environment(h), fail_at="verify")
    assert not res.ok and "forced failure at verify" in log.read_text() and but_the_log(tmp_path / "web", dp) == before
    h2 = host_config(dp, service=cfg)
    res = await migrate(mkctx(), environment(h2))
    assert res.ok and not log.exists() and os.readlink(dp / "current") == "releases/legacy"
