"""Keys, per screen, generated from the bindings (so a remapped key shows as remapped)."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

INTRO = (
    "capview ships releases as immutable directories and switches them with one atomic "
    "symlink rename. Pick a host (or a whole environment) on the left, a release on the right."
)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "close", "Close", id="help.close")]

    def __init__(self, sections: list[tuple[str, list[Binding]]], key_display) -> None:
        super().__init__()
        self.sections = sections
        self.key_display = key_display

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog wide"):
            yield Label("capview — keys", id="dialog-title")
            with VerticalScroll():
                yield Static(Text(INTRO, style="dim"))
                for title, bindings in self.sections:
                    table = Table.grid(padding=(0, 2))
                    table.add_column(style="bold cyan", min_width=10)
                    table.add_column()
                    seen = set()
                    for b in bindings:
                        if not b.description or b.action in seen:
                            continue
                        seen.add(b.action)
                        keys = b.key_display or " / ".join(
                            self.key_display(b.with_key(k.strip())) for k in b.key.split(","))
                        table.add_row(Text(keys), Text(b.description))
                    yield Label(Text(title, style="bold"), classes="help-section")
                    yield Static(table)
                yield Static(Text("Every action is also in the command palette: ctrl+p.", style="dim"))

    def action_close(self) -> None:
        self.dismiss(None)
