"""A dashboard whose terminal went away exits instead of spinning (seen with `su` + tmux)."""

from __future__ import annotations

import capview.tui.app as tui_app
from tui_world import world  # noqa: F401


async def test_app_exits_when_its_terminal_is_gone(world, monkeypatch):
    app = world.app()
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        monkeypatch.setattr(tui_app, "_stdin_is_tty", lambda: True)
        app._exit_if_terminal_gone()  # terminal still there: keeps running
        await pilot.pause()
        still_running = app.is_running and app.return_code is None
        monkeypatch.setattr(tui_app, "_stdin_is_tty", lambda: False)
        app._exit_if_terminal_gone()  # terminal gone (a hung-up tty is no longer a TTY)
        await pilot.pause()
    assert still_running
    assert app.return_code == 1 and app.return_value == 1
