"""A scrollable full-screen text view: dry-run scripts, a file diff. Esc closes."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Header, Static

from capview.tui.widgets.footer import CapviewFooter
from capview.tui.widgets.nav import SCROLL_BINDINGS


class ViewScroll(VerticalScroll):
    BINDINGS = SCROLL_BINDINGS + [Binding("space", "page_down", "Page down", show=False)]


class TextScreen(Screen[None]):
    BINDINGS = [
        Binding("escape,b", "back", "Back", id="view.back"),
        Binding("question_mark", "app.help", "Help", id="view.help"),
        Binding("q", "app.quit_safely", show=False, id="view.quit"),
    ]

    def __init__(self, title: str | Text, body: Any, *, subtitle: str = "") -> None:
        super().__init__()
        self.title_text = title if isinstance(title, Text) else Text(title, style="bold")
        self.body = body
        self.subtitle = subtitle

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(self.title_text, classes="screen-title")
        with ViewScroll(id="view-scroll"):
            yield Static(self.body, id="view-body")
        yield CapviewFooter()

    def on_mount(self) -> None:
        self.sub_title = self.subtitle
        self.query_one(ViewScroll).focus()

    def action_back(self) -> None:
        self.app.pop_screen()
