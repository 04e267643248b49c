"""issue 17 on local hosts (LocalTransport runs the real scripts with this machine's sh):
the two stages, rollout orders, revert_all / stop, canary, split detection, converge,
round trips, and the lock rules (machine id, host clock, takeover of a dead holder).
The same promises on the real testbed (sshd, systemd --user, podman): test_fleet.py."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import socket
import subprocess
import time
from pathlib import Path

from capview.config import Environment, HostConfig, Rollout, ServiceConfig, Settings, SharedConfig
from capview.engine.context import Context
from capview.engine.deploy import release
from capview.engine.events import HostFinished, HostWarning, PhaseFinished, PhaseStarted
from capview.engine.fleet import batches
from capview.engine.lock import local_machine_id
from capview.engine.rollback import rollback
from capview.engine.status import env_split, status
from capview.cli.tables import releases_json, releases_text
from capview.errors import EXIT_LOCKED
from capview.remote.local import LocalTransport
from invariants import assert_states_consistent, current_release, release_states


def make_env(tmp_path: Path, n: int = 3, *, strategy: str = "rolling", rollout: Rollout = Rollout(),
             broken: tuple[int, ...] = ()) -> Environment:
    """``n`` local hosts; the service is 'up' while current/SICK does not exist, so a host
    in ``broken`` (its shared/SICK linked into every new release) fails its health check, and
    so does a host while its shared/SICK-<current version> exists."""
    src = tmp_path / "src"
    (src / "static").mkdir(parents=True, exist_ok=True)
    for i in range(10):
        (src / "static" / f"a{i}.css").write_text(f".a{i} {{}}\n")
    hcs = []
    for i in range(n):
        dp = tmp_path / f"host{i}" / "app"
        (dp / "shared").mkdir(parents=True, exist_ok=True)
        (dp / "shared" / ".env").write_text("")
        files = (".env", "SICK") if i in broken else (".env",)
        if i in broken:
            (dp / "shared" / "SICK").write_text("x")
        s = Settings(app="a", deploy_path=str(dp), source=src, keep_releases=5, shared=SharedConfig(files=files),
                     service=ServiceConfig(manager="command", start=":", stop=":",
                                           status=f'test ! -e current/SICK && test ! -e "{dp}/shared/SICK-$(basename "$(readlink current)")"'))
        hcs.append(HostConfig(name=f"h{i + 1}", host="local", settings=s, env="e"))
    return Environment(name="e", hosts=tuple(hcs), settings=hcs[0].settings, strategy=strategy, rollout=rollout)


def with_broken(env: Environment, tmp_path: Path, rollout: Rollout | None = None, strategy: str | None = None,
                broken: tuple[int, ...] = ()) -> Environment:
    fresh = make_env(tmp_path, len(env.hosts), strategy=strategy or env.strategy, rollout=rollout or env.rollout,
                     broken=broken)
    return fresh


def dp(env: Environment, i: int) -> Path:
    return Path(env.hosts[i].settings.deploy_path)


def ctx(events: list | None = None, t: LocalTransport | None = None, **kw) -> Context:
    return Context(transport=t or LocalTransport(), emit=(events.append if events is not None else lambda e: None),
                   operator="tester@ci", **kw)


def consistent(env: Environment) -> None:
    for i in range(len(env.hosts)):
        assert_states_consistent(dp(env, i))
        assert not (dp(env, i) / ".capview" / "lock").exists(), f"lock left on h{i + 1}"


def currents(env: Environment) -> list[str | None]:
    return [current_release(dp(env, i)) for i in range(len(env.hosts))]


# ---------------------------------------------------------------- orders

def test_batches_canary_sizes_and_strategies(tmp_path):
    env = make_env(tmp_path, 5, strategy="parallel")
    names = lambda bs: [[m.name for m in b] for b in bs]  # noqa: E731
    hosts = list(env.hosts)
    assert names(batches(env, hosts)) == [["h1", "h2", "h3", "h4", "h5"]]
    assert names(batches(dataclasses.replace(env, strategy="rolling"), hosts)) == [["h1"], ["h2"], ["h3"], ["h4"], ["h5"]]
    assert names(batches(dataclasses.replace(env, rollout=Rollout(canary=1, batch_size=2)), hosts)) == \
        [["h1"], ["h2", "h3"], ["h4", "h5"]]
    assert names(batches(dataclasses.replace(env, rollout=Rollout(batch_percent=50)), hosts[:4])) == \
        [["h1", "h2"], ["h3", "h4"]]
    assert names(batches(dataclasses.replace(env, rollout=Rollout(canary=2)), hosts)) == \
        [["h1", "h2"], ["h3", "h4", "h5"]]


# ---------------------------------------------------------------- two stages

async def test_three_hosts_one_extra_round_trip_each(tmp_path):
    env = make_env(tmp_path, strategy="parallel")
    t, events = LocalTransport(), []
    assert (await release(ctx(events, t), env, "v1")).ok
    fin = [e for e in events if isinstance(e, HostFinished)]
    assert sorted(e.host for e in fin) == ["h1", "h2", "h3"]  # one HostFinished per host, at the end
    assert [e.round_trips for e in fin] == [4, 4, 4] and t.round_trips == 12  # 3 + the final unlock
    consistent(env)
    assert currents(env) == ["v1"] * 3


async def test_failure_in_stage_1_switches_nothing_and_leaves_no_release(tmp_path):
    env = make_env(tmp_path, strategy="parallel")
    assert (await release(ctx(), env, "v1")).ok
    (dp(env, 1) / "shared" / ".env").unlink()  # h2 fails its preflight
    r = await release(ctx(), env, "v2")
    assert not r.ok and [h.outcome for h in r.hosts] == ["failed", "failed", "failed"]
    assert "not switched: h2 failed before any host switched" in r.hosts[0].message
    assert currents(env) == ["v1"] * 3
    assert all("v2" not in release_states(dp(env, i)) for i in range(3))
    consistent(env)


async def test_revert_all_puts_every_switched_host_back(tmp_path):
    env = make_env(tmp_path)
    assert (await release(ctx(), env, "v1")).ok
    env = with_broken(env, tmp_path, broken=(1,))  # rolling: h1 switches, h2 fails its health
    events: list = []
    r = await release(ctx(events), env, "v2")
    assert not r.ok and [h.outcome for h in r.hosts] == ["rolled_back", "rolled_back", "failed"], r
    assert "reverted to v1" in r.hosts[0].message and "h2 failed" in r.hosts[0].message
    assert "not switched" in r.hosts[2].message
    assert currents(env) == ["v1"] * 3
    assert release_states(dp(env, 0))["v2"] == "failed" and "v2" not in release_states(dp(env, 2))
    hist = [json.loads(x) for x in (dp(env, 0) / ".capview/history.jsonl").read_text().splitlines()]
    assert hist[-1]["op"] == "rollback" and hist[-1]["to"] == "v1" and "revert_all" in hist[-1]["reason"]
    consistent(env)


async def test_on_failure_stop_leaves_the_split_and_says_so(tmp_path):
    env = make_env(tmp_path)
    assert (await release(ctx(), env, "v1")).ok
    env = with_broken(env, tmp_path, rollout=Rollout(on_failure="stop"), broken=(1,))
    events: list = []
    r = await release(ctx(events), env, "v2")
    assert [h.outcome for h in r.hosts] == ["ok", "rolled_back", "failed"]
    assert currents(env) == ["v2", "v1", "v1"]
    said = [e.message for e in events if isinstance(e, HostWarning) and "is split" in e.message]
    assert said and "e is split: h1 v2, h2 v1, h3 v1" in said[0] and "capview rollback e --to v1" in said[0], said
    consistent(env)
    # the split is the first thing `releases` says, and in its JSON
    hosts = await status(ctx(), env)
    split = env_split("e", hosts)
    assert split.split and split.versions == {"h1": "v2", "h2": "v1", "h3": "v1"} and split.converge_to == "v1"
    text = releases_text(hosts, split=split)
    assert text.splitlines()[0] == ("WARNING: e is split: h1 v2, h2 v1, h3 v1 - converge with: "
                                    "capview rollback e --to v1")
    doc = [json.loads(x) for x in releases_json(hosts, split).splitlines()]
    assert all(d["split"] is True and d["versions"]["h1"] == "v2" for d in doc)
    # converge: v2 is not retained on h3 -> refused before anything changes
    r = await rollback(ctx(), env, to="v2")
    assert not r.ok and currents(env) == ["v2", "v1", "v1"]
    assert "release v2 is not on the host" in r.hosts[2].message
    assert "release v2 failed its deploy" in r.hosts[1].message  # h2's v2 never came up
    assert r.hosts[0].message.startswith("nothing switched: h2: release v2 failed its deploy"), r
    consistent(env)
    r = await rollback(ctx(), env, to="v1")
    assert r.ok, r
    assert [h.message for h in r.hosts][1:] == ["already on v1", "already on v1"]
    assert currents(env) == ["v1"] * 3 and not env_split("e", await status(ctx(), env)).split
    consistent(env)


async def test_canary_failure_leaves_the_other_hosts_untouched(tmp_path):
    env = make_env(tmp_path, strategy="parallel")
    assert (await release(ctx(), env, "v1")).ok
    env = with_broken(env, tmp_path, rollout=Rollout(canary=1, canary_wait=0), broken=(0,))
    r = await release(ctx(), env, "v2")
    assert [h.outcome for h in r.hosts] == ["rolled_back", "failed", "failed"]
    assert currents(env) == ["v1"] * 3
    assert all("v2" not in release_states(dp(env, i)) for i in (1, 2))
    consistent(env)


async def test_canary_watched_for_canary_wait_then_the_rest(tmp_path):
    env = make_env(tmp_path, strategy="parallel", rollout=Rollout(canary=1, canary_wait=3))
    assert (await release(ctx(), env, "v1")).ok
    events: list = []
    t0 = time.monotonic()
    r = await release(ctx(events), env, "v2")
    assert r.ok and currents(env) == ["v2"] * 3 and time.monotonic() - t0 >= 3
    order = [(e.host, e.at) for e in events if isinstance(e, PhaseStarted) and e.phase == "switch"]
    healthy = [e.at for e in events if isinstance(e, PhaseFinished) and e.phase == "health" and e.host == "h1"]
    assert order[0][0] == "h1" and all(at >= healthy[0] + 2.5 for h, at in order[1:]), (order, healthy)
    # the canary turns sick during its watch: it is reverted, the others never switch
    events.clear()
    sick = dp(env, 0) / "shared" / "SICK-v3"  # only v3 falls ill: v2 is healthy again

    async def fall_ill():
        while not any(isinstance(e, PhaseFinished) and e.phase == "health" and e.host == "h1" for e in events):
            await asyncio.sleep(0.05)
        sick.write_text("x")

    ill = asyncio.create_task(fall_ill())
    r = await release(ctx(events), env, "v3")
    await ill
    sick.unlink()
    assert [h.outcome for h in r.hosts] == ["rolled_back", "failed", "failed"], r
    assert "canary h1 became unhealthy" in r.hosts[1].message
    assert currents(env) == ["v2"] * 3 and all("v3" not in release_states(dp(env, i)) for i in (1, 2))
    consistent(env)


async def test_two_deploys_of_one_environment_at_once_one_wins_everywhere(tmp_path):
    env = make_env(tmp_path, strategy="parallel")
    assert (await release(ctx(), env, "v1")).ok
    ra, rb = await asyncio.gather(release(ctx(), env, "v2a"),
                                  release(ctx(), env, "v2b"))
    won, lost = (ra, rb) if ra.ok else (rb, ra)
    assert won.ok and lost.exit_code == EXIT_LOCKED, (ra, rb)
    v = won.hosts[0].version
    assert currents(env) == [v] * 3
    other = "v2b" if v == "v2a" else "v2a"
    assert all(other not in release_states(dp(env, i)) for i in range(3))
    assert any("locked by tester@ci" in h.message for h in lost.hosts), [h.message for h in lost.hosts]
    consistent(env)


# ---------------------------------------------------------------- locks

def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def hold(path: Path, **kw) -> dict:
    doc = {"operator": "ann@box", "machine": socket.gethostname(), "machine_id": local_machine_id(),
           "pid": dead_pid(), "operation": "release", "version": "v2", "started": time.time() - 60,
           "heartbeat": time.time() - 5, "host_heartbeat": time.time() - 5, "token": "feedfacefeedface"}
    doc.update(kw)
    (path / ".capview" / "lock").mkdir(parents=True)
    (path / ".capview" / "lock" / "owner.json").write_text(json.dumps(doc))
    return doc


async def test_dead_holder_on_this_machine_is_taken_over_and_its_release_removed(tmp_path):
    env = make_env(tmp_path, 2, strategy="parallel")
    assert (await release(ctx(), env, "v1")).ok
    for i in range(2):  # a killed `release v2` left its lock and a half-uploaded v2
        hold(dp(env, i))
        (dp(env, i) / "releases" / "v2" / ".capview").mkdir(parents=True)
        (dp(env, i) / "releases" / "v2" / ".capview" / "release.json").write_text('{"state":"uploading","version":"v2"}')
    events: list = []
    r = await release(ctx(events, clock=lambda: time.time() + 86400), env, "v3")  # the operator's clock a day off
    assert r.ok, r
    assert currents(env) == ["v3", "v3"] and all("v2" not in release_states(dp(env, i)) for i in range(2))
    said = [e.message for e in events if isinstance(e, HostWarning) and "took over the lock" in e.message]
    assert len(said) == 2 and "removed the release it left incomplete: v2" in said[0]
    consistent(env)


async def test_other_machine_same_hostname_is_never_taken_over(tmp_path):
    env = make_env(tmp_path, 2, strategy="parallel")
    assert (await release(ctx(), env, "v1")).ok
    seen = hold(dp(env, 1), machine_id="0" * 32)  # same hostname, pid gone here, another machine
    for skew in (0, 86400, -86400):  # the operator's clock never changes the verdict
        r = await release(ctx(clock=lambda: time.time() + skew), env, f"v2s{skew % 7}")
        assert r.exit_code == EXIT_LOCKED, r
        msg = r.hosts[1].message
        assert "--force" not in msg and re.search(r"heartbeat [4-9] seconds ago by the host's clock", msg), msg
        assert json.loads((dp(env, 1) / ".capview/lock/owner.json").read_text()) == seen
        assert currents(env) == ["v1", "v1"] and not (dp(env, 0) / ".capview" / "lock").exists()
    # a heartbeat a day old by the HOST's clock (the operator's says fresh): --force is named
    (dp(env, 1) / ".capview/lock/owner.json").write_text(json.dumps({**seen, "host_heartbeat": time.time() - 86400,
                                                                     "heartbeat": time.time()}))
    r = await release(ctx(), env, "v2x")
    assert r.exit_code == EXIT_LOCKED and "capview unlock e --host h2 --force" in r.hosts[1].message, r
    assert (dp(env, 1) / ".capview/lock").exists()


async def test_a_running_switch_is_never_taken_over(tmp_path):
    env = make_env(tmp_path, 1)
    assert (await release(ctx(), env, "v1")).ok
    hold(dp(env, 0))
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        (dp(env, 0) / ".capview" / "switch.pid").write_text(f"{sleeper.pid}\n")
        r = await release(ctx(), env, "v2")
        assert r.exit_code == EXIT_LOCKED and "a switch is still finishing" in r.hosts[0].message, r
    finally:
        sleeper.kill()
        sleeper.wait()
    r = await release(ctx(), env, "v2")  # the switch is over (its pid gone): taken over
    assert r.ok, r
    assert_states_consistent(dp(env, 0))
    assert os.path.exists(dp(env, 0) / "releases" / "v2")


def test_cli_flags_override_the_rollout(tmp_path):
    from capview.engine.fleet import with_rollout
    from capview.errors import UsageError
    import pytest

    env = make_env(tmp_path, 4, strategy="rolling", rollout=Rollout(batch_size=2, on_failure="stop"))
    e = with_rollout(env, strategy="parallel", batch="50%", canary=1, canary_wait=5.0, on_failure="revert_all")
    assert e.strategy == "parallel" and e.rollout == Rollout(batch_size=None, batch_percent=50, canary=1,
                                                             canary_wait=5.0, on_failure="revert_all")
    assert with_rollout(env) == env
    for bad in ("0", "x", "150%", "-1"):
        with pytest.raises(UsageError, match="--batch-size"):
            with_rollout(env, batch=bad)


async def test_ctrl_c_during_stage_2_gives_up_the_rest_and_unlocks(tmp_path):
    env = make_env(tmp_path, strategy="parallel", rollout=Rollout(canary=1, canary_wait=5))
    assert (await release(ctx(), env, "v1")).ok
    events: list = []
    task = asyncio.create_task(release(ctx(events), env, "v2"))
    while not any(isinstance(e, HostWarning) and "canary: h1 switched" in e.message for e in events):
        await asyncio.sleep(0.05)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    assert currents(env) == ["v2", "v1", "v1"]  # the canary's switch stands (the host decided it)
    assert all("v2" not in release_states(dp(env, i)) for i in (1, 2))
    consistent(env)  # and no lock is left anywhere


async def test_retrying_the_killed_version_itself_just_works(tmp_path):
    """The issue's maze: after a killed `release v2`, `release v2` again succeeds."""
    env = make_env(tmp_path, 1)
    assert (await release(ctx(), env, "v1")).ok
    hold(dp(env, 0), version="v2")
    (dp(env, 0) / "releases" / "v2" / "static").mkdir(parents=True)  # cut short: no release.json yet
    r = await release(ctx(), env, "v2")
    assert r.ok, r
    assert currents(env) == ["v2"] and release_states(dp(env, 0))["v2"] == "live"
    consistent(env)


