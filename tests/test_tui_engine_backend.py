"""EngineBackend over the real engine (LocalTransport on a hand-built host), and the
dashboard driven through it: the same screens the FakeBackend tests cover, real data."""

from __future__ import annotations

from pathlib import Path

import pytest

from capview.config import Config
from capview.remote.local import LocalTransport
from capview.tui.app import CapviewApp
from capview.tui.backend import EngineBackend
from capview.tui.screens.confirm import ConfirmScreen
from capview.tui.screens.inspect import InspectScreen
from capview.tui.widgets.host_list import HostList, Target
from capview.tui.widgets.releases_table import ReleasesTable
from fakehost import FakeHost, environment, host_config

NOW = 10_000.0


@pytest.fixture
def world(tmp_path):
    fh = FakeHost(tmp_path / "app")
    fh.release("v1", {"app.py": "print(1)\n", "templates/index.html": "<p>1</p>\n"}, deployed_at=100)
    fh.release("v2", {"app.py": "print(2)\n", "templates/index.html": "<p>1</p>\n", "new.txt": "n"},
               link_from="v1", deployed_at=200)
    fh.release("v3", {"app.py": "print(3)\n", "templates/index.html": "<p>[bold]x\x1b[31m</p>\n"},
               link_from="v2", deployed_at=300)
    fh.set_current("v3")
    fh.history_release("v1")
    fh.history_release("v2", prev="v1")
    fh.history_release("v3", prev="v2")
    h = host_config(fh.dp, name="h1", env="test", keep_releases=1)
    config = Config(path=tmp_path / "deploy.yaml", environments=(environment(h, name="test"),))
    backend = EngineBackend(config=config, transport=LocalTransport(), clock=lambda: NOW, operator="ui@test")
    return fh, backend


async def test_engine_backend_reads(world):
    fh, backend = world
    assert [(e.name, e.hosts) for e in backend.environments()] == [("test", ("h1",))]
    [st] = await backend.status("test")
    assert st.reachable and st.current == "v3" and st.previous == "v2"
    assert [r.version for r in st.releases if r.current] == ["v3"]

    plans = await backend.plan_prune("test")
    actions = {i.version: i.action for i in plans[0].items}
    assert actions["v3"] == "protected" and actions["v2"] == "protected" and actions["v1"] == "delete"

    entries = {e.name: e for e in await backend.list_dir("test", "h1", "v3", "")}
    assert entries["templates"].kind == "dir" and entries["data"].kind == "link"
    assert [e.path for e in await backend.list_dir("test", "h1", "v3", "templates")] == ["templates/index.html"]
    assert "[bold]x" in await backend.read_text("test", "h1", "v3", "templates/index.html")
    manifest = await backend.manifest("test", "h1", "v3")
    assert manifest["version"] == "v3"
    cmp = await backend.compare("test", "h1", "v2", "v3")
    assert {(c.path, c.change) for c in cmp.changes} >= {("app.py", "changed"), ("new.txt", "removed")}
    assert isinstance(await backend.release_logs("test", "h1", "v3"), dict)
    [plan] = await backend.plan_migration("test")
    assert plan.layout == "releases" and not plan.needed and not plan.error


async def test_engine_backend_pin_and_rollback(world):
    fh, backend = world
    await backend.pin("test", "v1")
    [st] = await backend.status("test")
    assert next(r for r in st.releases if r.version == "v1").pinned
    await backend.unpin("test", "v1")

    events = []
    result = await backend.rollback("test", to="v2", emit=events.append)
    assert result.ok, [h.message for h in result.hosts]
    assert (fh.dp / "current").readlink() == Path("releases/v2")
    assert any(type(e).__name__ == "OperationFinished" for e in events)


async def test_dashboard_on_the_engine_backend(world):
    fh, backend = world
    app = CapviewApp(backend, clock=lambda: NOW, refresh_interval=3600, animations=False)
    async with app.run_test(size=(120, 36)) as pilot:
        for _ in range(3):
            await app.workers.wait_for_complete()
            await pilot.pause()
        app.main_screen.query_one(HostList).select_target(Target("test", "h1"))
        await pilot.pause()
        table = app.main_screen.query_one(ReleasesTable)
        assert [str(k.value) for k in table.rows] == ["v3", "v2", "v1"]
        table.focus()
        table.select_version("v2")
        await pilot.press("r")
        assert isinstance(app.screen, ConfirmScreen)
        assert "v3  →  v2" in app.screen.body.plain
        await pilot.press("enter")
        for _ in range(3):
            await app.workers.wait_for_complete()
            await pilot.pause()
        assert app.last_operation.state == "ok", app.last_operation.summary()
        assert (fh.dp / "current").readlink() == Path("releases/v2")  # asserted on the host, not the screen
        await pilot.press("escape")
        for _ in range(2):
            await app.workers.wait_for_complete()
            await pilot.pause()
        assert table.get_cell("v2", "mark").plain.strip() == "●"
        table.select_version("v3")
        await pilot.press("i")
        assert isinstance(app.screen, InspectScreen)
        for _ in range(3):
            await app.workers.wait_for_complete()
            await pilot.pause()
        import io

        from rich.console import Console

        console = Console(width=120, height=36, file=io.StringIO(), record=True, force_terminal=True)
        console.print(app.screen._compositor.render_update(full=True))
        text = console.export_text()
        assert "version" in text and "tester@box" in text and "abc1234" in text
