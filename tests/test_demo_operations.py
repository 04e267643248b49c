"""The demo host runs rollback, prune and migrate through the same engine functions as
real hosts (issue 5): no demo-only path in the engine."""

from __future__ import annotations

import io
import urllib.request

from capview.config import load_config
from capview.engine.context import Context
from capview.engine.migrate import migrate, plan_migration
from capview.engine.prune import prune
from capview.engine.rollback import rollback
from capview.engine.status import status
from capview.remote.ssh import SshTransport


def health(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


async def test_demo_rollback_prune_and_migrate_through_the_engine():
    from capview.demo.runner import run_demo

    seen: dict = {}

    async def on_ready(sb):
        cfg = load_config(sb.config_path)
        prod, legacy = cfg.env("prod"), cfg.env("legacy")
        async with SshTransport() as t:
            ctx = Context(transport=t, operator="test@demo")
            r = await rollback(ctx, prod, to="v1.0.0")
            seen["rollback"] = r.ok
            seen["health"] = [health(h.health_url) for h in sb.env_hosts("prod")]
            r = await prune(ctx, prod, keep=2)
            seen["prune"] = r.ok
            hosts = await status(ctx, prod)
            seen["after_prune"] = [sorted(r.version for r in h.releases) for h in hosts]
            plans = await plan_migration(ctx, legacy)
            seen["needed"] = [p.needed for p in plans]
            r = await migrate(ctx, legacy)
            seen["migrate"] = (r.ok, [h.message for h in r.hosts])
            seen["legacy"] = [(h.layout, h.current) for h in await status(ctx, legacy)]
            seen["legacy_health"] = [health(h.health_url) for h in sb.env_hosts("legacy")]

    out = io.StringIO()
    # The headless run's own health report compares against the status read before
    # on_ready (v1.1.0 live); we rolled back, so it reports a mismatch: exit 1 is expected.
    rc = await run_demo(None, headless=True, out=out, err=io.StringIO(), on_ready=on_ready)
    assert rc in (0, 1) and "seeded in" in out.getvalue(), out.getvalue()
    print(seen)
    assert seen["rollback"] and seen["health"] == ["v1.0.0", "v1.0.0"]
    # keep 2 successful (v1.0.0 current, v1.1.0 previous); the failed v1.2.0 goes
    assert seen["prune"] and seen["after_prune"] == [["v1.0.0", "v1.1.0"]] * 2
    assert seen["needed"] == [True]
    assert seen["migrate"][0], seen["migrate"]
    assert seen["legacy"] == [("releases", "legacy")]
    assert seen["legacy_health"][0].strip()
