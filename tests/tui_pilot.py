"""Helpers the dashboard's Pilot tests share (tests/test_tui_*.py)."""

from __future__ import annotations

import io
import time

from rich.console import Console

from capview.tui.widgets.host_list import HostList, Target
from capview.tui.widgets.releases_table import ReleasesTable

SIZE = (160, 45)


async def settle(pilot, rounds: int = 3) -> None:
    """Every worker done (refreshes, plans) and the screen caught up. A worker cancelled
    meanwhile (an exclusive group that started a newer one) is not an error: wait again."""
    from textual.worker import WorkerCancelled

    done = 0
    for _ in range(rounds + 20):
        try:
            await pilot.app.workers.wait_for_complete()
        except WorkerCancelled:
            await pilot.pause()
            continue
        await pilot.pause()
        done += 1
        if done == rounds:
            await _logs_flushed(pilot)
            await _tables_measured(pilot)
            return


async def _logs_flushed(pilot, timeout: float = 2.0) -> None:
    """Every visible log pane has written what it holds (they flush on a 0.1 s timer, so a
    screenshot right after a line arrived would show it or not by chance)."""
    from capview.tui.widgets.log_pane import LogPane

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        panes = [p for s in pilot.app.screen_stack for p in s.query(LogPane)]
        if not any(p.pending for p in panes):
            return
        await pilot.pause(0.05)


async def _tables_measured(pilot, timeout: float = 2.0) -> None:
    """Every DataTable has measured its new rows and cells: it does that when its message
    queue is idle, and a table under a modal pushed right after an update would otherwise
    be drawn with the header's column widths in a screenshot (by chance, on a loaded machine)."""
    from textual.widgets import DataTable

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tables = [t for s in pilot.app.screen_stack for t in s.query(DataTable)]
        if not any(t._require_update_dimensions or t._updated_cells for t in tables):
            return
        await pilot.pause(0.05)


async def until(pilot, cond, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout}s")
        await pilot.pause(0.02)


async def select(pilot, env: str, host: str | None, version: str | None = None) -> ReleasesTable:
    main = pilot.app.main_screen
    main.query_one(HostList).select_target(Target(env, host))
    await pilot.pause()
    table = main.query_one(ReleasesTable)
    if version:
        table.focus()
        table.select_version(version)
        await pilot.pause()
    return table


def notes(app) -> list[str]:
    return [n.message for n in app._notifications]


def screen_text(app) -> str:
    """What the terminal shows (plain text)."""
    console = Console(width=app.size.width, height=app.size.height, file=io.StringIO(), record=True,
                      force_terminal=True, color_system="truecolor", legacy_windows=False)
    console.print(app.screen._compositor.render_update(full=True))
    return console.export_text()


def footer_text(app) -> str:
    return screen_text(app).rstrip("\n").splitlines()[-1]


async def footer(pilot) -> str:
    """The footer line once it has keys (it is recomposed when the screen's keys change)."""
    deadline = time.monotonic() + 5
    while not footer_text(pilot.app).strip() and time.monotonic() < deadline:
        await pilot.pause(0.02)
    return footer_text(pilot.app)
