"""Pilot tests of the dashboard on the real engine (tests/tui_world.py), issue 19 items 7-12:
previous release, progress screen, deploy validation, migrate, inspect, keys and markers;
and the operations' safety (cancel before / refused after the switch), in-place refresh,
errors. Operations are checked on the hosts' files."""

from __future__ import annotations

import re

import pytest
from textual.binding import Binding
from textual.widgets import Input, TabbedContent

from capview.tui.app import CapviewApp
from capview.tui.backend import EngineBackend
from capview.tui.commands import CapviewCommands
from capview.tui.screens.confirm import ConfirmScreen
from capview.tui.screens.deploy_dialog import DeployDialog, DeployRequest
from capview.tui.screens.deploy_progress import ProgressScreen
from capview.tui.screens.error import ErrorScreen
from capview.tui.screens.help import HelpScreen
from capview.tui.screens.inspect import FileTree, InspectScreen
from capview.tui.screens.main import MainScreen
from capview.tui.screens.migrate import MigrateScreen
from capview.tui.screens.prune import PruneScreen
from capview.tui.screens.viewer import TextScreen
from capview.tui.widgets.host_list import HostList, Target
from capview.tui.widgets.log_pane import LogPane
from tui_pilot import SIZE, footer, footer_text, notes, screen_text, select, settle, until
from tui_world import HOSTILE, make_hostile, world  # noqa: F401


def detail(app) -> str:
    return str(app.main_screen.query_one("#host-detail").render())


# --------------------------------------------------------------------------- 7. previous release


async def test_previous_release_is_marked_and_a_rollback_keeps_previous_and_says_how_to_undo(world):
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        table = await select(pilot, "prod", "prod-1", "v1.2.1")
        assert table.get_cell("v1.2.1", "mark").plain.strip() == "◦"  # the CLI's marker too
        assert table.get_cell("v1.3.0", "mark").plain.strip() == "●"
        assert table.get_cell("v1.0.0", "mark").plain.strip() == "⚑"
        assert "previous v1.2.1" in detail(app)
        # prod-2 was rolled back (seeded): its panel says from what, and how to undo
        await select(pilot, "prod", "prod-2")
        text = detail(app)
        assert "previous v1.1.0" in text and "previous none" not in text
        assert "rolled back from v1.3.0" in text and "undo: r on v1.3.0" in text
        # and a rollback made here: prod-1 to v1.2.1
        await select(pilot, "prod", "prod-1", "v1.2.1")
        await pilot.press("r", "y")
        await until(pilot, lambda: app.last_operation is not None and not app.last_operation.running)
        await pilot.press("escape")
        await settle(pilot)
        assert world.current("prod-1") == "v1.2.1"
        text = detail(app)
        assert "previous v1.1.0" in text and "rolled back from v1.3.0" in text and "undo: r on v1.3.0" in text
        assert table.get_cell("v1.2.1", "mark").plain.strip() == "●"
        assert table.get_cell("v1.1.0", "mark").plain.strip() == "◦"


# --------------------------------------------------------------------------- 8. progress screen


async def test_progress_after_a_health_failure_words_plurals_full_message_no_cancel(world):
    world.next_tree("v1.4.0", healthy=False)
    app = world.app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        world.hold("build")
        op = app.start_release(DeployRequest("prod", "v1.4.0", host="prod-1"))
        await until(pilot, lambda: op.hosts["prod-1"].phases["build"].state == "running", what="build")
        assert "c Cancel" in (await footer(pilot)) and "Back (keeps running)" in (await footer(pilot))
        world.release_gate("build")
        await until(pilot, lambda: not op.running, what="the release")
        await settle(pilot)
        assert world.current("prod-1") == "v1.3.0" and world.release_json("prod-1", "v1.4.0")["state"] == "failed"
        text = screen_text(app)
        assert "rolled back" in text and "rolled_back" not in text
        message = op.hosts["prod-1"].message
        assert message and " ".join(message.split()) in " ".join(
            line.strip(" │") for line in text.splitlines())  # wrapped at 80 columns, never cut
        bar = await footer(pilot)
        assert "c Cancel" not in bar and "esc Back" in bar and "keeps running" not in bar  # it has finished
        await pilot.press("c")
        assert not any("already finished" in n for n in notes(app))  # the key is gone, not refused
        assert "build" in text  # a build is configured here
        assert any("6/6 files" in str(r.query_one(".upload-stats").render()) for r in app.screen.query("UploadRow"))


