"""Pilot tests of the dashboard on the real engine (tests/tui_world.py), issue 19 items 1-6:
filter, dangerous defaults, 80x24, freshness, history. Every check that an operation
happened is made on the host's files, not only on the screen."""

from __future__ import annotations

import asyncio
import time

import pytest
from textual.widgets import Input

from capview.engine import deploy
from capview.errors import UsageError
from capview.tui.app import parse_interval
from capview.tui.screens.confirm import ConfirmScreen
from capview.tui.screens.deploy_dialog import DeployDialog
from capview.tui.screens.help import HelpScreen
from capview.tui.screens.history import HistoryScreen
from capview.tui.screens.main import MainScreen
from capview.tui.screens.prune import PruneScreen
from capview.tui.widgets.host_list import HostList, Target
from capview.tui.widgets.releases_table import ReleasesTable
from tui_pilot import SIZE, footer, notes, screen_text, select, settle, until
from tui_world import world  # noqa: F401


def rows(table: ReleasesTable) -> list[str]:
    return [str(r.key.value) for r in table.ordered_rows]


# --------------------------------------------------------------------------- 1. filter


async def test_filter_applies_to_the_focused_list_counts_and_keeps_the_selection(world):
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        table = await select(pilot, "prod", "prod-1", "v1.2.1")
        await pilot.press("slash", *"v1.2")  # the releases table has focus: it filters releases only
        await pilot.pause()
        assert rows(table) == ["v1.2.1", "v1.2.0"]
        hosts = app.main_screen.query_one(HostList)
        assert hosts.match_count() == (3, 3) and app.main_screen.target == Target("prod", "prod-1")
        assert "2/6 releases match" in screen_text(app)
        assert table.highlighted.version == "v1.2.1"
        await pilot.press("escape")
        await pilot.pause()
        assert len(rows(table)) == 6 and table.highlighted.version == "v1.2.1"

        hosts.focus()
        await pilot.press("slash", *"prod-2")  # the host list has focus: it filters hosts only
        await pilot.pause()
        assert hosts.match_count() == (1, 3) and "1/3 hosts match" in screen_text(app)
        assert app.main_screen.target == Target("prod", "prod-2")
        assert rows(table) == ["v1.3.0", "v1.2.1", "v1.2.0", "v1.1.0", "v1.0.0"]  # releases not emptied
        await pilot.press("escape")
        await pilot.pause()
        assert hosts.match_count() == (3, 3) and app.main_screen.target == Target("prod", "prod-2")

        await pilot.press("slash", *"version:v1.0")  # a prefix names the list, whatever has focus
        await pilot.pause()
        assert rows(table) == ["v1.0.0"] and hosts.match_count() == (3, 3)
        await pilot.press("escape")
        await pilot.press("slash", *"host:legacy")
        await pilot.pause()
        assert hosts.match_count() == (1, 3)


# --------------------------------------------------------------------------- 2. dangerous defaults


async def test_enter_enter_on_a_live_lock_removes_nothing_and_forcing_needs_the_host_typed(world):
    lock = world.dp("legacy-1") / ".capview" / "lock"
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, "legacy", "legacy-1")
        await pilot.press("u")
        dialog = app.screen
        assert isinstance(dialog, ConfirmScreen) and dialog.type_to_confirm == "legacy-1"
        assert "--force" not in dialog.body.plain and "cannot be checked from here" in dialog.body.plain
        await pilot.press("enter", "enter")
        await settle(pilot)
        assert lock.is_dir() and app.screen is dialog  # nothing typed: still asking, nothing removed
        await pilot.press(*"legacy-")
        assert dialog.query_one("#yes").disabled
        await pilot.press("1", "enter")
        await settle(pilot)
        assert not lock.exists()
        rec = world.history("legacy-1")[-1]
        assert (rec["op"], rec["forced"], rec["holder"]) == ("unlock", True, "carol@laptop")


async def test_prune_confirm_defaults_to_cancel(world):
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, "prod", "prod-1")
        await pilot.press("p")
        await settle(pilot)
        await pilot.press("enter")  # enter on the table: the confirm dialog
        assert isinstance(app.screen, ConfirmScreen) and app.screen.focused.id == "no"
        await pilot.press("enter")  # enter on the focused button: Cancel
        await settle(pilot)
        assert isinstance(app.screen, PruneScreen) and app.last_operation is None
        assert (world.dp("prod-1") / "releases" / "v0.9.0").is_dir()


