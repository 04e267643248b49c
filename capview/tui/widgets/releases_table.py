"""Right pane of the main screen: the selected host's (or environment's) releases.

Rows are keyed by version. A refresh updates only the cells whose value changed
(``update_cell`` inside ``app.batch_update()``, dolphie style), adds and removes
rows as releases come and go, and keeps the cursor on the same release.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import RowDoesNotExist

from capview.engine.model import HostStatus, ReleaseInfo
from capview.tui.text import clean_line, human_bytes, human_delta, human_duration

COLUMNS: tuple[tuple[str, str], ...] = (
    ("mark", " "),
    ("version", "version"),
    ("state", "state"),
    ("age", "age"),
    ("size", "size"),
    ("unique", "unique"),
    ("operator", "operator"),
    ("commit", "commit"),
    ("health", "health"),
    ("downtime", "down"),
)

STATE_STYLE = {
    "live": "bold green", "superseded": "", "failed": "bold red", "incomplete": "red",
    "uploading": "yellow", "building": "yellow", "ready": "cyan",
}


@dataclass(frozen=True)
class ReleaseRow:
    """One row: a release, and on how many of the shown hosts it is current / present."""

    info: ReleaseInfo
    current_on: int = 0
    present_on: int = 1
    hosts: int = 1

    @property
    def version(self) -> str:
        return self.info.version

    @property
    def sort_key(self) -> float:
        return self.info.deployed_at or self.info.started_at or 0.0


def rows_for(statuses: list[HostStatus]) -> list[ReleaseRow]:
    """Rows for one host, or the union over an environment's reachable hosts, newest first."""
    reachable = [s for s in statuses if s.reachable]
    seen: dict[str, ReleaseRow] = {}
    for st in reachable:
        for r in st.releases:
            row = seen.get(r.version)
            if row is None:
                seen[r.version] = ReleaseRow(r, int(r.current), 1, len(reachable))
            else:
                seen[r.version] = ReleaseRow(row.info, row.current_on + int(r.current), row.present_on + 1,
                                             len(reachable))
    return sorted(seen.values(), key=lambda r: (r.sort_key, r.version), reverse=True)


def _short(s: str | None, n: int) -> str:
    s = clean_line(s) if s else ""
    return s if len(s) <= n else s[: n - 1] + "…"


def _age(seconds: float | None) -> str:
    return human_delta(seconds)


def cells(row: ReleaseRow, now: float) -> dict[str, Text]:
    r = row.info
    if row.current_on and row.current_on == row.hosts:
        mark = Text("●", style="bold green")
    elif row.current_on:
        mark = Text("◐", style="bold yellow")
    else:
        mark = Text("⚑" if r.pinned else " ", style="cyan")
    version = Text(clean_line(r.version), style="bold" if r.current else "")
    if row.present_on < row.hosts:
        version.append(f" {row.present_on}/{row.hosts}", style="dim")
    state = Text(clean_line(r.state), style=STATE_STYLE.get(r.state, ""))
    when = r.deployed_at or r.started_at
    age = Text(_age(now - when) if when else "—", style="dim" if not r.deployed_at else "")
    health = Text({"ok": "ok", "failed": "failed"}.get(r.health or "", clean_line(r.health) if r.health else "—"),
                  style={"ok": "green", "failed": "red"}.get(r.health or "", "dim"))
    out = {
        "mark": mark,
        "version": version,
        "state": state,
        "age": age,
        "size": Text(human_bytes(r.size_bytes) if r.size_bytes else "—", justify="right"),
        "unique": Text(human_bytes(r.unique_bytes) if r.size_bytes else "—", justify="right"),
        "operator": Text(_short(r.operator, 12) or "—"),
        "commit": Text(_short(r.commit, 7) or "—", style="magenta" if r.commit else "dim"),
        "health": health,
        # the headline: unavailable (stop -> first healthy answer), else the older stop -> start figure
        "downtime": Text(human_duration(down) if (down := r.unavailable if r.unavailable is not None else r.downtime)
                         is not None else "—", justify="right"),
    }
    # cell_padding is 0 (the table must fit beside the host list): one space either side instead
    for key, text in out.items():
        out[key] = Text(" ", end="").append_text(text).append(" ")
        out[key].justify = text.justify
    return out


class ReleasesTable(DataTable[Text]):
    DEFAULT_CSS = """
    ReleasesTable { height: 1fr; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False, cell_padding=0)
        self.rows_by_version: dict[str, ReleaseRow] = {}
        self.filter_text = ""
        self._all: list[ReleaseRow] = []
        self.cell_updates = 0  # in-place updates done (tests read it)

    def on_mount(self) -> None:
        for key, label in COLUMNS:
            self.add_column(Text(f" {label} " if key != "mark" else "  ", style="bold"), key=key)

    # -- cursor

    @property
    def highlighted(self) -> ReleaseRow | None:
        if not self.row_count:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except Exception:
            return None
        return self.rows_by_version.get(str(key.value))

    def select_version(self, version: str | None) -> bool:
        if version is None:
            return False
        try:
            index = self.get_row_index(version)
        except RowDoesNotExist:
            return False
        self.move_cursor(row=index, animate=False, scroll=True)
        return True

    # -- data

    def _visible(self, rows: list[ReleaseRow]) -> list[ReleaseRow]:
        f = self.filter_text.lower()
        if not f:
            return rows
        return [r for r in rows if f in " ".join(
            str(x) for x in (r.info.version, r.info.state, r.info.operator, r.info.commit) if x).lower()]

    def set_filter(self, text: str, now: float) -> None:
        self.filter_text = text
        self.show(self._all, now)

    def show(self, rows: list[ReleaseRow], now: float, *, reset: bool = False) -> None:
        """Render ``rows``: in place when the same data set is refreshed, rebuilt on ``reset``."""
        self._all = rows
        rows = self._visible(rows)
        keep = self.highlighted.version if self.highlighted else None
        if reset:
            self.clear()
            self.rows_by_version.clear()
        wanted = {r.version for r in rows}
        with self.app.batch_update():
            for version in [v for v in self.rows_by_version if v not in wanted]:
                self.remove_row(version)
                del self.rows_by_version[version]
            added = False
            remeasure = False
            for row in rows:
                new = cells(row, now)
                if row.version in self.rows_by_version:
                    old = self.get_row(row.version)
                    for (key, _), before in zip(COLUMNS, old):
                        after = new[key]
                        if before != after:
                            grew = after.cell_len > self.columns[key].content_width  # type: ignore[index]
                            self.update_cell(row.version, key, after, update_width=grew)
                            remeasure = remeasure or grew
                            self.cell_updates += 1
                else:
                    self.add_row(*(new[k] for k, _ in COLUMNS), key=row.version)
                    added = True
                self.rows_by_version[row.version] = row
            if added:
                order = {r.version: i for i, r in enumerate(rows)}
                self.sort("version", key=lambda v: order.get(v.plain.split()[0], len(order)))
            if not self.select_version(keep) and (reset or keep is None):
                current = next((r.version for r in rows if r.info.current or r.current_on), None)
                self.select_version(current)
        if remeasure:
            self.call_later(lambda: None)  # widths are re-measured when the table next goes idle
