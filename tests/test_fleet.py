"""issue 17 on the real testbed: three hosts (three sshd, systemd --user units, podman
build), the acceptance items one by one, two real concurrent `capview release`
processes, and SIGKILL strikes at the end of stage 1 and during stage 2 checked with
tests/invariants.py. (The same rules on local hosts, faster: test_fleet_units.py.)"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from capview.config import BuildConfig, HealthConfig, Rollout, SharedConfig
from capview.engine.context import Context
from capview.engine.deploy import release
from capview.engine.events import PhaseFinished, PhaseStarted
from capview.errors import EXIT_LOCKED
from capview.remote.ssh import SshTransport
from clihelp import cli_argv, cli_env, run_cli, show, write_config
from faultkit import leftovers, settle, verify_host
from invariants import assert_states_consistent, current_release, release_states
from realhost import make_source, new_app

pytestmark = [pytest.mark.testbed, pytest.mark.slow]


@pytest.fixture
async def transport():
    t = SshTransport()
    yield t
    await t.close()


def ctx(t, events: list | None = None, **kw) -> Context:
    return Context(transport=t, operator="tester@ci", emit=(events.append if events is not None else lambda e: None),
                   **kw)


def fleet_env(apps, src: Path, *, strategy: str = "parallel", rollout: Rollout = Rollout(), per_host=None):
    """One environment over the apps' hosts; ``per_host(i, settings) -> settings`` varies one."""
    hcs = []
    for i, a in enumerate(apps):
        hc = a.host_config(src, health=HealthConfig(url=f"http://127.0.0.1:{a.port}/health", timeout=4, interval=0.2))
        if per_host is not None:
            hc = dataclasses.replace(hc, settings=per_host(i, hc.settings))
        hcs.append(hc)
    return dataclasses.replace(apps[0].env(src, strategy=strategy), hosts=tuple(hcs), settings=hcs[0].settings,
                               rollout=rollout)


def broken_on(index: int, app):
    """settings for host ``index``: shared/BROKEN linked into the new release (health 500)."""
    app.sh(f"echo broken > {app.deploy_path}/shared/BROKEN")

    def vary(i, s):
        return dataclasses.replace(s, shared=SharedConfig(dirs=("data",), files=(".env", "BROKEN"))) if i == index else s
    return vary


def on_all(apps, version: str) -> None:
    for a in apps:
        settle(a.deploy_path)
        assert verify_host(a) == version
        assert_states_consistent(a.deploy_path)
        assert not leftovers(a.deploy_path), (a.host.name, leftovers(a.deploy_path))


@pytest.fixture
def apps(hosts3):
    made = [new_app(h, build=False) for h in hosts3]
    yield made
    for a in made:
        a.host.systemctl("stop", a.unit)


# ---------------------------------------------------------------- acceptance: stage 1

async def test_lock_held_on_host_3_refuses_and_leaves_hosts_1_2_untouched(apps, tmp_path, transport):
    assert (await release(ctx(transport), fleet_env(apps, make_source(tmp_path, "v1")), "v1")).ok
    # held from a machine with the same hostname but another machine id, heartbeat fresh
    # by the HOST's clock; the operator's clock is a day ahead (never trusted for it)
    owner = {"operator": "carol@ci", "operation": "release", "version": "v9", "pid": 1, "token": "abcabcabcabcabca",
             "machine": socket.gethostname(), "machine_id": "f" * 32, "started": 1.0, "heartbeat": 1.0,
             "host_heartbeat": time.time()}  # the testbed host's clock is this machine's
    a3 = apps[2]
    a3.host.run_as_user(f"mkdir -p {a3.deploy_path}/.capview/lock && cat > {a3.deploy_path}/.capview/lock/owner.json",
                        input=json.dumps(owner))
    seen = a3.sh(f"cat {a3.deploy_path}/.capview/lock/owner.json")
    r = await release(ctx(transport, clock=lambda: time.time() + 86400),
                      fleet_env(apps, make_source(tmp_path, "v2")), "v2")
    assert r.exit_code == EXIT_LOCKED, r
    msg = r.hosts[2].message
    assert "locked by carol@ci" in msg and "by the host's clock" in msg and "--force" not in msg, msg
    assert a3.sh(f"cat {a3.deploy_path}/.capview/lock/owner.json") == seen  # never removed
    for a in apps[:2]:
        assert verify_host(a) == "v1" and "v2" not in release_states(a.deploy_path)
        assert not leftovers(a.deploy_path), leftovers(a.deploy_path)
    assert "v2" not in release_states(a3.deploy_path)
    a3.sh(f"rm -rf {a3.deploy_path}/.capview/lock")


