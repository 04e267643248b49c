"""Snapshots of every dashboard screen (pytest-textual-snapshot).

FakeBackend, a frozen clock, 120x36, animations off. Update with
``pytest tests/test_tui_snapshots.py --snapshot-update`` and look at the SVGs
(``tests/__snapshots__/test_tui_snapshots/``) before committing them.
"""

from __future__ import annotations

import time

import pytest

from capview.errors import HostUnreachable
from capview.tui.app import CapviewApp
from capview.tui.backend import FAKE_T0, FakeBackend
from capview.tui.screens.deploy_dialog import DeployRequest
from capview.tui.screens.inspect import FileTree
from capview.tui.widgets.host_list import HostList, Target
from capview.tui.widgets.releases_table import ReleasesTable

SIZE = (120, 36)


def clock() -> float:
    return FAKE_T0


def make_app(**backend_kw) -> CapviewApp:
    backend_kw.setdefault("delay", 0)
    return CapviewApp(FakeBackend(clock, **backend_kw), clock=clock, refresh_interval=3600, animations=False)


async def settle(pilot, rounds: int = 3) -> None:
    for _ in range(rounds):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


async def until(pilot, cond, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        await pilot.pause(0.01)


async def on_host(pilot, env: str, host: str | None, version: str | None = None) -> None:
    await settle(pilot)
    main = pilot.app.main_screen
    main.query_one(HostList).select_target(Target(env, host))
    await pilot.pause()
    if version:
        table = main.query_one(ReleasesTable)
        table.focus()
        table.select_version(version)
    await pilot.pause()


def test_main_host(snap_compare):
    async def run_before(pilot):
        await on_host(pilot, "prod", "prod-1", "v1.2.1")

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_main_environment_with_unreachable_host(snap_compare):
    async def run_before(pilot):
        await on_host(pilot, "prod", None)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_main_locked_legacy_host(snap_compare):
    async def run_before(pilot):
        await on_host(pilot, "legacy", "legacy-1")

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_rollback_confirm(snap_compare):
    async def run_before(pilot):
        await on_host(pilot, "prod", "prod-1", "v1.1.0")
        await pilot.press("r")
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_rollback_confirm_failed_release(snap_compare):
    async def run_before(pilot):
        await on_host(pilot, "prod", "prod-1", "v1.2.0")
        await pilot.press("r")
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_deploy_dialog(snap_compare):
    async def run_before(pilot):
        await on_host(pilot, "prod", None)
        await pilot.press("d")
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_deploy_progress_mid_run(snap_compare):
    app = make_app(unreachable=())
    app.backend.hold("prod-1", "build")

    async def run_before(pilot):
        await settle(pilot)
        op = app.start_release(DeployRequest("prod", "v1.4.0", strategy="rolling"))
        await until(pilot, lambda: op.hosts["prod-1"].phases["build"].state == "running")
        await pilot.pause(0.3)  # the log pane's flush timer

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_deploy_progress_finished_with_health_failure(snap_compare):
    app = make_app(unreachable=())

    async def run_before(pilot):
        await settle(pilot)
        op = app.start_release(DeployRequest("prod", "v1.4.0-bad", host="prod-1"))
        await until(pilot, lambda: not op.running)
        await settle(pilot)
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_prune(snap_compare):
    async def run_before(pilot):
        await on_host(pilot, "prod", "prod-1")
        await pilot.press("p")
        await settle(pilot)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_migrate_plan(snap_compare):
    async def run_before(pilot):
        await on_host(pilot, "legacy", "legacy-1")
        await pilot.press("m")
        await settle(pilot)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_migrate_after_run(snap_compare):
    app = make_app()

    async def run_before(pilot):
        await on_host(pilot, "legacy", "legacy-1")
        await pilot.press("m")
        await settle(pilot)
        await pilot.press("enter")  # confirm dialog
        await pilot.press("enter")  # migrate
        await until(pilot, lambda: app.last_operation is not None and not app.last_operation.running)
        await settle(pilot)
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_inspect_files_tree_and_viewer(snap_compare):
    async def run_before(pilot):
        await on_host(pilot, "prod", "prod-1", "v1.3.0")
        await pilot.press("i")
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        tree = pilot.app.screen.query_one(FileTree)
        config = next(n for n in tree.root.children if n.data and n.data.name == "config")
        config.expand()
        await settle(pilot)
        toml = next(n for n in config.children if n.data and n.data.name == "app.toml")
        tree.focus()
        tree.move_cursor(toml)
        tree.select_node(toml)
        await settle(pilot)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_inspect_manifest(snap_compare):
    async def run_before(pilot):
        await on_host(pilot, "prod", "prod-1", "v1.2.0")
        await pilot.press("i")
        await settle(pilot)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_inspect_health_log(snap_compare):
    async def run_before(pilot):
        await on_host(pilot, "prod", "prod-1", "v1.2.0")
        await pilot.press("i")
        await settle(pilot)
        await pilot.press("4")
        await settle(pilot)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_inspect_compare(snap_compare):
    async def run_before(pilot):
        await on_host(pilot, "prod", "prod-1", "v1.3.0")
        await pilot.press("i")
        await settle(pilot)
        await pilot.press("5")
        await settle(pilot)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_help(snap_compare):
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_error_modal(snap_compare):
    app = make_app()

    async def run_before(pilot):
        await settle(pilot)
        app.show_error("rollback prod/prod-1", HostUnreachable(
            "prod-1: connection lost (asyncssh: Connection lost) while running the switch script",
            hint="check the host and run `capview releases prod`; the switch is atomic, so the host is on "
                 "either the old or the new release"))
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_remote_text_is_inert(snap_compare):
    async def run_before(pilot):
        await on_host(pilot, "prod", "prod-1", "v1.2.1")

    assert snap_compare(make_app(weird=True), terminal_size=SIZE, run_before=run_before)