async def test_rolling_back_to_a_failed_release_needs_its_version_typed(world):
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, "prod", None, "v1.2.0")
        await pilot.press("r")
        dialog = app.screen
        assert isinstance(dialog, ConfirmScreen) and dialog.type_to_confirm == "v1.2.0" and dialog.danger
        assert "FAILED its health check" in dialog.body.plain
        await pilot.press("enter", "y", "enter")  # y is typed into the box, not a shortcut here
        assert app.screen is dialog and app.last_operation is None
        dialog.query_one("#typed", Input).value = "v1.2.0"
        await pilot.press("enter")
        op = app.last_operation
        await until(pilot, lambda: not op.running, what="forced rollback")
        assert op.kind == "rollback" and op.version == "v1.2.0"
        assert world.history("prod-1")[-1]["op"] == "rollback"  # it ran (and, unhealthy, switched back)
        assert world.current("prod-1") == "v1.3.0"


async def test_a_plain_rollback_confirm_also_defaults_to_cancel(world):
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, "prod", "prod-1", "v1.1.0")
        await pilot.press("r")
        assert isinstance(app.screen, ConfirmScreen) and app.screen.focused.id == "no"
        await pilot.press("enter")
        await settle(pilot)
        assert app.last_operation is None and world.current("prod-1") == "v1.3.0"
        await pilot.press("r", "y")  # y confirms
        await until(pilot, lambda: app.last_operation is not None and not app.last_operation.running)
        assert world.current("prod-1") == "v1.1.0"


# --------------------------------------------------------------------------- 3. 80x24 and smaller


@pytest.mark.parametrize("keys", [(), ("p",), ("h",), ("i",), ("i", "6"), ("m",)], ids=[
    "main", "prune", "history", "inspect", "compare", "migrate"])
async def test_help_and_quit_always_in_the_footer_at_80x24(world, keys):
    app = world.app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await select(pilot, "legacy" if keys == ("m",) else "prod", "legacy-1" if keys == ("m",) else "prod-1",
                     None if keys == ("m",) else "v1.3.0")
        for k in keys:
            await pilot.press(k)
            await settle(pilot)
        bar = await footer(pilot)
        assert "? Help" in bar and "q Quit" in bar, bar


async def test_dialogs_fit_80x24_with_their_buttons(world):
    app = world.app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("d")
        assert isinstance(app.screen, DeployDialog)
        text = screen_text(app)
        assert " Deploy " in text and " Cancel " in text
        for button in app.screen.query("Button"):
            r = button.region
            assert r.width > 0 and r.bottom <= 24 and r.right <= 80, (button.id, r)
        await pilot.press("escape", "question_mark")
        assert isinstance(app.screen, HelpScreen)
        dialog = app.screen.query_one("#dialog")
        assert dialog.region.right <= 80 and dialog.region.bottom <= 24
        assert app.screen.query_one("#help-scroll").max_scroll_y > 0  # scrolls instead of running off


async def test_60x18_gives_the_hosts_the_room_not_an_empty_activity_pane(world):
    app = world.app()
    async with app.run_test(size=(60, 18)) as pilot:
        await settle(pilot)
        assert not app.main_screen.query_one("#activity").display
        assert app.main_screen.query_one(HostList).region.height >= 5
        bar = await footer(pilot)
        assert "? Help" in bar and "q Quit" in bar


# --------------------------------------------------------------------------- 5. freshness