async def test_no_build_column_when_no_build_is_configured_and_plurals(world):
    world.set_config(build=False)
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        op = app.start_release(DeployRequest("prod", "v1.4.0", host="prod-1"))
        await until(pilot, lambda: not op.running, what="the release")
        await settle(pilot)
        assert op.state == "ok", op.summary()
        assert "build" not in op.phase_names
        table = app.screen.query_one("#phases")
        assert "build" not in [str(c.label) for c in table.columns.values()]
        assert op.summary() == "release v1.4.0 → prod/prod-1: done on 1 host"
        assert not (world.dp("prod-1") / "releases" / "v1.4.0" / ".capview" / "build.log").exists()


async def test_cancel_before_the_switch_leaves_the_host_as_it_was(world):
    world.hold("build")
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        op = app.start_release(DeployRequest("prod", "v1.4.0", host="prod-1"))
        await until(pilot, lambda: op.hosts["prod-1"].phases["build"].state == "running", what="build")
        assert (world.dp("prod-1") / "releases" / "v1.4.0").is_dir()
        await pilot.press("c")
        await until(pilot, lambda: not op.running, what="cancel")
        await settle(pilot)
        assert op.state == "cancelled"
        meta = world.release_json("prod-1", "v1.4.0")  # kept for inspection, never live
        assert meta["state"] == "failed" and meta["error"] == "cancelled by the user"
        assert not (world.dp("prod-1") / ".capview" / "lock").exists()
        assert world.current("prod-1") == "v1.3.0"
        assert any("cancelled before the switch" in n for n in notes(app))
    world.release_gate("build")


async def test_cancel_is_refused_after_the_switch_and_the_deploy_keeps_running_off_screen(world):
    world.hold("stop")  # the service stop (inside the switch) waits on the gate
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        op = app.start_release(DeployRequest("prod", "v1.4.0", host="prod-1"))
        await until(pilot, lambda: op.hosts["prod-1"].phases["switch"].state == "running", what="switch")
        await pilot.press("c")
        assert op.running and not op.worker.is_cancelled
        refused = [n for n in notes(app) if "already begun switching" in n]
        assert refused and "prod-1" in refused[0] and "Roll back with r" in refused[0]
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen) and op.worker.is_running
        world.release_gate("stop")
        await until(pilot, lambda: not op.running, what="the release")
        assert op.state == "ok" and world.current("prod-1") == "v1.4.0"
        await pilot.press("o")
        assert isinstance(app.screen, ProgressScreen) and app.screen.op is op


# --------------------------------------------------------------------------- 9. deploy dialog


async def test_deploy_dialog_refuses_an_existing_version_before_anything_runs(world):
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, "prod", None)
        await pilot.press("d")
        assert isinstance(app.screen, DeployDialog)
        scripts_before = len(world.transport.scripts)
        app.screen.query_one("#version", Input).value = "v1.2.1"
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, DeployDialog) and app.last_operation is None
        error = str(app.screen.query_one("#version-error").render())
        assert "v1.2.1 already exists on prod-1, prod-2" in error and "--" not in error
        assert len(world.transport.scripts) == scripts_before  # no lock taken, nothing sent
        app.screen.query_one("#version", Input).value = "../etc"
        await pilot.press("enter")
        assert "invalid release name" in str(app.screen.query_one("#version-error").render())
        app.screen.query_one("#version", Input).value = "v2.0.0"
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ProgressScreen)
        op = app.last_operation
        await until(pilot, lambda: not op.running, what="release")
        assert op.state == "ok" and world.current("prod-1") == world.current("prod-2") == "v2.0.0"


# --------------------------------------------------------------------------- 10. migrate


