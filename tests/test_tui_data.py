"""The dashboard's rollback of code AND data (issue 18): with ``data.sqlite`` configured,
the rollback dialog shows the engine's data plan in the CLI's words, ``d`` restores the
target's snapshot (typed version, red dialog), and Cancel stays the default. Real engine
over LocalTransport (tests/tui_world.py), real sqlite3 snapshots."""

from __future__ import annotations

import sqlite3

from textual.widgets import Button, Input

from capview.engine import deploy
from capview.tui.screens.deploy_progress import ProgressScreen
from capview.tui.screens.rollback_dialog import RollbackScreen
from tui_pilot import SIZE, screen_text, select, settle, until
from tui_world import world  # noqa: F401

DB = "shop.db"


def rows(world, host: str = "prod-1") -> int:
    db = sqlite3.connect(world.dp(host) / "shared" / "data" / DB)
    try:
        return db.execute("SELECT count(*) FROM orders").fetchone()[0]
    finally:
        db.close()


def write_rows(world, n: int, host: str = "prod-1") -> None:
    db = sqlite3.connect(world.dp(host) / "shared" / "data" / DB)
    with db:
        db.execute("CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, total INTEGER)")
        db.executemany("INSERT INTO orders (total) VALUES (?)", [(i,) for i in range(n)])
    db.close()


async def with_snapshot(world) -> None:
    """data.sqlite on; 5 rows; v1.4.0 deployed (its start snapshots v1.3.0's data); 7 rows more."""
    cfg = world.config_path
    cfg.write_text(cfg.read_text() + "data:\n  sqlite: [data/shop.db]\n")
    write_rows(world, 5)
    prod = world.config.env("prod")
    res = await deploy.release(world.ctx(), prod, "v1.4.0", host="prod-1", source=world.root / "src" / "next")
    assert res.ok, [h.message for h in res.hosts]
    write_rows(world, 7)
    assert rows(world) == 12


async def open_rollback(pilot, app, version: str) -> RollbackScreen:
    await select(pilot, "prod", "prod-1", version)
    await pilot.press("r")
    dialog = app.screen
    assert isinstance(dialog, RollbackScreen), type(dialog)
    await until(pilot, lambda: dialog.plans is not None, what="the data plan")
    await pilot.pause()
    return dialog


async def test_rollback_with_restore_data_brings_back_the_rows_the_target_left(world):
    await with_snapshot(world)
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        dialog = await open_rollback(pilot, app, "v1.3.0")
        assert isinstance(dialog.focused, Button) and dialog.focused.id == "no"
        text = screen_text(app)
        assert "kept as it is now (d: restore" in text and "d: restore data" in text, text
        await pilot.press("d")
        await pilot.pause()
        text = screen_text(app)
        assert dialog.restore_data and "RESTORE the target's snapshot" in text
        assert "restoring the data v1.3.0 left" in text and "12 rows now, 5 then (7 rows written since are lost)" in text, text
        assert isinstance(dialog.focused, Input) and dialog.query_one("#yes", Button).disabled  # type to confirm
        await pilot.press("y")  # not a shortcut while a word must be typed: it goes into the box
        assert app.screen is dialog and rows(world) == 12
        await pilot.press("tab", "d")  # out of the box, d again: the data stays, y works again
        await pilot.pause()
        assert not dialog.restore_data and not dialog.query_one("#yes", Button).disabled
        await pilot.press("d")
        await pilot.pause()
        for ch in "v1.3.0":
            await pilot.press(ch)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ProgressScreen), what="progress")
        op = app.screen.op
        await until(pilot, lambda: op.state != "running", timeout=90, what="rollback")
        assert op.state == "ok", op.summary()
        assert "with its data" in op.title
    assert world.current("prod-1") == "v1.3.0"
    assert rows(world) == 5  # the data v1.3.0 left
    assert (world.dp("prod-1") / "releases" / "v1.4.0").is_dir()


async def test_rollback_keeps_the_data_by_default_and_offers_no_restore_without_a_snapshot(world):
    await with_snapshot(world)
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        dialog = await open_rollback(pilot, app, "v1.2.1")  # its data was never snapshotted
        assert "no snapshot of the target to restore" in screen_text(app)
        assert not dialog.restorable
        await pilot.press("d")  # not offered: nothing changes
        await pilot.pause()
        assert not dialog.restore_data and dialog.type_to_confirm is None
        await pilot.press("escape")
        await settle(pilot)
        dialog = await open_rollback(pilot, app, "v1.3.0")
        await pilot.press("y")  # confirm without d: code only
        await until(pilot, lambda: isinstance(app.screen, ProgressScreen), what="progress")
        op = app.screen.op
        await until(pilot, lambda: op.state != "running", timeout=90, what="rollback")
        assert op.state == "ok", op.summary()
    assert world.current("prod-1") == "v1.3.0" and rows(world) == 12  # the data as it is now