class GatedTransport:
    """Wraps the world's transport: status scripts wait for ``gate`` (a refresh held open)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.gate = asyncio.Event()
        self.gate.set()
        self.runs: list[tuple[float, float]] = []  # (start, end) of each prod-1 status script
        self.round_trips = 0
        self.bytes_sent = 0

    async def run(self, host, script, **kw):
        status = "sec df" in script  # the status script (engine/status.py) reads df
        t0 = time.monotonic()
        if status:
            await self.gate.wait()
        res = await self.inner.run(host, script, **kw)
        if status and host.name == "prod-1":
            self.runs.append((t0, time.monotonic()))
        return res

    async def close(self) -> None:
        await self.inner.close()


async def test_updated_time_and_a_spinner_while_refreshing(world):
    from capview.tui.backend import EngineBackend

    gated = GatedTransport(world.transport)
    backend = EngineBackend(config=world.config, transport=gated, clock=world.clock, label="deploy.yaml")
    app = world.app(backend=backend)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        left = app.main_screen.query_one("#left")
        assert left.border_subtitle == "updated 12:00:00"
        gated.gate.clear()
        await pilot.press("R")
        await pilot.pause(0.2)
        assert "refreshing" in str(left.border_subtitle)  # feedback for R at once
        world.now += 65
        gated.gate.set()
        await settle(pilot)
        assert left.border_subtitle == "updated 12:01:05"


async def test_the_next_refresh_is_scheduled_when_the_previous_one_ends(world):
    from capview.tui.backend import EngineBackend

    class Slow(GatedTransport):
        async def run(self, host, script, **kw):
            if "sec df" in script:
                await asyncio.sleep(0.4)  # a refresh slower than the interval
            return await super().run(host, script, **kw)

    slow = Slow(world.transport)
    backend = EngineBackend(config=world.config, transport=slow, clock=world.clock)
    app = world.app(backend=backend, refresh_interval=0.5)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: len(slow.runs) >= 4, timeout=30, what="four refreshes")
    starts = [s for s, _ in slow.runs]
    ends = [e for _, e in slow.runs]
    for i in range(1, len(slow.runs)):
        assert starts[i] >= ends[i - 1], "refreshes overlapped"
        assert starts[i] - ends[i - 1] >= 0.5 - 0.05, f"refresh {i} started {starts[i] - ends[i - 1]:.2f}s after"


def test_refresh_interval_parsing():
    assert parse_interval("5s") == 5 and parse_interval("500ms") == 0.5 and parse_interval("2m") == 120
    assert parse_interval("10") == 10 and parse_interval(None) == 5.0
    for bad in ("0.1s", "fast", "-3s"):
        with pytest.raises(UsageError, match="--refresh"):
            parse_interval(bad)


def test_capview_ui_passes_refresh_to_the_dashboard(monkeypatch, world):
    import capview.tui.app as tui_app
    from capview.cli import main

    got = {}
    monkeypatch.setattr(tui_app, "run_app", lambda path, **kw: got.update(path=path, **kw) or 0)
    assert main(["-c", str(world.config_path), "ui", "--refresh", "2s"]) == 0
    assert got["refresh"] == "2s"


# --------------------------------------------------------------------------- 6. history


async def test_activity_shows_the_hosts_history_and_deploys_from_other_terminals(world):
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.pause(0.3)
        pane = app.main_screen.query_one("#activity")
        assert any("prod-2 rollback v1.2.1 ok by bob@desk downtime 0.29s" in line for line in pane.lines)
        # someone else deploys from their terminal: the engine, not this dashboard
        world.next_tree("v1.4.0")
        world.now += 30
        res = await deploy.release(world.ctx("ops@other-box"), world.config.env("prod"), "v1.4.0", host="prod-1")
        assert res.ok
        before = world.transport.round_trips
        await pilot.press("R")
        await settle(pilot)
        await pilot.pause(0.3)
        assert any("prod-1 release v1.4.0 ok by ops@other-box" in line for line in pane.lines)
        # the records came with the listing: a refresh is one round trip per host
        hosts = [h.name for e in world.config.environments for h in e.hosts]
        assert world.transport.round_trips - before == len(hosts), (world.transport.round_trips - before, hosts)
        assert app.main_screen.query_one(HostList).status["prod-1"].current == "v1.4.0"


async def test_history_screen_lists_outcomes_why_and_plots_durations_and_enter_jumps(world):
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, "prod", None)
        await pilot.press("h")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, HistoryScreen)
        text = screen_text(app)
        assert "rolled back" in text and "health check failed; switched back to v1.1.0" in text
        assert "bob@desk" in text and "deploy duration" in text and "downtime" in text
        plot = screen.query_one("#history-plot")
        versions = [p.version for p in plot.points]
        assert versions == ["v0.9.0", "v1.0.0", "v1.1.0", "v1.2.0", "v1.2.1", "v1.3.0"]
        assert [p.ok for p in plot.points].count(False) == 1  # v1.2.0, rolled back
        # the plot's numbers are the records': the slowest host's phases and downtime
        # (the switch runs on the host: its part of the time taken is the record's unavailable window)
        recs = [r for h in ("prod-1", "prod-2") for r in world.history(h)
                if r.get("version") == "v1.1.0" and r["op"] == "release"]
        point = plot.points[2]
        assert len(recs) == 2 and point.downtime == pytest.approx(max(r["downtime"] for r in recs))
        assert point.took == pytest.approx(max(sum(r["phases"].values()) + r["unavailable"] for r in recs), abs=0.01)
        table = screen.query_one("#history-table")
        row = next(i for i, r in enumerate(reversed(screen.records))
                   if r.get("host") == "prod-1" and r.get("version") == "v1.1.0" and r["op"] == "release")
        table.move_cursor(row=row)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, MainScreen)
        assert app.main_screen.target == Target("prod", "prod-1")
        assert app.main_screen.query_one(ReleasesTable).highlighted.version == "v1.1.0"
        assert not any("no longer" in n for n in notes(app))