async def test_migrate_dry_run_shows_steps_not_shell_then_migrates_with_real_columns(world):
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await app.unlock(Target("legacy", "legacy-1"), force=True)  # the stale lock seeded on it
        await settle(pilot)
        await select(pilot, "legacy", "legacy-1")
        await pilot.press("m")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, MigrateScreen)
        assert "w Rewrite unit" not in (await footer(pilot))  # a command service has no unit to rewrite
        assert screen.check_action("rewrite_unit", ()) is False
        assert "1. stop the service (command)" in screen_text(app)
        await pilot.press("n")
        await until(pilot, lambda: screen.op is not None and not screen.op.running, what="dry run")
        await settle(pilot)
        await pilot.pause(0.3)
        log = "\n".join(screen.query_one(LogPane).lines)
        assert "@@cv" not in log and "set -eu" not in log and "dry run: the switch script" in log
        assert (world.dp("legacy-1") / "app.py").exists()  # nothing moved
        await pilot.press("s")
        assert isinstance(app.screen, TextScreen) and "@@cv" in str(app.screen.body)  # the script, on request
        await pilot.press("escape")
        screen.query_one("#migrate-plans").focus()  # enter works whatever has focus
        await pilot.press("enter")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await until(pilot, lambda: screen.op is not None and not screen.op.dry_run and not screen.op.running,
                    what="migrate")
        await settle(pilot)
        assert (world.dp("legacy-1") / "current").is_symlink()
        assert (world.dp("legacy-1") / "shared" / "data" / "shop.db").exists()
        table = screen.query_one("#migrate-phases")
        # the phases the real transaction emits (no FakeBackend detect/move/verify), as columns
        op = screen.op
        assert {"switch", "health"} <= set(op.phase_names) <= {"switch", "health", "cleanup"}, op.phase_names
        await until(pilot, lambda: [str(c.label) for c in table.columns.values()]
                    == ["host", *op.phase_names, "downtime", "result"], what="the phase columns")
        assert table.get_cell("legacy-1", "switch").plain.startswith("✓")
        text = screen_text(app)
        assert re.search(r"✓\s+1\. stop the service", text) and "integrity_check ok" in text, text


# --------------------------------------------------------------------------- 11. inspect


async def test_inspect_manifest_is_the_file_list_phases_a_table_units_everywhere(world):
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, "prod", "prod-1", "v1.2.0")
        await pilot.press("i")
        await settle(pilot)
        assert isinstance(app.screen, InspectScreen)
        await pilot.press("2")
        await settle(pilot)
        table = app.screen.query_one("#manifest-table")
        paths = [table.get_cell_at((i, 3)).plain for i in range(table.row_count)]
        assert {"app.py", "static/app.js", "config/app.toml", "templates/index.html"} <= set(paths)
        assert "58.6 KiB" in screen_text(app)  # static/app.js, 60,012 bytes, in binary units
        await pilot.press("3")
        await settle(pilot)
        text = screen_text(app)
        assert "phase" in text and "total" in text and '"build"' not in text  # a table, not raw JSON
        assert "downtime       0.44s" in text or "0.44s" in text.split("downtime", 1)[1][:30]


async def test_health_log_opens_at_its_end(world):
    lines = "".join(f"request {i}: 502 Bad Gateway\n" for i in range(300)) + "FINAL: no such column: orders.coupon\n"
    world.next_tree("v1.4.0", healthy=False, extra_files={"app.log": lines.encode()})
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        op = app.start_release(DeployRequest("prod", "v1.4.0", host="prod-1"))
        await until(pilot, lambda: not op.running, what="release")
        await pilot.press("escape")
        await settle(pilot)
        await select(pilot, "prod", "prod-1", "v1.4.0")
        await pilot.press("i")
        await settle(pilot)
        await pilot.press("5")
        await settle(pilot)
        await pilot.pause(0.2)
        log = app.screen.query_one("#health-log")
        assert log.max_scroll_y > 0 and log.scroll_y == log.max_scroll_y
        assert "FINAL: no such column" in screen_text(app)


async def test_compare_enter_on_a_changed_file_shows_its_diff_fetched_in_one_script(world):
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, "prod", "prod-1", "v1.3.0")
        await pilot.press("i")
        await settle(pilot)
        await pilot.press("6")
        await settle(pilot)
        table = app.screen.query_one("#compare-table")
        assert table.has_focus  # 6 puts the focus on the changes, where enter means "diff"
        assert table.get_cell("app.py", "change").plain == "changed"
        table.move_cursor(row=table.get_row_index("app.py"))
        before = len(world.transport.scripts)
        await pilot.press("enter")
        await settle(pilot)
        assert len(world.transport.scripts) == before + 1  # engine.inspect.read_pair: both sides at once
        assert isinstance(app.screen, TextScreen)
        text = screen_text(app)
        assert '-VERSION = "v1.2.1"' in text and '+VERSION = "v1.3.0"' in text and "+1 line" in text


# --------------------------------------------------------------------------- 12. keys and markers


async def test_j_k_g_G_in_the_lists(world):
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        table = await select(pilot, "prod", "prod-1", "v1.3.0")
        await pilot.press("j")
        assert table.highlighted.version == "v1.2.1"
        await pilot.press("G")
        assert table.highlighted.version == "v0.9.0"
        await pilot.press("k")
        assert table.highlighted.version == "v1.0.0"
        await pilot.press("g")
        assert table.highlighted.version == "v1.3.0"
        hosts = app.main_screen.query_one(HostList)
        hosts.focus()
        await pilot.press("G")
        await settle(pilot)
        assert app.main_screen.target.host == "legacy-1"
        await pilot.press("k")
        await settle(pilot)
        assert app.main_screen.target.host is None and app.main_screen.target.env == "legacy"


