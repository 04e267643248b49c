"""Socket activation (issue 9): a unit whose port is held by a ``.socket`` unit is switched
with swap -> restart, so a deploy and a rollback under load fail zero requests — no
retry anywhere — and a failed first release leaves nothing listening."""

from __future__ import annotations

import asyncio
import socket
import types

import pytest

from capview.config import HealthConfig
from capview.engine.context import Context
from capview.engine.deploy import release
from capview.engine.events import PhaseFinished
from capview.engine.rollback import rollback
from capview.remote.ssh import SshTransport
from realhost import make_source, new_app
from traefik_client import hammer

pytestmark = pytest.mark.testbed
NO_RETRY = types.SimpleNamespace(attempts=1, initial_interval=0.0)


def refused(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) != 0


async def load_during(url: str, work):
    """Plain GETs (no retry) from 8 workers while ``work()`` runs; returns (result, Stats)."""
    stop = asyncio.Event()
    task = asyncio.create_task(hammer(url, NO_RETRY, stop, concurrency=8, pace=0.01))
    await asyncio.sleep(0.4)
    try:
        result = await work()
        await asyncio.sleep(0.4)
    finally:
        stop.set()
    return result, await task


async def test_socket_activated_switches_fail_no_request(host, tmp_path):
    app = new_app(host, build=False, socket_activated=True)
    events = []
    async with SshTransport() as t:
        ctx = Context(transport=t, operator="tester@ci", emit=events.append)
        env = lambda v: app.env(make_source(tmp_path, v), keep_releases=10)  # noqa: E731
        assert (await release(ctx, env("v1"), "v1")).ok
        assert host.systemctl("is-active", f"{app.unit}.socket").stdout.strip() == "active"
        pid1 = app.main_pid()

        async def switches():
            r2 = await release(ctx, env("v2"), "v2")
            await asyncio.sleep(0.3)
            rb = await rollback(ctx, env("v2"))
            await asyncio.sleep(0.3)
            return r2, rb, await rollback(ctx, env("v2"), to="v2")

        (r2, rb, r3), stats = await load_during(f"http://127.0.0.1:{app.port}/", switches)
    assert r2.ok and rb.ok and r3.ok
    assert app.get() == (200, "v2") and app.current() == "releases/v2"
    assert app.main_pid() not in ("0", pid1)  # really restarted, not the old process serving on
    print(f"\n[socket-activation] 3 switches under load: {stats.describe()}")
    assert stats.sent > 100 and stats.failed == 0, stats.describe()
    switch_details = [e.detail for e in events if isinstance(e, PhaseFinished) and e.phase == "switch"]
    assert len(switch_details) == 4 and all(f"{app.unit}.socket held connections" in d for d in switch_details[1:])
    downtimes = [h["downtime"] for h in app.history() if h["op"] in ("release", "rollback") and h.get("downtime")]
    assert len(downtimes) >= 3 and all(0 < d < 5 for d in downtimes)


async def test_control_a_plain_unit_under_the_same_load_fails_requests(host, tmp_path):
    """The same load and switch without the socket unit: requests fail (the test above can fail)."""
    app = new_app(host, build=False)
    async with SshTransport() as t:
        ctx = Context(transport=t, operator="tester@ci")
        env = lambda v: app.env(make_source(tmp_path, v), keep_releases=10)  # noqa: E731
        assert (await release(ctx, env("v1"), "v1")).ok

        async def switch():
            return await release(ctx, env("v2"), "v2")

        r2, stats = await load_during(f"http://127.0.0.1:{app.port}/", switch)
    assert r2.ok and app.get() == (200, "v2")
    assert stats.failed > 0, stats.describe()


async def test_failed_first_release_stops_the_socket_too(host, tmp_path):
    """Nothing to serve: the socket must not keep accepting and restarting a broken app."""
    app = new_app(host, build=False, socket_activated=True)
    async with SshTransport() as t:
        ctx = Context(transport=t, operator="tester@ci")
        bad = await release(ctx, app.env(make_source(tmp_path, "v1", broken=True), health=HealthConfig(
            url=f"http://127.0.0.1:{app.port}/health", timeout=3, interval=0.2)), "v1")
        assert not bad.ok
        assert host.systemctl("is-active", f"{app.unit}.socket", check=False).stdout.strip() != "active"
        assert refused(app.port)
        good = await release(ctx, app.env(make_source(tmp_path, "v2")), "v2")
    assert good.ok, good.hosts[0].message
    assert app.get() == (200, "v2")
    assert host.systemctl("is-active", f"{app.unit}.socket").stdout.strip() == "active"
