"""Snapshots of every dashboard screen at 80x24 and 160x45 (pytest-textual-snapshot).

The real engine over LocalTransport on the seeded world of tests/tui_world.py (frozen
clocks, animations off); operations shown mid-run are real ones held by a gate file.
Update with ``pytest tests/test_tui_snapshots.py --snapshot-update`` and look at the
SVGs (``tests/__snapshots__/test_tui_snapshots/``) before committing them.
"""

from __future__ import annotations

import asyncio

import pytest

from capview.errors import HostUnreachable
from capview.tui.screens.deploy_dialog import DeployRequest
from capview.tui.screens.inspect import FileTree
from capview.tui.widgets.host_list import HostList, Target
from capview.tui.widgets.releases_table import ReleasesTable
from tui_pilot import settle, until
from tui_world import make_hostile, tamper, world  # noqa: F401  (world: the fixture)

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((160, 45), id="160x45")]




async def on_host(pilot, env: str, host: str | None, version: str | None = None) -> None:
    await settle(pilot)
    main = pilot.app.main_screen
    main.query_one(HostList).select_target(Target(env, host))
    await pilot.pause()
    if version:
        table = main.query_one(ReleasesTable)
        table.focus()
        table.select_version(version)
    await settle(pilot)


async def open_inspect(pilot, version: str, tab: str | None = None) -> None:
    await on_host(pilot, "prod", "prod-1", version)
    await pilot.press("i")
    await settle(pilot)
    if tab:
        await pilot.press(tab)
        await settle(pilot)
    await pilot.pause(0.2)


# --------------------------------------------------------------------------- main screen


