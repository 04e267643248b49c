"""A yes/no dialog (posting style): ``ModalScreen[bool]``.

Cancel is focused, so Enter (or Enter, Enter) never does the dangerous thing; ``y``
confirms, escape or ``n`` cancel. A dangerous confirmation can require typing a word
(``type_to_confirm``, e.g. the version): the confirm button stays disabled until the
typed text matches, and ``y`` is not a shortcut then. The body scrolls, the buttons do not,
so a long body still fits an 80x24 terminal.
"""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from capview.tui.text import clean_line


class ConfirmScreen(ModalScreen[bool]):
    """``body`` is a Text (remote parts already inert) or a plain string (shown literally)."""

    BINDINGS = [
        Binding("y", "confirm", "Confirm", id="confirm.yes"),
        Binding("escape,n", "cancel", "Cancel", id="confirm.no"),
        Binding("tab,right", "app.focus_next", "Next button", show=False),
        Binding("shift+tab,left", "app.focus_previous", "Previous button", show=False),
    ]

    def __init__(self, title: str, body: Text | str, *, confirm_label: str = "Confirm",
                 danger: bool = False, type_to_confirm: str | None = None, id: str | None = None) -> None:
        super().__init__(id=id)
        self.title_text = title
        self.body = body if isinstance(body, Text) else Text(body)
        self.confirm_label = confirm_label
        self.danger = danger
        self.type_to_confirm = type_to_confirm

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog" + (" danger" if self.danger else "")):
            yield Label(Text(self.title_text), id="dialog-title")
            with VerticalScroll(id="dialog-scroll"):
                yield Static(self.body, id="dialog-body")
            # always there, shown only while a word must be typed (require_typing can change it)
            yield Label(Text(f"Type {clean_line(self.type_to_confirm or '')} to confirm:"), classes="field-label",
                        id="typed-label")
            yield Input(id="typed")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="no", variant="primary")
                yield Button(self.confirm_label, id="yes", variant="error" if self.danger else "default",
                             disabled=self.type_to_confirm is not None)
            yield Static(self._hint(), id="dialog-hint")

    def _hint(self) -> Text:
        keys = "enter: the focused button · y: confirm · esc: cancel" if self.type_to_confirm is None \
            else "type the word, then enter · esc: cancel"
        return Text(keys + self.extra_hint, style="dim")

    extra_hint = ""  # dialogs with keys of their own add them (" · d: restore data")

    def on_mount(self) -> None:
        self._show_typing()

    def require_typing(self, word: str | None) -> None:
        """From now on confirming needs ``word`` typed (None: y or the button again)."""
        self.type_to_confirm = word
        self.query_one("#typed-label", Label).update(Text(f"Type {clean_line(word or '')} to confirm:"))
        self.query_one("#typed", Input).value = ""
        self.query_one("#dialog-hint", Static).update(self._hint())
        self._show_typing()
        self.refresh_bindings()

    def set_danger(self, danger: bool) -> None:
        self.danger = danger
        self.query_one("#dialog").set_class(danger, "danger")
        self.query_one("#yes", Button).variant = "error" if danger else "default"

    def _show_typing(self) -> None:
        typing = self.type_to_confirm is not None
        self.query_one("#typed-label").display = typing
        box = self.query_one("#typed", Input)
        box.display = typing
        self.query_one("#yes", Button).disabled = typing
        if typing:
            if self.app.animation_level == "none":
                box.cursor_blink = False
            box.focus()
        else:
            self.query_one("#no", Button).focus()

    @property
    def typed_ok(self) -> bool:
        return self.type_to_confirm is None or self.query_one("#typed", Input).value.strip() == self.type_to_confirm

    @on(Input.Changed, "#typed")
    def _typed(self) -> None:
        self.query_one("#yes", Button).disabled = not self.typed_ok

    @on(Input.Submitted, "#typed")
    def _typed_enter(self) -> None:
        if self.typed_ok:
            self.dismiss(True)
        else:
            self.app.bell()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes" and self.typed_ok)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "confirm":
            return self.type_to_confirm is None  # typing the word is the only way then
        return True

    def action_confirm(self) -> None:
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)
