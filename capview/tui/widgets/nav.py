"""j/k/g/G (and home/end) on every list, table and log: the keys a k9s or lazygit user tries first."""

from __future__ import annotations

from typing import Generic, TypeVar

from textual.binding import Binding
from textual.widgets import DataTable, Log, Tree

T = TypeVar("T")

# show=False: the footer has no room for them; the help screen lists them under "Navigation".
NAV_BINDINGS = [
    Binding("j", "cursor_down", "Down", show=False),
    Binding("k", "cursor_up", "Up", show=False),
    Binding("g,home", "first", "First", show=False),
    Binding("G,end", "last", "Last", show=False),
]


class NavTable(DataTable[T], Generic[T]):
    BINDINGS = NAV_BINDINGS

    def action_first(self) -> None:
        self.action_scroll_top()

    def action_last(self) -> None:
        self.action_scroll_bottom()


class NavTree(Tree[T], Generic[T]):
    BINDINGS = NAV_BINDINGS

    def action_first(self) -> None:
        self.cursor_line = 0
        self.scroll_to_line(0)

    def action_last(self) -> None:
        last = max(0, self.last_line)
        self.cursor_line = last
        self.scroll_to_line(last)


# the same keys for things that scroll rather than move a cursor (logs, text views)
SCROLL_BINDINGS = [
    Binding("j", "scroll_down", "Down", show=False),
    Binding("k", "scroll_up", "Up", show=False),
    Binding("g", "scroll_home", "First", show=False),
    Binding("G", "scroll_end", "Last", show=False),
]


class NavLog(Log):
    BINDINGS = SCROLL_BINDINGS
