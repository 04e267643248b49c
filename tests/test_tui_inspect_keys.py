"""Inspect: the tab keys work whatever has focus (a focused file tree used to pull the
tabs back to Files: Textual re-activates the pane that holds the focused widget)."""

from __future__ import annotations

from textual.widgets import TabbedContent

from capview.tui.screens.inspect import FileTree
from test_tui_snapshots import SIZE, make_app, on_host, settle


async def test_tab_keys_switch_tabs_with_the_file_tree_focused():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await on_host(pilot, "prod", "prod-1", "v1.3.0")
        await pilot.press("i")
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        tabs = app.screen.query_one(TabbedContent)
        app.screen.query_one(FileTree).focus()
        await settle(pilot)
        for key, tab in (("5", "tab-compare"), ("4", "tab-health"), ("2", "tab-files"), ("1", "tab-manifest")):
            await pilot.press(key)
            await settle(pilot)
            assert tabs.active == tab, (key, tabs.active)