async def test_build_failure_on_host_2_switches_nothing(hosts3, tmp_path, transport):
    apps = [new_app(h) for h in hosts3]  # podman build
    try:
        assert (await release(ctx(transport), fleet_env(apps, make_source(tmp_path, "v1")), "v1")).ok
        pids = [a.main_pid() for a in apps]

        def bad_build(i, s):
            return dataclasses.replace(s, build=BuildConfig(command="echo no >&2; exit 7", image=s.build.image)) \
                if i == 1 else s

        r = await release(ctx(transport), fleet_env(apps, make_source(tmp_path, "v2"), per_host=bad_build), "v2")
        assert not r.ok and "build failed" in r.hosts[1].message, r
        assert all("not switched: " + hosts3[1].name in r.hosts[i].message for i in (0, 2)), r
        on_all(apps, "v1")
        assert [a.main_pid() for a in apps] == pids  # no service was even restarted
        assert "v2" not in release_states(apps[0].deploy_path) and "v2" not in release_states(apps[2].deploy_path)
        assert release_states(apps[1].deploy_path)["v2"] == "failed"  # kept there, with its build.log
    finally:
        for a in apps:
            a.host.systemctl("stop", a.unit)


# ---------------------------------------------------------------- acceptance: stage 2

async def test_health_failure_on_host_2_reverts_all_three(apps, tmp_path, transport):
    assert (await release(ctx(transport), fleet_env(apps, make_source(tmp_path, "v1")), "v1")).ok
    env = fleet_env(apps, make_source(tmp_path, "v2"), per_host=broken_on(1, apps[1]))  # parallel
    r = await release(ctx(transport), env, "v2")
    assert [h.outcome for h in r.hosts] == ["rolled_back", "rolled_back", "rolled_back"], r
    assert "reverted to v1" in r.hosts[0].message and "reverted to v1" in r.hosts[2].message
    on_all(apps, "v1")
    for a in (apps[0], apps[2]):
        assert a.release_json("v2")["state"] == "failed" and a.history()[-1]["to"] == "v1"


async def test_canary_first_then_the_rest_and_a_failed_canary_stops_there(apps, tmp_path, transport):
    assert (await release(ctx(transport), fleet_env(apps, make_source(tmp_path, "v1")), "v1")).ok
    events: list = []
    env = fleet_env(apps, make_source(tmp_path, "v2"), rollout=Rollout(canary=1, canary_wait=2))
    assert (await release(ctx(transport, events), env, "v2")).ok
    on_all(apps, "v2")
    starts = [(e.host, e.at) for e in events if isinstance(e, PhaseStarted) and e.phase == "switch"]
    checked = [e.at for e in events if isinstance(e, PhaseFinished) and e.phase == "health" and e.host == apps[0].host.name]
    assert starts[0][0] == apps[0].host.name
    assert all(at >= checked[0] + 1.5 for _, at in starts[1:]), (starts, checked)  # after canary_wait
    # a canary that fails: hosts 2-3 untouched (never switched, no v3 left)
    pids = [a.main_pid() for a in apps[1:]]
    env = fleet_env(apps, make_source(tmp_path, "v3"), rollout=Rollout(canary=1, canary_wait=2),
                    per_host=broken_on(0, apps[0]))
    r = await release(ctx(transport), env, "v3")
    assert [h.outcome for h in r.hosts] == ["rolled_back", "failed", "failed"], r
    on_all(apps, "v2")
    assert [a.main_pid() for a in apps[1:]] == pids
    assert all("v3" not in release_states(a.deploy_path) for a in apps[1:])


# ---------------------------------------------------------------- the CLI: split, converge, races, strikes

def config(tmp_path: Path, apps, src: Path, name: str = "deploy.yaml", **env_keys) -> Path:
    cfg = write_config(tmp_path / name, apps, source=src, strategy=env_keys.pop("strategy", "parallel"),
                       build=False)
    doc = yaml.safe_load(cfg.read_text())
    doc["health"]["timeout"] = "4s"
    doc["environments"]["test"].update(env_keys)
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    return cfg


def src_dir(tmp_path: Path, version: str) -> Path:
    """The config's source (one path, tmp_path/src) rewritten with ``version``'s tree."""
    shutil.rmtree(tmp_path / "src", ignore_errors=True)
    (tmp_path / "srcs").mkdir(exist_ok=True)
    return make_source(tmp_path / "srcs", version, files=5).rename(tmp_path / "src")


def test_split_environment_is_loud_and_converges(apps, tmp_path):
    cfg = config(tmp_path, apps, tmp_path / "src")
    for v in ("v1", "v2"):
        src_dir(tmp_path, v)
        cp = run_cli("release", v, "test", "-c", str(cfg))
        assert cp.returncode == 0, show(cp)
    h1 = apps[0].host.name
    cp = run_cli("rollback", "test", "--host", h1, "--to", "v1", "-c", str(cfg))  # one host by hand
    assert cp.returncode == 0, show(cp)
    cp = run_cli("releases", "test", "-c", str(cfg))
    names = [a.host.name for a in apps]
    assert cp.stdout.splitlines()[0] == (f"WARNING: test is split: {names[0]} v1, {names[1]} v2, {names[2]} v2 - "
                                         "converge with: capview rollback test --to v2"), show(cp)
    cp = run_cli("releases", "test", "--json", "-c", str(cfg))
    docs = [json.loads(x) for x in cp.stdout.splitlines()]
    assert all(d["split"] is True and d["versions"] == {names[0]: "v1", names[1]: "v2", names[2]: "v2"}
               and d["converge_to"] == "v2" for d in docs), cp.stdout
    cp = run_cli("check", "test", "-c", str(cfg))
    assert "test is split" in cp.stdout, show(cp)
    # converge to a version one host does not keep: one clear line, nothing changed
    cp = run_cli("rollback", "test", "--to", "v0", "-c", str(cfg))
    assert cp.returncode == 1 and "release v0 is not on the host" in cp.stdout + cp.stderr, show(cp)
    assert [current_release(a.deploy_path) for a in apps] == ["v1", "v2", "v2"]
    cp = run_cli("rollback", "test", "--to", "v2", "-c", str(cfg))
    assert cp.returncode == 0, show(cp)
    on_all(apps, "v2")
    cp = run_cli("releases", "test", "--json", "-c", str(cfg))
    assert all(json.loads(x)["split"] is False for x in cp.stdout.splitlines())


