"""migrate-data on the real testbed (issue 4, item 6): a host seeded in the old
in-place layout, with a real systemd --user unit pointing at the old paths."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import time

import pytest

from capview.engine.context import Context
from capview.engine.events import HostFinished
from capview.engine.migrate import migrate, plan_migration
from capview.engine.status import status
from capview.remote.ssh import SshTransport
from realhost import make_source, new_app
from test_operations_realhost import Hammer, db_rows

pytestmark = pytest.mark.testbed


@pytest.fixture
async def transport():
    t = SshTransport()
    yield t
    await t.close()


def ctx(transport, events=None) -> Context:
    return Context(transport=transport, emit=(events.append if events is not None else (lambda e: None)),
                   operator="tester@ci")


def seed_legacy(host, app, tmp_path):
    """deploy_path in the old layout: app.py + VERSION + templates + static, data/app.db
    written by the running app, .env, app.bak; the unit runs <dp>/app.py from <dp>."""
    dp = app.deploy_path
    app.sh(f"rm -rf {dp} && mkdir -p {os.path.dirname(dp)}")
    shutil.copytree(make_source(tmp_path, "old"), dp, symlinks=True)
    (tmp_path / "src-old").rename(tmp_path / "src-old-used")
    with open(f"{dp}/.env", "w") as f:
        f.write("SECRET=legacy\n")
    os.chmod(f"{dp}/.env", 0o600)
    with open(f"{dp}/app.bak", "w") as f:
        f.write("the binary before the last overwrite\n")
    os.makedirs(f"{dp}/data")
    for root, dirs, files in os.walk(dp):
        for n in [root] + [os.path.join(root, x) for x in dirs + files]:
            os.lchown(n, host.uid, host.pw.pw_gid)
    host.install_unit(app.unit, (
        "[Unit]\nDescription=capview legacy app\n\n"
        f"[Service]\nExecStart=/usr/bin/python3 -u {dp}/app.py {app.port}\n"
        f"WorkingDirectory={dp}\nEnvironmentFile={dp}/.env\nRestart=no\n"
    ))
    host.systemctl("start", app.unit, check=True)
    for _ in range(50):
        try:
            if app.get("/hit")[0] == 200:
                break
        except OSError:
            time.sleep(0.1)
    for _ in range(20):
        assert app.get("/hit")[0] == 200


def exact_listing(app) -> str:
    """Names, types, modes, sizes, link targets, INODES and contents. Excluded: dir mtimes
    (moving entries out and back touches their parents) and the content of SQLite's
    ``-shm`` index, which any reader may rewrite and which holds no data (the
    integrity_check opens the database read-only: the db and its WAL stay byte-identical)."""
    return app.sh(
        f"cd {app.deploy_path} && find . -printf '%p %y %m %s %l %i\\n' | LC_ALL=C sort && "
        f"find . -type f ! -name '*-shm' -exec sha256sum {{}} + | LC_ALL=C sort"
    )


def exact_hash(app) -> str:
    return hashlib.sha256(exact_listing(app).encode()).hexdigest()


def unit_text(host, app) -> str:
    return (host.unit_dir() / f"{app.unit}.service").read_text()


async def test_legacy_host_migrates_and_serves_from_current(host, tmp_path, transport):
    app = new_app(host, build=False)
    seed_legacy(host, app, tmp_path)
    env = app.env(tmp_path)
    [plan] = await plan_migration(ctx(transport), env)
    assert plan.layout == "legacy" and plan.needed and not plan.blockers, plan
    assert plan.junk == ("app.bak",) and plan.shared_moves == ("data", ".env")
    assert len(plan.unit_lines) == 3 and plan.databases == ("data/app.db",)
    with Hammer(app) as hammer:
        events: list = []
        r = await migrate(ctx(transport, events), env, rewrite_unit=True)
        assert r.ok, [e for e in events if isinstance(e, HostFinished)]
        time.sleep(0.3)
    assert app.current() == "releases/legacy"
    assert app.get("/health") == (200, "old")
    rows, integrity = db_rows(app)
    assert integrity == "ok" and rows >= 20 + hammer.ok
    assert f"ExecStart=/usr/bin/python3 -u {app.deploy_path}/current/app.py" in unit_text(host, app)
    assert app.sh(f"cat {app.deploy_path}/.capview/legacy-junk/app.bak").startswith("the binary")
    assert app.sh(f"stat -c %a {app.deploy_path}/shared/.env").strip() == "600"
    [st] = await status(ctx(transport), env)
    assert (st.layout, st.current, [r.state for r in st.releases]) == ("releases", "legacy", ["live"])
    assert app.history()[-1]["op"] == "migrate"
    events = []
    r = await migrate(ctx(transport, events), env)
    assert r.ok and [e for e in events if isinstance(e, HostFinished)][0].message == "already migrated"


@pytest.mark.parametrize("stage", ["app", "health"])
async def test_forced_failure_leaves_the_legacy_tree_exactly(host, tmp_path, transport, stage):
    app = new_app(host, build=False)
    seed_legacy(host, app, tmp_path)
    # Stopped, so SQLite's WAL checkpoints cannot change data/ while we compare
    # (the migration leaves an inactive service inactive, also after a restore).
    host.systemctl("stop", app.unit, check=True)
    before, before_unit = exact_listing(app), unit_text(host, app)
    r = await migrate(ctx(transport), app.env(tmp_path), rewrite_unit=True, fail_at=stage)
    assert not r.ok and "original layout was put back" in r.hosts[0].message
    log = f"{app.deploy_path}/.capview/migrate-health.log"
    assert r.hosts[0].message.endswith(log)
    # issue 16: the failure's health.log, 0600, is all .capview holds; the rest is exactly as before
    assert app.sh(f"cd {app.deploy_path}/.capview && ls -A && stat -c %a migrate-health.log").split() == [
        "migrate-health.log", "600"]
    text = app.sh(f"cat {log}")
    assert f"did not come up: forced failure at {stage}" in text and app.unit in text  # the unit's status
    app.sh(f"rm -r {app.deploy_path}/.capview")
    assert exact_listing(app) == before and unit_text(host, app) == before_unit
    assert host.systemctl("is-active", app.unit).stdout.strip() != "active"
    host.systemctl("start", app.unit, check=True)  # the old layout still works
    for _ in range(50):
        try:
            if app.get("/health")[0] == 200:
                break
        except OSError:
            time.sleep(0.1)
    assert app.get("/health") == (200, "old")
    with sqlite3.connect(f"file:{app.deploy_path}/data/app.db?mode=ro", uri=True) as conn:
        assert conn.execute("SELECT count(*) FROM hits").fetchone()[0] >= 20
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
