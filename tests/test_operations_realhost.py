"""Operating releases on the real testbed: rollback, prune, data survival (issue 4)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time

import pytest

from capview.engine.context import Context
from capview.engine.deploy import release
from capview.engine.events import HostFinished
from capview.engine.ops import pin
from capview.engine.prune import plan_prune, prune
from capview.engine.rollback import rollback
from capview.engine.status import status
from capview.remote.ssh import SshTransport
from realhost import make_source, new_app

pytestmark = pytest.mark.testbed


@pytest.fixture
async def transport():
    t = SshTransport()
    yield t
    await t.close()


def ctx(transport, events=None) -> Context:
    return Context(transport=transport, emit=(events.append if events is not None else (lambda e: None)),
                   operator="tester@ci")


class Hammer:
    """Hits /hit in a loop from a thread while operations run: rows must all survive."""

    def __init__(self, app) -> None:
        self.app = app
        self.ok = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def loop(self) -> None:
        while not self.stop.is_set():
            try:
                code, _ = self.app.get("/hit", timeout=2)
                if code == 200:
                    self.ok += 1  # the row was committed before the 200 was sent
            except OSError:
                pass  # the downtime window: refused connections are expected
            time.sleep(0.01)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def db_rows(app) -> tuple[int, str]:
    path = f"{app.deploy_path}/shared/data/app.db"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return (conn.execute("SELECT count(*) FROM hits").fetchone()[0],
                conn.execute("PRAGMA integrity_check").fetchone()[0])


async def test_rollback_default_and_to_and_no_rows_lost(host, tmp_path, transport):
    app = new_app(host, build=True)
    with Hammer(app) as hammer:
        for v in ("v1", "v2", "v3", "v4", "v5"):
            r = await release(ctx(transport), app.env(make_source(tmp_path, v), keep_releases=10), v)
            assert r.ok, r
        events: list = []
        r = await rollback(ctx(transport, events), app.env(make_source(tmp_path, "v5")))
        assert r.ok, r
        assert app.get() == (200, "v4")
        fin = [e for e in events if isinstance(e, HostFinished)][0]
        assert fin.round_trips <= 4
        assert app.sh(f"podman image inspect --format '{{{{.Id}}}}' {app.image}:current") == \
            app.sh(f"podman image inspect --format '{{{{.Id}}}}' {app.image}:v4")

        r = await rollback(ctx(transport), app.env(make_source(tmp_path, "v5")), to="v2")
        assert r.ok, r
        assert app.get() == (200, "v2") and app.current() == "releases/v2"
        assert app.release_json("v2")["state"] == "live"
        assert app.release_json("v4")["state"] == "superseded"

        # A second deploy, then prune: data untouched throughout.
        assert (await release(ctx(transport), app.env(make_source(tmp_path, "v6"), keep_releases=10), "v6")).ok
        assert (await prune(ctx(transport), app.env(make_source(tmp_path, "v6")), keep=2)).ok
        time.sleep(0.3)
    rows, integrity = db_rows(app)
    assert integrity == "ok"
    assert hammer.ok > 20 and rows >= hammer.ok  # every acknowledged row is still there
    assert app.get() == (200, "v6")


async def test_rollback_refuses_a_missing_image_up_front(host, tmp_path, transport):
    app = new_app(host, build=True)
    for v in ("v1", "v2"):
        assert (await release(ctx(transport), app.env(make_source(tmp_path, v)), v)).ok
    pid = app.main_pid()
    app.sh(f"podman rmi {app.image}:v1")
    r = await rollback(ctx(transport), app.env(make_source(tmp_path, "v2")))
    assert not r.ok and "no longer exists" in r.hosts[0].message
    assert app.current() == "releases/v2" and app.main_pid() == pid  # nothing was stopped


async def test_prune_keep3_with_failed_pinned_and_rolled_back_current(host, tmp_path, transport):
    app = new_app(host, build=False)
    env = lambda v, **kw: app.env(make_source(tmp_path, v, **kw), keep_releases=20)  # noqa: E731
    for v in ("v1", "v2", "v3", "v4"):
        assert (await release(ctx(transport), env(v), v)).ok
    assert not (await release(ctx(transport), env("v5", broken=True), "v5")).ok  # failed, rolled back
    for v in ("v6", "v7"):
        assert (await release(ctx(transport), env(v), v)).ok
    assert (await pin(ctx(transport), env("v7"), "v2")).ok
    assert (await rollback(ctx(transport), env("v7"), to="v6")).ok

    plans = await plan_prune(ctx(transport), env("v7"), keep=3)
    actions = {i.version: i.action for i in plans[0].items}
    du = lambda: int(app.sh(f"du -s -B1 {app.deploy_path}/releases").split()[0])  # noqa: E731
    before = du()
    r = await prune(ctx(transport), env("v7"), keep=3)
    assert r.ok, r
    after = du()
    survivors = app.sh(f"ls {app.deploy_path}/releases").split()
    # keep 3 newest successful by deploy time (v7, v6, v4); v5 failed goes; v2 pinned stays;
    # v6 is current after the rollback; v1 and v3 are older than the newest three.
    assert survivors == ["v2", "v4", "v6", "v7"], (survivors, actions)
    assert {v for v, a in actions.items() if a == "delete"} == {"v1", "v3", "v5"}
    freed = app.history()[-1]["freed"]
    assert freed == before - after
    assert plans[0].total == pytest.approx(before - after, abs=64 * 1024)
    assert app.get() == (200, "v6")
    hosts = await status(ctx(transport), env("v7"))
    h = hosts[0]
    assert h.current == "v6" and [r.version for r in h.releases if r.pinned] == ["v2"]


async def test_restart_runs_the_live_release_again_and_records_it(host, tmp_path, transport):
    """``capview restart``: stop -> start -> health of current, in the history, lock released;
    an unhealthy restart never marks the live release failed (there is nothing to go back to)."""
    import os

    from capview.config import HealthConfig
    from capview.engine.restart import restart
    from invariants import assert_states_consistent

    app = new_app(host, build=False)
    env = app.env(make_source(tmp_path, "v1"))
    assert (await release(ctx(transport), env, "v1")).ok
    pid = app.main_pid()
    events: list = []
    r = await restart(ctx(transport, events), env)
    assert r.ok, r.hosts[0].message
    assert app.main_pid() not in (pid, "0") and app.get() == (200, "v1") and app.current() == "releases/v1"
    last = app.history()[-1]
    assert (last["op"], last["outcome"], last["version"]) == ("restart", "ok", "v1") and last["downtime"] > 0
    fin = [e for e in events if isinstance(e, HostFinished)][0]
    assert fin.round_trips == 2 and "v1 restarted" in fin.message
    assert not os.path.exists(f"{app.deploy_path}/.capview/lock")

    app.sh(f"touch {app.deploy_path}/releases/v1/BROKEN")  # comes back unhealthy
    quick = app.env(tmp_path, health=HealthConfig(url=f"http://127.0.0.1:{app.port}/health", timeout=2, interval=0.2))
    r = await restart(ctx(transport), quick)
    assert not r.ok and "health check failed" in r.hosts[0].message
    assert app.current() == "releases/v1" and app.release_json("v1")["state"] == "live"
    assert_states_consistent(app.deploy_path)
    log = f"{app.deploy_path}/releases/v1/.capview/health.log"
    assert app.unit in app.sh(f"cat {log}") and app.sh(f"stat -c %a {log}").strip() == "600"
    assert app.history()[-1]["outcome"] == "failed" and not os.path.exists(f"{app.deploy_path}/.capview/lock")
