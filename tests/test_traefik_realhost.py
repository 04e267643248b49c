"""Traefik in front of real deploys (issue 9): the retry is sized from the switch windows
capview recorded on a real testbed host, and requests sent through real Traefik during
a real `release` and `rollback` of a socket-activated app do not fail — not one."""

from __future__ import annotations

import asyncio
import types

import pytest
import yaml

from capview.config import TraefikConfig
from capview.engine.context import Context
from capview.engine.deploy import release
from capview.engine.rollback import rollback
from capview.engine.traefik import traefik_config
from capview.remote.ssh import SshTransport
from realhost import make_source, new_app
from test_traefik import real_traefik  # noqa: F401  (fixture: the real Traefik binary)
from traefik_client import hammer

pytestmark = pytest.mark.testbed


async def test_real_traefik_hides_real_deploy_and_rollback_windows(host, tmp_path, real_traefik):  # noqa: F811
    # socket-activated (the setup docs/traefik.md recommends); graceful for the control below
    app = new_app(host, build=False, graceful=True, socket_activated=True)
    tcfg = TraefikConfig(mode="retry", port=app.port)
    async with SshTransport() as t:
        ctx = Context(transport=t, operator="tester@ci")
        env = lambda v: app.env(make_source(tmp_path, v), traefik=tcfg, keep_releases=10)  # noqa: E731
        for v in ("v1", "v2", "v3", "v4"):  # three real switches recorded in history.jsonl
            assert (await release(ctx, env(v), v)).ok
        text, plan = await traefik_config(t, app.host_config(make_source(tmp_path, "v4"), traefik=tcfg))
        assert plan.samples >= 3 and not plan.assumed, plan.summary()
        recorded = [h.get("unavailable") or h["downtime"] for h in app.history()
                    if h["op"] == "release" and h.get("from")]
        assert plan.p95 == pytest.approx(max(recorded), abs=1e-3)  # nearest-rank p95 of 3 = the max

        doc = yaml.safe_load(text)
        router = next(iter(doc["http"]["routers"]))
        (real_traefik.dyn / f"{router}.yml").write_text(text)
        await real_traefik.wait_router(router, doc["http"]["routers"][router]["middlewares"])

        stop = asyncio.Event()
        no_client_retry = types.SimpleNamespace(attempts=1, initial_interval=0.0)
        load = asyncio.create_task(hammer(real_traefik.url, no_client_retry, stop, concurrency=8, pace=0.02))
        await asyncio.sleep(0.5)
        r5 = await release(ctx, env("v5"), "v5")
        await asyncio.sleep(0.3)
        rb = await rollback(ctx, env("v5"))
        await asyncio.sleep(0.5)
        stop.set()
        stats = await load

        # Control: no retry middleware and no socket unit (the app binds its port itself
        # again), across one more switch: the same load now sees failed requests.
        bare = yaml.safe_load(text)
        del bare["http"]["routers"][router]["middlewares"]
        del bare["http"]["middlewares"]
        (real_traefik.dyn / f"{router}.yml").write_text(yaml.safe_dump(bare))
        await real_traefik.wait_router(router, [])
        host.systemctl("disable", "--now", f"{app.unit}.socket", check=True)
        stop = asyncio.Event()
        load = asyncio.create_task(hammer(real_traefik.url, no_client_retry, stop, concurrency=8, pace=0.02))
        await asyncio.sleep(0.5)
        assert (await rollback(ctx, env("v5"), to="v5")).ok
        await asyncio.sleep(0.5)
        stop.set()
        control = await load
    assert r5.ok and rb.ok
    assert app.get() == (200, "v5")
    windows = [h.get("unavailable") for h in app.history()[-3:-1]]
    print(f"\n[traefik-realhost] recorded windows {', '.join(f'{w:.3f}' for w in recorded)} s -> p95 "
          f"{plan.p95:.3f} s, attempts {plan.attempts}, initialInterval {plan.interval_str}; "
          f"release+rollback windows {windows} s; requests through Traefik: sent {stats.sent}, "
          f"failed {stats.failed}, max latency {stats.max_latency:.3f} s; "
          f"control (no retry, no socket unit): sent {control.sent}, failed {control.failed}")
    assert stats.sent > 50 and stats.failed == 0, stats.describe()
    assert control.failed > 0, control.describe()
