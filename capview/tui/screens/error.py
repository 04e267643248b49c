"""The error modal: one place every worker error and lost connection ends up (harlequin style)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

from capview.tui.text import clean_block, clean_line


class ErrorScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,enter,q", "close", "Close", id="error.close")]

    def __init__(self, title: str, message: str, *, hint: str | None = None, details: str | None = None) -> None:
        super().__init__()
        self.title_text = title
        self.message = message
        self.hint = hint
        self.details = details

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog danger"):
            yield Label(Text("✗ " + clean_line(self.title_text)), id="dialog-title")
            body = Text(clean_block(self.message))
            if self.hint:
                body.append("\n\n" + clean_block(self.hint), style="italic")
            with VerticalScroll(id="dialog-scroll"):
                yield Static(body, id="dialog-body")
                if self.details:
                    yield Static(Text(clean_block(self.details), style="dim"), id="error-details")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Close", id="close", variant="error")

    def on_mount(self) -> None:
        self.query_one("#close", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)