async def test_help_has_navigation_the_legend_and_how_to_close(world):
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        scroll = app.screen.query_one("#help-scroll")
        text = ""
        for y in range(0, scroll.max_scroll_y + 40, 30):
            scroll.scroll_to(y=y, animate=False)
            await pilot.pause()
            text += screen_text(app)
        for word in ("Navigation", "j / k", "g / G", "Markers", "◐", "◦", "⚑", "(●) ( )", "unique",
                     "esc, q or ?"):
            assert word in text, word
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)


async def test_footer_offers_only_what_applies(world):
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, "prod", "prod-1", "v1.3.0")
        bar = await footer(pilot)
        assert "m Migrate" not in bar and "u Unlock" not in bar and "r Rollback" in bar
        await select(pilot, "legacy", "legacy-1")
        await until(pilot, lambda: "m Migrate" in footer_text(app), what="the footer of legacy-1")
        bar = footer_text(app)
        assert "m Migrate" in bar and "u Unlock" in bar
        assert "r Rollback" not in bar and "i Inspect" not in bar
        names = [t for t, _, _ in CapviewCommands(app.screen)._commands()]
        assert any(t.startswith("Migrate") for t in names) and not any(t.startswith("Rollback") for t in names)


async def test_radio_buttons_and_checkboxes_read_without_colour(world):
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("d")
        text = screen_text(app)
        assert "(●)rolling" in text.replace(" rolling", "rolling") and "( )parallel" in text.replace(" parallel",
                                                                                                     "parallel")
        assert "[ ]" in text
        app.screen.query_one("#dry-run").value = True
        await pilot.pause()
        assert "[✓]" in screen_text(app)


async def test_pin_and_unpin_from_the_main_screen(world):
    marker = world.dp("prod-1") / "releases" / "v1.1.0" / ".capview" / "pinned"
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        table = await select(pilot, "prod", "prod-1", "v1.1.0")
        assert "t Pin" in (await footer(pilot))
        await pilot.press("t")
        await settle(pilot)
        assert marker.exists()
        assert table.get_cell("v1.1.0", "mark").plain.strip() == "⚑" and "t Unpin" in (await footer(pilot))
        await pilot.press("t")
        await settle(pilot)
        assert not marker.exists() and "t Pin" in (await footer(pilot))


# --------------------------------------------------------------------------- refresh, errors, text


async def test_refresh_updates_cells_in_place_and_keeps_the_cursor(world):
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        table = await select(pilot, "prod", "prod-1", "v1.1.0")
        (world.dp("prod-1") / "releases" / "v1.1.0" / ".capview" / "pinned").touch()  # someone else pins it
        before = table.cell_updates
        await pilot.press("R")
        await settle(pilot)
        assert table.highlighted.version == "v1.1.0"
        assert table.cell_updates == before + 1  # only the mark cell changed
        assert table.get_cell("v1.1.0", "mark").plain.strip() == "⚑"


async def test_a_worker_error_opens_the_error_modal_and_the_app_survives(world):
    class Broken(EngineBackend):
        async def plan_prune(self, env, *, keep=None, host=None):
            raise ConnectionResetError("Connection lost")

    app = world.app(backend=Broken(config=world.config, transport=world.transport, clock=world.clock))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, "prod", "prod-1")
        await pilot.press("p")
        await settle(pilot)
        assert isinstance(app.screen, ErrorScreen)
        assert "ConnectionResetError: Connection lost" in app.screen.message
        await pilot.press("escape")
        assert isinstance(app.screen, PruneScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)


async def test_a_host_going_down_is_marked_unreachable_without_a_modal(world):
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app.status["prod-2"].reachable
        world.transport.take_down("prod-2")
        await pilot.press("R")
        await settle(pilot)
        assert not app.status["prod-2"].reachable and "Connection timed out" in app.status["prod-2"].error
        assert isinstance(app.screen, MainScreen)
        assert any("Connection timed out" in n for n in notes(app))
        assert "✗ prod-2  unreachable" in screen_text(app)


