"""Issue 15: every failure after the switch ends healthy or reverted, with the lock released.

Real-host regression tests (testbed: sshd, systemd --user), one per case the issue
names that the engine owns (2, 3, 4, 6, 7, 8; 1 and 5 are the CLI's). Each failed on
the code before the switch transaction. After each: the invariants of tests/invariants.py
(never ``failed`` while current, never ``live`` while not current), the service answers
with the version ``current`` names, and no lock or half-done release is left.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from benchmarks.latency_proxy import LatencyProxy  # noqa: E402  (faultkit puts the repo on sys.path)
from faultkit import env_via, http_get, known_hosts_for, leftovers, settle, verify_host
from invariants import assert_states_consistent, current_release
from capview.config import HealthConfig
from capview.engine.context import Context
from capview.engine.deploy import release
from capview.engine.events import HostFinished, HostWarning, PhaseFinished, PhaseStarted
from capview.engine.prune import prune
from capview.engine.rollback import rollback
from capview.remote.ssh import SshTransport
from realhost import make_source, new_app

pytestmark = [pytest.mark.testbed, pytest.mark.slow]


def ctx(t, events: list | None = None) -> Context:
    return Context(transport=t, operator="tester@ci", emit=(events.append if events is not None else lambda e: None))


def quick(app) -> dict:
    return {"health": HealthConfig(url=f"http://127.0.0.1:{app.port}/health", timeout=3, interval=0.2)}


def healthy_and_clean(app, sources: dict | None = None) -> str:
    """current names a complete release the service runs; states consistent; nothing left."""
    settle(app.deploy_path)
    v = verify_host(app, sources)
    assert_states_consistent(app.deploy_path)
    assert leftovers(app.deploy_path) == [], leftovers(app.deploy_path)
    return v


async def answers(app, want, tries: int = 100) -> None:
    got = None
    for _ in range(tries):  # a service just (re)started may take a moment to listen
        got = http_get(app, "/health")
        if got == want:
            return
        await asyncio.sleep(0.1)
    assert got == want


async def deploy(t, app, root: Path, v: str, events=None, **kw):
    src = make_source(root, v, **{k: kw.pop(k) for k in ("broken",) if k in kw})
    return await release(ctx(t, events), app.env(src, **kw), v)


# ------------------------------------------------------------------ 2: an exception after the switch

async def test_2_a_prune_list_beyond_the_argv_limit_never_fails_the_live_release(host, tmp_path):
    """~2,000 long-named failed releases: the deploy's cleanup has to delete them all.
    The list once went into the script (over 100 KB: ValueError after the switch) and the
    live, healthy release was marked failed; now it goes on stdin."""
    app = new_app(host, build=False)
    async with SshTransport() as t:
        assert (await deploy(t, app, tmp_path, "v1", keep_releases=3)).ok
        rel = f"{app.deploy_path}/releases"
        app.sh(f"cd {rel} && for i in $(seq 1 2000); do n=$(printf 'junk-%04d-%s' $i {'x' * 50}); "
               "mkdir -p $n/.capview && printf '{\"state\":\"failed\",\"started_at\":1}' > $n/.capview/release.json; done")
        events: list = []
        r = await deploy(t, app, tmp_path, "v2", events, keep_releases=3)
        assert r.ok, r.hosts[0].message
        assert app.release_json("v2")["state"] == "live" and app.get() == (200, "v2")
        left = [n for n in os.listdir(rel) if n.startswith("junk-")]
        assert len(left) <= 1, len(left)  # one failed release may stay while there is room under keep 3
        prunes = [h for h in app.history() if h["op"] == "prune"]
        assert prunes and len(prunes[-1]["deleted"]) >= 1999
        # and prune keeps working
        app.sh(f"cd {rel} && for i in $(seq 1 2000); do n=$(printf 'more-%04d-%s' $i {'y' * 50}); "
               "mkdir -p $n/.capview; done")
        p = await prune(ctx(t), app.env(tmp_path), keep=1)
        assert p.ok, p.hosts[0].message
        assert not [n for n in os.listdir(rel) if n.startswith(("more-", "junk-"))]
    healthy_and_clean(app)


# ------------------------------------------------------------------ 3: connection lost after a failed health check

async def test_3_connection_lost_after_the_failed_health_check_still_reverts(host, tmp_path):
    app = new_app(host, build=False)
    async with SshTransport() as t:
        assert (await deploy(t, app, tmp_path, "v1")).ok
        assert (await deploy(t, app, tmp_path, "v2")).ok
    async with LatencyProxy(host.port, one_way=0.003) as proxy:
        src = make_source(tmp_path, "v3", broken=True)
        env = env_via(app.env(src, **quick(app)), proxy.port, known_hosts_for(host, proxy.port, tmp_path / "kh"))

        def emit(e):  # the moment the old code began its client-side revert
            if isinstance(e, PhaseFinished) and e.phase == "health" and not e.ok:
                proxy.sever()

        async with SshTransport() as t:
            r = await asyncio.wait_for(release(Context(transport=t, emit=emit, operator="tester@ci"), env, "v3"), 180)
        assert proxy.severed >= 1
    assert r.hosts[0].outcome == "rolled_back", r.hosts[0].message
    assert "rolled back to v2" in r.hosts[0].message
    assert healthy_and_clean(app) == "v2"
    assert app.release_json("v3")["state"] == "failed"
    assert app.history()[-1]["outcome"] == "rolled_back"
    log = Path(app.deploy_path, "releases", "v3", ".capview", "health.log")
    assert app.unit in log.read_text() and (log.stat().st_mode & 0o777) == 0o600  # issue 16: private


# ------------------------------------------------------------------ 4: rollback loses the connection

@pytest.mark.parametrize("phase,unhealthy", [("switch", False), ("health", False), ("health", True)])
async def test_4_rollback_that_loses_the_connection_reconnects_and_finishes(host, tmp_path, phase, unhealthy):
    app = new_app(host, build=False)
    async with SshTransport() as t:
        for v in ("v1", "v2"):
            assert (await deploy(t, app, tmp_path, v)).ok
    if unhealthy:  # the rollback target no longer comes up healthy
        app.sh(f"touch {app.deploy_path}/releases/v1/BROKEN")
    async with LatencyProxy(host.port, one_way=0.003) as proxy:
        env = env_via(app.env(tmp_path, **quick(app)), proxy.port, known_hosts_for(host, proxy.port, tmp_path / "kh"))
        started = asyncio.Event()

        def emit(e):
            if isinstance(e, PhaseStarted) and e.phase == phase:
                started.set()

        async def strike():
            await started.wait()
            await asyncio.sleep(0.05)
            proxy.sever()

        async with SshTransport() as t:
            striker = asyncio.ensure_future(strike())
            r = await asyncio.wait_for(rollback(Context(transport=t, emit=emit, operator="tester@ci"), env), 180)
            striker.cancel()
        assert proxy.severed >= 1
    settle(app.deploy_path)
    last = app.history()[-1]
    assert last["op"] == "rollback"
    assert not Path(app.deploy_path, ".capview", "lock").exists()
    assert_states_consistent(app.deploy_path)
    if unhealthy:
        assert r.hosts[0].outcome == "failed" and "live again" in r.hosts[0].message, r.hosts[0].message
        assert last["outcome"] == "rolled_back" and current_release(app.deploy_path) == "v2"
        assert app.get() == (200, "v2")
        app.sh(f"rm {app.deploy_path}/releases/v1/BROKEN")
    else:
        assert r.ok, r.hosts[0].message
        assert last["outcome"] == "ok" and current_release(app.deploy_path) == "v1"
        assert healthy_and_clean(app) == "v1"


# ------------------------------------------------------------------ 6: history not writable

async def test_6_an_unwritable_history_is_a_warning_not_a_failed_health(host, tmp_path):
    app = new_app(host, build=False)
    hist = Path(app.deploy_path, ".capview", "history.jsonl")
    async with SshTransport() as t:
        assert (await deploy(t, app, tmp_path, "v1")).ok
        hist.chmod(0o444)  # the deploy user owns it but may not write it
        try:
            events: list = []
            r = await deploy(t, app, tmp_path, "v2", events)
        finally:
            hist.chmod(0o644)
    assert r.ok, r.hosts[0].message
    assert any(isinstance(e, HostWarning) and "history not written" in e.message for e in events)
    assert healthy_and_clean(app) == "v2"
    assert app.release_json("v2")["state"] == "live"


# ------------------------------------------------------------------ 7: releases/ a symlink to another volume

async def test_7_a_symlinked_releases_dir_deploys_prunes_and_never_keeps_the_lock(host, tmp_path):
    app = new_app(host, build=False)
    vol = Path(host.base) / "volume" / "releases"
    outside = Path(host.base) / "outside"
    app.sh(f"mkdir -p {vol} {outside} && echo keep-me > {outside}/precious && ln -s {vol} {app.deploy_path}/releases")
    async with SshTransport() as t:
        for v in ("v1", "v2", "v3", "v4"):
            r = await deploy(t, app, tmp_path, v, keep_releases=2)
            assert r.ok, r.hosts[0].message
            assert not Path(app.deploy_path, ".capview", "lock").exists(), f"lock left after {v}"
        assert sorted(os.listdir(vol)) == ["v3", "v4"]  # the cleanup pruned inside the volume
        app.sh(f"ln -s {outside} {vol}/evil")
        p = await prune(ctx(t), app.env(tmp_path), keep=1)
        assert p.ok, p.hosts[0].message
    assert sorted(os.listdir(vol)) == ["v3", "v4"]  # v3: previous live, protected; evil: unlinked
    assert (outside / "precious").read_text() == "keep-me\n"  # never followed
    assert Path(app.deploy_path, "releases").is_symlink()
    assert healthy_and_clean(app) == "v4"


# ------------------------------------------------------------------ 8: current made by another tool

@pytest.mark.parametrize("form", ["absolute", "trailing-slash"])
async def test_8_a_capistrano_current_is_read_as_its_release_and_made_relative(host, tmp_path, form):
    app = new_app(host, build=False)
    dp = app.deploy_path
    async with SshTransport() as t:
        assert (await deploy(t, app, tmp_path, "v1")).ok
        target = f"{dp}/releases/v1" if form == "absolute" else "releases/v1/"
        app.sh(f"ln -sfn {target} {dp}/current.x && mv -T {dp}/current.x {dp}/current")
        events: list = []
        r = await deploy(t, app, tmp_path, "v2", events)
    assert r.ok, r.hosts[0].message
    assert app.current() == "releases/v2"  # the relative form from now on
    assert app.history()[-1]["from"] == "v1" and app.release_json("v2")["previous"] == "v1"
    assert app.release_json("v1")["state"] == "superseded"
    fin = [e for e in events if isinstance(e, HostFinished)][0]
    assert fin.bytes_sent < 64 * 1024  # unchanged files were hard-linked from v1: it was read as v1
    assert healthy_and_clean(app) == "v2"


async def test_8_a_failed_first_deploy_puts_back_a_current_it_did_not_create(host, tmp_path):
    """current points at another tool's tree (not a release): a first deploy that fails
    must not remove it, and the service comes back on it."""
    app = new_app(host, build=False)
    dp = app.deploy_path
    other = Path(host.base) / "other-tool" / "app"
    other_src = make_source(tmp_path, "other")
    app.sh(f"mkdir -p {other.parent}")
    shutil.copytree(other_src, other)
    os.symlink(f"{dp}/shared/data", other / "data")
    subprocess.run(["chown", "-R", f"{host.user}:", str(other.parent)], check=True)
    app.sh(f"ln -s {other} {dp}/current")
    host.systemctl("start", app.unit, check=True)
    await answers(app, (200, "other"))
    events: list = []
    async with SshTransport() as t:
        r = await deploy(t, app, tmp_path, "v1", events, broken=True, **quick(app))
    assert not r.ok
    assert os.readlink(Path(dp, "current")) == str(other)  # put back, not removed
    assert any(isinstance(e, HostWarning) and "not a release" in e.message for e in events)
    settle(dp)
    await answers(app, (200, "other"))
    assert app.release_json("v1")["state"] == "failed"
    assert_states_consistent(dp, require_current=False)
    assert not Path(dp, ".capview", "lock").exists()
