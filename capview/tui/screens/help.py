"""``?``: keys per screen (generated from the bindings, so a remapped key shows as remapped),
navigation, the legend of every marker, and what the numbers mean. Scrolls; fits 80x24."""

from __future__ import annotations

from typing import Any, Callable

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from capview.tui.text import SIZE_HELP, duration

INTRO = (
    "capview ships releases as immutable directories and switches them with one atomic "
    "symlink rename. Pick a host (or a whole environment) on the left, a release on the right."
)

NAVIGATION = [
    ("j / k, ↓ / ↑", "move down / up in the focused list"),
    ("g / G, home / end", "first / last row"),
    ("tab / shift+tab", "next / previous pane or field"),
    ("enter", "open the highlighted row (inspect a release; in a dialog: the focused button)"),
    ("esc", "back / close; in dialogs Cancel is always the default"),
    ("/ then host: or version:", "filter the focused list, or the one the prefix names"),
]

LEGEND = [
    ("●", "current: the live release (on every shown host); a host line: reachable"),
    ("◐", "current on some of the environment's hosts only"),
    ("◦", "previous live release: what r goes back to by default"),
    ("⚑", "pinned: prune and cleanup never delete it (t pins / unpins)"),
    ("✗", "unreachable host; in progress tables a failed phase"),
    ("○", "host not fetched yet"),
    ("✓", "a phase that finished; ⠋ one that runs"),
    ("n/m", "after a version: on n of the m shown hosts"),
    ("locked / legacy", "host flags: an operation holds its lock / old in-place layout (m migrates)"),
    ("(●) ( )  [✓] [ ]", "radio buttons and checkboxes: on / off"),
]


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "close", "Close", id="help.close")]

    def __init__(self, sections: list[tuple[str, list[Binding]]], key_display: Callable[[Binding], str],
                 refresh_interval: float | None = None) -> None:
        super().__init__()
        self.sections = sections
        self.key_display = key_display
        self.refresh_interval = refresh_interval

    @staticmethod
    def _grid(rows: list[tuple[str, str]]) -> Table:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold cyan", min_width=10, max_width=24)
        table.add_column(ratio=1)
        for key, what in rows:
            table.add_row(Text(key), Text(what))
        return table

    def _keys(self, bindings: list[Binding]) -> list[tuple[str, str]]:
        rows, seen = [], set()
        for b in bindings:
            if not b.description or b.action in seen:
                continue
            seen.add(b.action)
            keys = b.key_display or " / ".join(self.key_display(b.with_key(k.strip())) for k in b.key.split(","))
            rows.append((keys, b.description))
        return rows

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog wide"):
            yield Label("capview — keys and markers", id="dialog-title")
            with VerticalScroll(id="help-scroll"):
                yield Static(Text(INTRO, style="dim"))
                yield Label(Text("Navigation", style="bold"), classes="help-section")
                yield Static(self._grid(NAVIGATION))
                for title, bindings in self.sections:
                    yield Label(Text(title, style="bold"), classes="help-section")
                    yield Static(self._grid(self._keys(bindings)))
                yield Label(Text("Markers", style="bold"), classes="help-section")
                yield Static(self._grid(LEGEND))
                yield Label(Text("Numbers", style="bold"), classes="help-section")
                numbers = [("size / unique", SIZE_HELP),
                           ("frees (prune)", "unique, summed right for several releases that share hard links; "
                                             "prune then reports what the host actually freed"),
                           ("down", "downtime: service stop begun to start returned, measured on the host"),
                           ("took (history)", "the operation's phases plus its switch (stop begun to the first "
                                              "healthy answer), slowest host"),
                           ("verify (inspect v)", "every file re-hashed on the host: changed, missing (deployed, "
                                                  "gone), extra (nobody deployed it); build outputs are not drift")]
                if self.refresh_interval:
                    numbers.append(("updated", f"when the hosts were last read; the next read starts "
                                               f"{duration(self.refresh_interval)} after one ends (R: now)"))
                yield Static(self._grid(numbers))
                yield Static(Text("\nEvery action is also in the command palette: ctrl+p. "
                                  "Close this help: esc, q or ?.", style="dim"))

    def action_close(self) -> None:
        self.dismiss(None)


def help_screen(app: Any) -> HelpScreen:
    from capview.tui.screens.confirm import ConfirmScreen
    from capview.tui.screens.deploy_progress import ProgressScreen
    from capview.tui.screens.history import HistoryScreen
    from capview.tui.screens.inspect import InspectScreen
    from capview.tui.screens.logs import LogsScreen
    from capview.tui.screens.main import MainScreen
    from capview.tui.screens.migrate import MigrateScreen
    from capview.tui.screens.prune import PruneScreen

    sections = [
        ("Main screen", MainScreen.BINDINGS),
        ("History", HistoryScreen.BINDINGS),
        ("Deploy / rollback / restart progress", ProgressScreen.BINDINGS),
        ("Service log", LogsScreen.BINDINGS),
        ("Prune", PruneScreen.BINDINGS),
        ("Migrate", MigrateScreen.BINDINGS),
        ("Inspect", InspectScreen.BINDINGS),
        ("Dialogs", ConfirmScreen.BINDINGS),
    ]
    return HelpScreen(sections, app.get_key_display, getattr(app, "refresh_interval", None))
