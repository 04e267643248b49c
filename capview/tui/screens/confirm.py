"""A yes/no dialog (posting style): ``ModalScreen[bool]``; enter confirms, escape cancels."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static


class ConfirmScreen(ModalScreen[bool]):
    """``body`` is a Text (remote parts already inert) or a plain string (shown literally)."""

    BINDINGS = [
        Binding("enter", "confirm", "Confirm", id="confirm.yes", priority=True),
        Binding("escape,n", "cancel", "Cancel", id="confirm.no"),
    ]

    def __init__(self, title: str, body: Text | str, *, confirm_label: str = "Confirm",
                 danger: bool = False, id: str | None = None) -> None:
        super().__init__(id=id)
        self.title_text = title
        self.body = body if isinstance(body, Text) else Text(body)
        self.confirm_label = confirm_label
        self.danger = danger

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog" + (" danger" if self.danger else "")):
            yield Label(Text(self.title_text), id="dialog-title")
            yield Static(self.body, id="dialog-body")
            with Horizontal(classes="dialog-buttons"):
                yield Button(self.confirm_label, id="yes", variant="error" if self.danger else "primary")
                yield Button("Cancel", id="no")

    def on_mount(self) -> None:
        self.query_one("#yes", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")

    def action_confirm(self) -> None:
        focused = self.focused
        if isinstance(focused, Button) and focused.id == "no":
            self.dismiss(False)
        else:
            self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)