def test_two_concurrent_release_processes_one_wins_everywhere(apps, tmp_path):
    cfg = config(tmp_path, apps, tmp_path / "src")
    src_dir(tmp_path, "v1")
    assert run_cli("release", "v1", "test", "-c", str(cfg)).returncode == 0
    cfgs = {}
    for v in ("v2a", "v2b"):  # two operators, each with their own tree
        src = make_source(tmp_path / "srcs", v, files=5)
        cfgs[v] = config(tmp_path, apps, src, name=f"deploy-{v}.yaml")
    procs = [subprocess.Popen(cli_argv("release", v, "test", "-c", str(cfgs[v])), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=cli_env(), stdin=subprocess.DEVNULL)
             for v in ("v2a", "v2b")]
    outs = [p.communicate(timeout=240) for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, EXIT_LOCKED], (codes, outs)
    won = ("v2a", "v2b")[codes.index(0)]
    lost_out = "".join(outs[codes.index(EXIT_LOCKED)])
    assert "locked by" in lost_out and "release " + won in lost_out, lost_out  # the holder is named
    on_all(apps, won)
    lost = "v2b" if won == "v2a" else "v2a"
    assert all(lost not in release_states(a.deploy_path) for a in apps)


def kill_when(proc: subprocess.Popen, ready, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the moment to strike never came"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def states(a) -> dict:
    return release_states(a.deploy_path)


def strike_and_recover(apps, tmp_path, cfg, ready, expect_split: bool) -> None:
    src_dir(tmp_path, "v2")
    proc = subprocess.Popen(cli_argv("release", "v2", "test", "-c", str(cfg)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=cli_env(), stdin=subprocess.DEVNULL)
    kill_when(proc, ready)
    for a in apps:
        settle(a.deploy_path)
        assert_states_consistent(a.deploy_path)
        verify_host(a, service=True)  # every host serves the release its current names
    cp = run_cli("releases", "test", "--json", "-c", str(cfg))
    assert all(json.loads(x)["split"] is expect_split for x in cp.stdout.splitlines()), cp.stdout
    # recovery is one plain command: the dead holder's locks are taken over
    src_dir(tmp_path, "v3")
    cp = run_cli("release", "v3", "test", "-c", str(cfg))
    assert cp.returncode == 0, show(cp)
    assert "took over the lock" in cp.stdout + cp.stderr, show(cp)
    on_all(apps, "v3")
    for a in apps:  # v2 is gone where it never went live; kept (superseded) where it did
        assert states(a).get("v2") in (None, "superseded", "failed"), states(a)


def test_sigkill_at_the_end_of_stage_1_then_a_plain_release(hosts3, tmp_path):
    """hosts 1-2 ready, host 3 still building (a slow build): SIGKILL. Nothing switched;
    the next release takes the three locks over and removes the v2 left behind."""
    apps = [new_app(h, build=(i == 2)) for i, h in enumerate(hosts3)]
    try:
        cfg = config(tmp_path, apps, tmp_path / "src")
        doc = yaml.safe_load(cfg.read_text())
        slow = doc["environments"]["test"]["hosts"][2]["build"]
        slow["command"] = "sleep 4; " + slow["command"]
        cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
        src_dir(tmp_path, "v1")
        assert run_cli("release", "v1", "test", "-c", str(cfg), timeout=300).returncode == 0

        def ready() -> bool:
            return all(states(a).get("v2") == "ready" for a in apps[:2]) and states(apps[2]).get("v2") == "building"

        strike_and_recover(apps, tmp_path, cfg, ready, expect_split=False)
        assert all(current_release(a.deploy_path) == "v3" for a in apps)
    finally:
        for a in apps:
            a.host.systemctl("stop", a.unit)


def test_sigkill_during_stage_2_then_a_plain_release(apps, tmp_path):
    """canary host 1 switched, the rest waiting for canary_wait: SIGKILL. Every host is
    consistent and serves what current names; releases says the env is split; the next
    release converges it with no manual step."""
    cfg = config(tmp_path, apps, tmp_path / "src", canary=1, canary_wait="60s")
    src_dir(tmp_path, "v1")
    assert run_cli("release", "v1", "test", "-c", str(cfg), timeout=300).returncode == 0
    strike_and_recover(apps, tmp_path, cfg, lambda: states(apps[0]).get("v2") == "live", expect_split=True)