@pytest.mark.parametrize("size", SIZES)
def test_main_host(snap_compare, world, size):
    async def run_before(pilot):
        await on_host(pilot, "prod", "prod-1", "v1.2.1")

    assert snap_compare(world.app(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_main_environment_split(snap_compare, world, size):
    async def run_before(pilot):
        await on_host(pilot, "prod", None)

    assert snap_compare(world.app(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_main_environment_with_unreachable_host(snap_compare, world, size):
    world.transport.take_down("prod-2")

    async def run_before(pilot):
        await on_host(pilot, "prod", None)

    assert snap_compare(world.app(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_main_locked_legacy_host(snap_compare, world, size):
    async def run_before(pilot):
        await on_host(pilot, "legacy", "legacy-1")

    assert snap_compare(world.app(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_main_filter(snap_compare, world, size):
    async def run_before(pilot):
        await on_host(pilot, "prod", "prod-1", "v1.3.0")
        await pilot.press("slash", *"v1.2")
        await settle(pilot)

    assert snap_compare(world.app(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_remote_text_is_inert(snap_compare, world, size):
    asyncio.run(make_hostile(world))

    async def run_before(pilot):
        await on_host(pilot, "prod", "prod-1", "v1.2.1")

    assert snap_compare(world.app(), terminal_size=size, run_before=run_before)


# --------------------------------------------------------------------------- dialogs


@pytest.mark.parametrize("size", SIZES)
def test_rollback_confirm(snap_compare, world, size):
    async def run_before(pilot):
        await on_host(pilot, "prod", "prod-1", "v1.1.0")
        await pilot.press("r")
        await pilot.pause()

    assert snap_compare(world.app(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_rollback_confirm_failed_release_needs_the_version_typed(snap_compare, world, size):
    async def run_before(pilot):
        await on_host(pilot, "prod", None, "v1.2.0")
        await pilot.press("r")
        await pilot.pause()

    assert snap_compare(world.app(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_force_unlock_needs_typing(snap_compare, world, size):
    async def run_before(pilot):
        await on_host(pilot, "legacy", "legacy-1")
        await pilot.press("u")
        await pilot.pause()

    assert snap_compare(world.app(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_deploy_dialog_refuses_an_existing_version(snap_compare, world, size):
    async def run_before(pilot):
        await on_host(pilot, "prod", None)
        await pilot.press("d")
        await pilot.pause()
        pilot.app.screen.query_one("#version").value = "v1.3.0"
        await pilot.press("enter")
        await pilot.pause()

    assert snap_compare(world.app(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_help(snap_compare, world, size):
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()

    assert snap_compare(world.app(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_error_modal(snap_compare, world, size):
    async def run_before(pilot):
        await settle(pilot)
        pilot.app.show_error("rollback prod/prod-1", HostUnreachable(
            "prod-1: connection lost (asyncssh: Connection lost) while running the switch script",
            hint="check the host and run `capview releases prod`; the switch is atomic, so the host is on "
                 "either the old or the new release"))
        await settle(pilot)  # the activity pane under the dialog has its error line

    assert snap_compare(world.app(), terminal_size=size, run_before=run_before)


# --------------------------------------------------------------------------- operations (real, held)


@pytest.mark.parametrize("size", SIZES)
def test_deploy_progress_mid_run(snap_compare, world, size):
    world.hold("build")
    app = world.app()

    async def run_before(pilot):
        await settle(pilot)
        op = app.start_release(DeployRequest("prod", "v1.4.0", host="prod-1"))  # one host: a fleet's stage 1 runs hosts at once, and their interleaving would move the frozen phase times
        await until(pilot, lambda: op.hosts["prod-1"].phases["build"].state == "running")
        await pilot.pause(0.3)  # the log pane's flush timer

    try:
        assert snap_compare(app, terminal_size=size, run_before=run_before)
    finally:
        world.release_gate("build")


@pytest.mark.parametrize("size", SIZES)
def test_deploy_progress_finished_with_health_failure(snap_compare, world, size):
    world.next_tree("v1.4.0", healthy=False)
    app = world.app()

    async def run_before(pilot):
        await settle(pilot)
        op = app.start_release(DeployRequest("prod", "v1.4.0", host="prod-1"))
        await until(pilot, lambda: not op.running)
        await settle(pilot)
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_prune(snap_compare, world, size):
    async def run_before(pilot):
        await on_host(pilot, "prod", "prod-1")
        await pilot.press("p")
        await settle(pilot)

    assert snap_compare(world.app(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_prune_confirm(snap_compare, world, size):
    async def run_before(pilot):
        await on_host(pilot, "prod", "prod-1")
        await pilot.press("p")
        await settle(pilot)
        await pilot.press("y")
        await pilot.pause()

    assert snap_compare(world.app(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_migrate_plan(snap_compare, world, size):
    async def run_before(pilot):
        await on_host(pilot, "legacy", "legacy-1")
        await pilot.press("m")
        await settle(pilot)

    assert snap_compare(world.app(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_migrate_after_run(snap_compare, world, size):
    app = world.app()

    async def run_before(pilot):
        await settle(pilot)
        await app.unlock(Target("legacy", "legacy-1"), force=True)  # the stale lock seeded on it
        await pilot.pause()
        app.clear_notifications()  # its toast would still show, or not, depending on how long migrate takes
        await on_host(pilot, "legacy", "legacy-1")
        await pilot.press("m")
        await settle(pilot)
        await pilot.press("enter")  # the confirm dialog
        await pilot.press("y")  # migrate
        await until(pilot, lambda: app.last_operation is not None and not app.last_operation.running)
        await settle(pilot)
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


# --------------------------------------------------------------------------- inspect, history


@pytest.mark.parametrize("size", SIZES)
def test_inspect_files_tree_and_viewer(snap_compare, world, size):
    async def run_before(pilot):
        await open_inspect(pilot, "v1.3.0")
        tree = pilot.app.screen.query_one(FileTree)
        config = next(n for n in tree.root.children if n.data and n.data.name == "config")
        config.expand()
        await settle(pilot)
        toml = next(n for n in config.children if n.data and n.data.name == "app.toml")
        tree.move_cursor(toml)
        tree.select_node(toml)
        await settle(pilot)

    assert snap_compare(world.app(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_inspect_manifest(snap_compare, world, size):
    async def run_before(pilot):
        await open_inspect(pilot, "v1.3.0", "2")

    assert snap_compare(world.app(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_inspect_metadata(snap_compare, world, size):
    async def run_before(pilot):
        await open_inspect(pilot, "v1.2.0", "3")

    assert snap_compare(world.app(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_inspect_health_log(snap_compare, world, size):
    async def run_before(pilot):
        await open_inspect(pilot, "v1.2.0", "5")

    assert snap_compare(world.app(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_inspect_compare(snap_compare, world, size):
    async def run_before(pilot):
        await open_inspect(pilot, "v1.3.0", "6")

    assert snap_compare(world.app(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_inspect_diff(snap_compare, world, size):
    async def run_before(pilot):
        await open_inspect(pilot, "v1.3.0", "6")
        table = pilot.app.screen.query_one("#compare-table")
        table.focus()
        table.move_cursor(row=table.get_row_index("app.py"))
        await pilot.press("enter")
        await settle(pilot)
        await pilot.pause(0.2)

    assert snap_compare(world.app(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_history_with_plot(snap_compare, world, size):
    async def run_before(pilot):
        await on_host(pilot, "prod", None)
        await pilot.press("h")
        await settle(pilot)

    assert snap_compare(world.app(), terminal_size=size, run_before=run_before)


# --------------------------------------------------------------------------- service log, restart, verify


@pytest.mark.parametrize("size", SIZES)
def test_logs_following(snap_compare, world, size):
    with open(world.dp("prod-1") / "current" / "app.log", "a") as f:
        f.write("GET /cart 200 12ms\nPOST /order 201 48ms\n\x1b[2J\x1b[31mred\x1b]52;c;cHduZWQ=\x07 \u202eevil\n")
    app = world.app()

    async def run_before(pilot):
        await on_host(pilot, "prod", "prod-1")
        await pilot.press("l")
        # every line written by the pane's flush timer, and the title saying so (a loaded machine is slow)
        await until(pilot, lambda: app.screen.stream is not None and len(app.screen.pane.lines) >= 4
                    and app.screen.worker.is_running)
        app.screen._title()
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=run_before)


def test_logs_search(snap_compare, world):
    """Issue 16: `/` in the service log: the bar at the bottom, every match highlighted, the
    current one brighter, "match i of n", following paused and the title saying so."""
    with open(world.dp("prod-1") / "current" / "app.log", "a") as f:
        for i in range(1, 41):
            f.write(f"GET /item/{i} 200 3ms\n" if i % 7 else f"POST /order/{i} 500 boom \x1b[31mred\n")
    app = world.app()

    async def run_before(pilot):
        await on_host(pilot, "prod", "prod-1")
        await pilot.press("l")
        await until(pilot, lambda: app.screen.stream is not None and len(app.screen.pane.lines) >= 41
                    and app.screen.worker.is_running)
        await pilot.press("slash", *"Order", "enter", "n")
        app.screen._title()
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_restart_confirm(snap_compare, world, size):
    async def run_before(pilot):
        await on_host(pilot, "prod", None)
        await pilot.press("s")
        await pilot.pause()

    assert snap_compare(world.app(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_restart_done(snap_compare, world, size):
    app = world.app()

    async def run_before(pilot):
        await settle(pilot)
        op = app.start_restart(Target("prod", "prod-1"))
        await until(pilot, lambda: not op.running, timeout=60)
        await settle(pilot)
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_inspect_verify_tampered(snap_compare, world, size):
    tamper(world)

    async def run_before(pilot):
        await open_inspect(pilot, "v1.3.0")
        await pilot.press("v")
        await settle(pilot)

    assert snap_compare(world.app(), terminal_size=size, run_before=run_before)
