"""The dashboard shows the service's truth (issue 16), driven with Pilot against the real
testbed: a unit stopped by hand turns the host's marker into ``■ ... service down`` (a
shape, not only a colour) and the environment line counts it; a refresh after it is
started again shows it running."""

from __future__ import annotations

import asyncio

import pytest

from capview.engine.context import Context
from capview.engine.deploy import release
from capview.remote.ssh import SshTransport
from capview.tui.widgets.host_list import HostList

from realhost import make_source, new_app
from test_tui_realhost import SIZE, make_ui, settled

pytestmark = pytest.mark.testbed


def labels(ui, host: str, env: str) -> tuple[str, str]:
    hosts = ui.main_screen.query_one(HostList)
    nodes = hosts._target_nodes
    h = nodes[next(t for t in nodes if t.host == host)].label.plain
    e = nodes[next(t for t in nodes if t.host is None and t.env == env)].label.plain
    return h, e


async def test_a_stopped_unit_is_shown_down_and_running_again_after_a_refresh(host, tmp_path):
    app = new_app(host, build=False)
    env = app.env(make_source(tmp_path, "v1"))
    async with SshTransport() as t:
        assert (await release(Context(transport=t), env, "v1")).ok
    ui = make_ui(env, tmp_path)
    async with ui.run_test(size=SIZE) as pilot:
        await settled(pilot, ui)
        h, e = labels(ui, host.name, env.name)
        assert h.startswith("● ") and "down" not in h and "service" not in e, (h, e)
        assert ui.status[host.name].service.condition == "running"

        await asyncio.to_thread(host.systemctl, "stop", app.unit, check=True)
        await pilot.press("R")
        await settled(pilot, ui)
        h, e = labels(ui, host.name, env.name)
        assert h.startswith("■ ") and h.endswith("service down"), h
        assert "1 service down" in e, e
        assert ui.status[host.name].service.active_state == "inactive"

        await asyncio.to_thread(host.systemctl, "start", app.unit, check=True)
        await pilot.press("R")
        await settled(pilot, ui)
        h, e = labels(ui, host.name, env.name)
        assert h.startswith("● ") and "down" not in h and "service down" not in e, (h, e)
