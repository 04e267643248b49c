"""The dashboard keeps its connection and session warm (issue 21): its backend holds one
SshTransport for the app's life, so after the first refresh a deploy or a rollback started
from it opens no connection and no session channel. Counted in the real sshd's log."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from capview.engine.context import Context
from capview.engine.deploy import release
from capview.engine.rollback import rollback
from capview.engine.status import status
from capview.remote.ssh import SshTransport

pytestmark = pytest.mark.testbed


async def test_after_a_refresh_a_deploy_and_a_rollback_pay_no_connect_and_no_session(host, tmp_path: Path) -> None:
    from realhost import make_source, new_app

    app = new_app(host, build=False)
    src = make_source(tmp_path, "v1")

    def counts() -> tuple[int, int]:
        log = host.sshd_log()
        return log.count("Accepted publickey for"), log.count("Starting session:")

    async with SshTransport() as t:  # as capview/tui/backend.py holds it
        ctx = Context(transport=t, operator="tester@ci")
        assert (await release(ctx, app.env(src), "v1")).ok
        await status(ctx, app.env(src))  # the dashboard's refresh
        await asyncio.sleep(0.3)  # sshd logs from the connection's own child
        c0, s0 = counts()
        r2 = await release(ctx, app.env(src), "v2")
        r3 = await rollback(ctx, app.env(src))
        await status(ctx, app.env(src))
        await asyncio.sleep(0.3)
        c1, s1 = counts()
    assert r2.ok and r3.ok, (r2, r3)
    assert (c1 - c0, s1 - s0) == (0, 0), f"{c1 - c0} connections, {s1 - s0} sessions after the refresh"
