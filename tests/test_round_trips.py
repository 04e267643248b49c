"""Round-trip budget (issue 7): counts, not timings, so they hold on a noisy machine.

Targets after connect: a deploy without a build <= 8 (we use 3: preflight+lock+setup+
listing, upload+link(+build) on one tar stream, the switch transaction; issue 21 folded
setup into the lock's trip and the link into the upload's), a rollback <= 4 (2:
lock+listing, the transaction), a restart 2, listing releases 1 per host. LocalTransport counts every
script it runs. Over SSH (issue 21) every one of those scripts runs in one long-lived
session: one connection and one session channel per deploy and per rollback, counted
in the real sshd's log.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from capview.config import Environment, HostConfig, Settings
from capview.engine.context import Context
from capview.engine.deploy import release
from capview.engine.events import HostFinished
from capview.engine.restart import restart
from capview.engine.rollback import rollback
from capview.engine.status import status
from capview.remote.local import LocalTransport

DEPLOY_BUDGET = 8
ROLLBACK_BUDGET = 4


def _env(tmp_path: Path, hosts: int = 1) -> Environment:
    src = tmp_path / "src"
    (src / "static").mkdir(parents=True, exist_ok=True)
    for i in range(50):
        (src / "static" / f"a{i}.css").write_text(f".a{i} {{}}\n" * 20)
    hcs = []
    for i in range(hosts):
        dp = tmp_path / f"host{i}" / "web" / "app"
        (dp / "shared").mkdir(parents=True, exist_ok=True)
        (dp / "shared" / ".env").write_text("")
        s = Settings(app="a", deploy_path=str(dp), source=src, keep_releases=3)
        hcs.append(HostConfig(name=f"h{i}", host="local", settings=s, env="e"))
    return Environment(name="e", hosts=tuple(hcs), settings=hcs[0].settings, strategy="parallel")


async def test_deploy_and_rollback_round_trips(tmp_path: Path) -> None:
    env = _env(tmp_path)
    src = env.settings.source
    t = LocalTransport()
    events: list = []
    ctx = Context(transport=t, emit=events.append)
    for v in ("v1", "v2", "v3", "v4"):  # v4's cleanup prunes v1: pruning costs no extra trip
        (src / "VERSION").write_text(v)
        before = t.round_trips
        assert (await release(ctx, env, v)).ok
        assert t.round_trips - before == 3 <= DEPLOY_BUDGET
    assert sorted(os.listdir(env.hosts[0].settings.deploy_path + "/releases")) == ["v2", "v3", "v4"]
    before = t.round_trips
    assert (await rollback(ctx, env)).ok
    assert t.round_trips - before == 2 <= ROLLBACK_BUDGET
    before = t.round_trips
    assert (await restart(ctx, env)).ok
    assert t.round_trips - before == 2
    fin = [e for e in events if isinstance(e, HostFinished)]
    assert [e.round_trips for e in fin] == [3, 3, 3, 3, 2, 2]


async def test_status_is_one_round_trip_per_host(tmp_path: Path) -> None:
    env = _env(tmp_path, hosts=5)
    t = LocalTransport()
    ctx = Context(transport=t)
    assert (await release(ctx, env, "v1")).ok
    before = t.round_trips
    hosts = await status(ctx, env)
    assert t.round_trips - before == 5 and all(h.current == "v1" for h in hosts)


async def test_fleet_deploy_is_one_more_round_trip_per_host(tmp_path: Path) -> None:
    """issue 17: with several hosts every lock is kept through the switches and released
    by one last trip per host (so a revert_all never races another deploy): 3 + 1."""
    env = _env(tmp_path, hosts=3)
    t = LocalTransport()
    events: list = []
    assert (await release(Context(transport=t, emit=events.append), env, "v1")).ok
    assert t.round_trips == 3 * 4 <= 3 * DEPLOY_BUDGET
    assert [e.round_trips for e in events if isinstance(e, HostFinished)] == [4, 4, 4]
    before = t.round_trips
    assert (await rollback(Context(transport=t), env, to="v1")).ok  # converge: already on v1 everywhere
    assert t.round_trips - before == 3 * 2 <= 3 * ROLLBACK_BUDGET  # lock+listing, then the unlock


# ---------------------------------------------------------------- SSH sessions (issue 21)

@pytest.mark.testbed
async def test_one_ssh_session_per_deploy_and_per_rollback(host, tmp_path: Path) -> None:
    """On real OpenSSH (the sshd log counts every session channel): a redeploy and a
    rollback each open one connection and one session, every script runs in it."""
    import asyncio

    from capview.remote.ssh import SshTransport
    from realhost import make_source, new_app

    app = new_app(host, build=False)

    def counts() -> tuple[int, int]:
        log = host.sshd_log()
        return log.count("Accepted publickey for"), log.count("Starting session:")

    async def counted(op) -> tuple[int, int, object]:
        c0, s0 = counts()
        async with SshTransport() as t:
            res = await op(Context(transport=t, operator="tester@ci"))
        await asyncio.sleep(0.3)  # sshd logs from the connection's own child
        c1, s1 = counts()
        return c1 - c0, s1 - s0, res

    src = make_source(tmp_path, "v1")
    for v in ("v1", "v2"):
        c, s, r = await counted(lambda ctx, v=v: release(ctx, app.env(src), v))
        assert r.ok, r
        assert (c, s) == (1, 1), f"deploy {v}: {c} connections, {s} sessions"
    c, s, r = await counted(lambda ctx: rollback(ctx, app.env(src)))
    assert r.ok and (c, s) == (1, 1), (c, s, r)