async def test_hostile_owner_json_is_inert_and_removes_nothing_outside(tmp_path):
    env = make_env(tmp_path, 1)
    assert (await release(ctx(), env, "v1")).ok
    victim = tmp_path / "host0" / "victim"
    victim.mkdir()
    # a provably dead holder (this machine, pid gone) whose fields are garbage
    hold(dp(env, 0), operator="\x1b[31mevil\x07", version="../../victim", operation="release")
    events: list = []
    r = await release(ctx(events), env, "v2")
    assert r.ok, r
    assert victim.is_dir() and currents(env) == ["v2"]
    said = [e.message for e in events if isinstance(e, HostWarning) and "took over" in e.message]
    assert said and "removed the release" not in said[0]
    # not JSON at all: never taken over; the way out is named
    (dp(env, 0) / ".capview" / "lock").mkdir()
    (dp(env, 0) / ".capview" / "lock" / "owner.json").write_text("\x1b]0;pwned\x07 not json {")
    r = await release(ctx(), env, "v3")
    assert r.exit_code == EXIT_LOCKED and "unreadable" in r.hosts[0].message and "--force" in r.hosts[0].message, r
    assert (dp(env, 0) / ".capview" / "lock").exists() and currents(env) == ["v2"]


def test_canary_watch_lasts_at_least_canary_wait_when_started_late_in_a_second(tmp_path):
    """The host clock (date +%s) counts whole seconds: a watch begun late in a second, with
    checks that take a while, must still run its full canary_wait (it once ended ~2.2 s into
    a 3 s wait: the second check crossed the whole second that was taken as the end)."""
    from capview.engine.scripts.fleet import canary_watch
    from capview.engine.scripts.shell import Frames
    env = make_env(tmp_path, 1)
    slow = ServiceConfig(manager="command", start=":", stop=":", status="sleep 0.2")
    script = Frames.new().prelude() + canary_watch(dataclasses.replace(env.hosts[0].settings, service=slow), 3)
    while time.time() % 1 < 0.85:  # start late in a second
        time.sleep(0.01)
    t0 = time.monotonic()
    res = subprocess.run(["sh", "-c", script], cwd=dp(env, 0), capture_output=True, text=True, timeout=30)
    assert res.returncode == 0 and "canary_ok" in res.stdout, res.stdout + res.stderr
    assert time.monotonic() - t0 >= 3.0


async def test_converge_to_a_version_failed_on_one_host_changes_nothing(tmp_path):
    """issue 17: `rollback ENV --to V` reads every host first; V failed on one of them
    (without --force) -> one line naming that host and why, no host switched, no lock left."""
    env = make_env(tmp_path, strategy="parallel")
    assert (await release(ctx(), env, "v1")).ok
    assert (await release(ctx(), env, "v2")).ok
    meta = dp(env, 1) / "releases" / "v1" / ".capview" / "release.json"
    doc = json.loads(meta.read_text())
    meta.write_text(json.dumps({**doc, "state": "failed"}))  # v1 failed its deploy on h2
    r = await rollback(ctx(), env, to="v1")
    assert not r.ok and currents(env) == ["v2"] * 3
    messages = " | ".join(h.message for h in r.hosts)
    assert "nothing switched: h2: release v1 failed its deploy" in messages, messages
    for i in range(3):
        assert not (dp(env, i) / ".capview" / "lock").exists(), f"lock left on h{i + 1}"
    forced = await rollback(ctx(), env, to="v1", force=True)  # --force: the operator's call
    assert forced.ok and currents(env) == ["v1"] * 3
