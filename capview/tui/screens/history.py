"""``h``: the history of a host or a whole environment, from the hosts' own history.jsonl
(``ops.history``): who did what and when, the outcome and why it failed or was rolled
back, how long it took and the downtime; a plot of deploy duration and downtime per
release on top. Enter on a row jumps to that release on the main screen.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Header, Static

from capview.tui.text import age, clean_line, duration, plural, size, word
from capview.tui.widgets.bars import ReleasePlot, points_from, took
from capview.tui.widgets.footer import CapviewFooter
from capview.tui.widgets.host_list import Target
from capview.tui.widgets.nav import NavTable

OUTCOME_STYLE = {"ok": "green", "failed": "bold red", "rolled_back": "bold red"}
COLUMNS = (("when", "when"), ("host", "host"), ("op", "op"), ("version", "version"), ("outcome", "outcome"),
           ("took", "took"), ("down", "down"), ("by", "by"), ("change", "from → to"), ("why", "why / detail"))


def target_version(rec: dict) -> str | None:
    """The release a record is about: the one it made live, or the one it tried."""
    v = rec.get("to") if rec.get("op") == "rollback" else rec.get("version")
    return v if isinstance(v, str) else None


def detail(rec: dict) -> str:
    if rec.get("outcome") == "rolled_back":
        why = str(rec.get("error") or "unhealthy")
        return f"{why}; switched back to {rec.get('to') or 'the previous release'}"
    if rec.get("error"):
        return str(rec["error"])
    if rec.get("op") == "prune":
        deleted = rec.get("deleted") if isinstance(rec.get("deleted"), list) else []
        freed = rec.get("freed")
        return f"deleted {plural(len(deleted), 'release')}" + (f", freed {size(freed)}" if isinstance(freed, int) else "")
    return ""


class HistoryScreen(Screen[None]):
    BINDINGS = [
        Binding("enter", "jump", "Show release", id="history.jump", priority=True),
        Binding("R", "reload", "Refresh", id="history.reload", key_display="R"),
        Binding("escape,b", "back", "Back", id="history.back"),
        Binding("question_mark", "app.help", "Help", id="history.help"),
        Binding("q", "app.quit_safely", "Quit", id="history.quit"),
    ]
    FOOTER_KEEP = ["jump", "reload"]

    def __init__(self, target: Target) -> None:
        super().__init__()
        self.target = target
        self.records: list[dict] = []

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="history"):
            yield Static(id="history-title", classes="screen-title")
            yield ReleasePlot(id="history-plot")
            yield NavTable(id="history-table", cursor_type="row")
        yield CapviewFooter()

    def on_mount(self) -> None:
        self.sub_title = f"history {self.target.label}"
        table = self.query_one("#history-table", DataTable)
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        table.focus()
        self._title(loading=True)
        self.action_reload()

    def _title(self, loading: bool = False) -> None:
        t = Text()
        t.append(f"History of {clean_line(self.target.label)}", style="bold")
        if loading:
            t.append(" · reading the hosts' history…", style="yellow")
        else:
            deploys = sum(1 for r in self.records if r.get("op") == "release")
            t.append(f" · {plural(len(self.records), 'record')}, {plural(deploys, 'deploy')}, newest first", style="dim")
        self.query_one("#history-title", Static).update(t)

    def action_reload(self) -> None:
        self.app.run_worker(self._load, name=f"history {self.target.label}", group="history", exclusive=True,
                            exit_on_error=False)

    async def _load(self) -> None:
        per_host = await self.app.backend.history(self.target.env, host=self.target.host)  # type: ignore[attr-defined]
        if self.is_attached:
            self.show(per_host)

    def show(self, per_host: dict[str, list[dict]]) -> None:
        records = [r for recs in per_host.values() for r in recs if r.get("op") not in ("init",)]
        records.sort(key=lambda r: r.get("at") if isinstance(r.get("at"), (int, float)) else 0)
        self.records = records
        plot = self.query_one(ReleasePlot)
        plot.set_points(points_from(records), rows=max(3, min(10, self.app.size.height // 3)))
        now = self.app.clock()  # type: ignore[attr-defined]
        table = self.query_one("#history-table", DataTable)
        table.clear()
        for i, rec in enumerate(reversed(records)):
            at = rec.get("at")
            outcome = str(rec.get("outcome") or "")
            change = ""
            if rec.get("op") in ("release", "rollback", "migrate"):
                change = f"{rec.get('from') or '—'} → {rec.get('to') or '—'}"
                if outcome == "rolled_back":  # it went live, failed its health check, and went back
                    change = f"{rec.get('from') or '—'} → {rec.get('version')} → {rec.get('to') or '—'}"
            table.add_row(
                Text(age(now - at) if isinstance(at, (int, float)) else "?"),
                Text(clean_line(rec.get("host") or "?"), style="bold"),
                Text(clean_line(rec.get("op") or "?")),
                Text(clean_line(rec.get("version") or "")),
                Text(word(outcome), style=OUTCOME_STYLE.get(outcome, "")),
                Text(duration(took(rec)) if took(rec) is not None else "—", justify="right"),
                Text(duration(rec["downtime"]) if isinstance(rec.get("downtime"), (int, float)) else "—",
                     justify="right"),
                Text(clean_line(rec.get("operator") or "—")),
                Text(clean_line(change), style="dim"),
                Text(clean_line(detail(rec)), style="red" if rec.get("error") else "dim"),
                key=str(i),
            )
        self._title()

    def _selected(self) -> dict | None:
        table = self.query_one("#history-table", DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return list(reversed(self.records))[int(str(key))]

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_jump()

    def action_jump(self) -> None:
        rec = self._selected()
        version = target_version(rec) if rec else None
        host = rec.get("host") if rec else None
        if not version or not isinstance(host, str):
            self.app.notify("This record is not about one release.", markup=False)
            return
        main = self.app.main_screen  # type: ignore[attr-defined]
        st = self.app.status.get(host)  # type: ignore[attr-defined]
        if st is None or not any(r.version == version for r in st.releases):
            self.app.notify(f"{version} is no longer on {host} (pruned).", severity="warning", markup=False)
            return
        while self.app.screen is not main:
            self.app.pop_screen()
        main.show_release(host, version)

    def action_back(self) -> None:
        self.app.pop_screen()