async def test_remote_text_with_markup_and_escape_sequences_renders_literally(world):
    await make_hostile(world)
    world.next_tree("v1.4.0", extra_files={"odd\x1b[31m.txt": b"\x1b]52;c;cHduZWQ=\x07[bold]x[/bold]\n"})
    app = world.app(backend=world.backend(operator=HOSTILE))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, "prod", "prod-1")
        assert "\x1b" not in screen_text(app)
        panel = detail(app).replace("\n", "")
        assert "[bold]mallory[/bold]\\x1b[31m@evil\\x1b]52;c;cHduZWQ=\\x07" in panel  # shown, never obeyed
        await app.unlock(Target("prod", "prod-1"), force=True)
        op = app.start_release(DeployRequest("prod", "v1.4.0", host="prod-1"))
        await until(pilot, lambda: not op.running, what="release")
        await pilot.press("escape")
        await settle(pilot)
        table = await select(pilot, "prod", "prod-1", "v1.4.0")
        cell = table.get_cell("v1.4.0", "operator")
        assert "\x1b" not in cell.plain and not any("bold" in str(s.style) for s in cell.spans)
        await pilot.press("i")
        await settle(pilot)
        tree = app.screen.query_one(FileTree)
        odd = next(n for n in tree.root.children if n.data and n.data.name.startswith("odd"))
        tree.select_node(odd)
        await settle(pilot)
        text = screen_text(app)
        assert "\x1b" not in text and "odd\\x1b[31m.txt" in text and "\\x1b]52;c;" in text


async def test_command_palette_and_keymap(world):
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, "prod", "prod-1", "v1.2.1")
        titles = [t for t, _, _ in CapviewCommands(app.screen)._commands()]
        for word in ("Deploy", "Rollback", "Prune", "Inspect", "History", "Pin", "Filter", "Refresh",
                     "Help", "Quit"):
            assert any(t.startswith(word) for t in titles), (word, titles)
        ids = {b.id for b in MainScreen.BINDINGS if isinstance(b, Binding)}
        assert {"capview.deploy", "capview.rollback", "capview.history", "capview.pin", "capview.quit"} <= ids
        app.set_keymap({"capview.deploy": "D"})
        await pilot.pause()
        await pilot.press("D")
        assert isinstance(app.screen, DeployDialog)


async def test_tab_keys_switch_inspect_tabs_with_the_file_tree_focused(world):
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, "prod", "prod-1", "v1.3.0")
        await pilot.press("i")
        await settle(pilot)
        tabs = app.screen.query_one(TabbedContent)
        app.screen.query_one(FileTree).focus()
        for key, tab in (("6", "tab-compare"), ("5", "tab-health"), ("2", "tab-manifest"), ("1", "tab-files")):
            await pilot.press(key)
            await settle(pilot)
            assert tabs.active == tab, (key, tabs.active)


@pytest.mark.parametrize("size", [(80, 24), (160, 45)])
async def test_app_opens_and_quits(world, size):
    app: CapviewApp = world.app()
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        await pilot.press("q")
    assert app.return_value == 0


# --------------------------------------------------------------------------- a flood of log lines


async def test_a_build_printing_100k_lines_is_kept_bounded_and_keys_still_work(world):
    """Functional only (the latency numbers are benchmarks/tui_bench.py's): every line reaches
    the operation's log, the pane keeps at most max_log_lines, and keys pressed during the flood
    are handled before it ends."""
    lines = 100_000
    world.next_tree("v1.4.0")
    (world.root / "src" / "next" / "build.sh").write_text(f"seq -f 'build: compiling module %g/{lines}' 1 {lines}\n")
    app = world.app(max_log_lines=2000)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        op = app.start_release(DeployRequest("prod", "v1.4.0", host="prod-1"))
        await until(pilot, lambda: op.hosts["prod-1"].log.total > 1000, timeout=120, what="the flood")
        pressed_during = 0
        while op.running and pressed_during < 5:
            await pilot.press("b")  # back to the main screen and
            await pilot.press("o")  # into the progress screen again, mid-flood
            pressed_during += 1
        await until(pilot, lambda: not op.running, timeout=300, what="the release")
        await pilot.pause(0.3)
        assert op.state == "ok", op.summary()
        assert op.hosts["prod-1"].log.total >= lines
        pane = app.screen.query_one(LogPane)
        assert len(pane.lines) <= 2000 and pane.lines[-1].startswith("== ok")
        assert isinstance(app.screen, ProgressScreen) and pressed_during >= 1
        build_log = world.dp("prod-1") / "releases" / "v1.4.0" / ".capview" / "build.log"
        assert f"build: compiling module {lines}/{lines}" in build_log.read_text()
