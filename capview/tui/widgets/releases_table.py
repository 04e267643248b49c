"""Right pane of the main screen: the selected host's (or environment's) releases.

Rows are keyed by version. A refresh updates only the cells whose value changed
(``update_cell`` inside ``app.batch_update()``, dolphie style), adds and removes rows
as releases come and go, and keeps the cursor on the same release. Columns that do
not fit the pane are hidden by priority (commit first, version and state never);
sizes are :func:`capview.units.size` of the engine's numbers, as in the CLI.

Markers (the help screen's legend): ``●`` current on every shown host, ``◐`` current
on some, ``◦`` previous live release (what ``r`` goes back to by default), ``⚑`` pinned.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.widgets.data_table import RowDoesNotExist

from capview.engine.model import HostStatus, ReleaseInfo
from capview.tui.text import age, clean_line, clip, duration, size
from capview.tui.widgets.nav import NavTable

# (key, header) in display order
COLUMNS: tuple[tuple[str, str], ...] = (
    ("mark", ""),
    ("version", "version"),
    ("state", "state"),
    ("age", "age"),
    ("size", "size"),
    ("unique", "unique"),
    ("health", "health"),
    ("downtime", "down"),
    ("operator", "operator"),
    ("commit", "commit"),
)
HIDE_FIRST = ("commit", "operator", "downtime", "unique", "health", "size", "age")  # when narrow

STATE_STYLE = {
    "live": "bold green", "superseded": "", "failed": "bold red", "incomplete": "red",
    "uploading": "yellow", "building": "yellow", "ready": "cyan",
}
MARKS = {"current": "●", "partial": "◐", "previous": "◦", "pinned": "⚑"}


@dataclass(frozen=True)
class ReleaseRow:
    """One row: a release, and on how many of the shown hosts it is current / previous / present."""

    info: ReleaseInfo
    current_on: int = 0
    present_on: int = 1
    hosts: int = 1
    previous_on: int = 0

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
            prev = int(r.version == st.previous)
            row = seen.get(r.version)
            if row is None:
                seen[r.version] = ReleaseRow(r, int(r.current), 1, len(reachable), prev)
            else:
                seen[r.version] = ReleaseRow(row.info, row.current_on + int(r.current), row.present_on + 1,
                                             len(reachable), row.previous_on + prev)
    return sorted(seen.values(), key=lambda r: (r.sort_key, r.version), reverse=True)


def mark(row: ReleaseRow) -> Text:
    t = Text()
    if row.current_on and row.current_on == row.hosts:
        t.append(MARKS["current"], style="bold green")
    elif row.current_on:
        t.append(MARKS["partial"], style="bold yellow")
    elif row.previous_on:
        t.append(MARKS["previous"], style="bold cyan")
    else:
        t.append(" ")
    t.append(MARKS["pinned"] if row.info.pinned else " ", style="cyan")
    return t


def cells(row: ReleaseRow, now: float) -> dict[str, Text]:
    r = row.info
    version = Text(clean_line(r.version), style="bold" if r.current else "")
    if row.present_on < row.hosts:
        version.append(f" {row.present_on}/{row.hosts}", style="dim")
    state = Text(clean_line(r.state), style=STATE_STYLE.get(r.state, ""))
    when = r.deployed_at or r.started_at
    health = Text(clean_line(r.health) if r.health else "—",
                  style={"ok": "green", "failed": "red"}.get(r.health or "", "dim"))
    out = {
        "mark": mark(row),
        "version": version,
        "state": state,
        "age": Text(age(now - when) if when else "—", style="" if r.deployed_at else "dim"),
        # "…": the host is still summing (a cold listing did not wait, as in the CLI)
        "size": Text("…" if r.usage_pending else size(r.size_bytes) if r.size_bytes else "—", justify="right"),
        "unique": Text("…" if r.usage_pending else size(r.unique_disk_bytes) if r.size_bytes else "—",
                       justify="right"),
        "health": health,
        # the headline: unavailable (stop -> first healthy answer), else the older stop -> start figure
        "downtime": Text(duration(down) if (down := r.unavailable if r.unavailable is not None else r.downtime)
                         is not None else "—", justify="right"),
        "operator": Text(clip(r.operator, 14) if r.operator else "—"),
        "commit": Text(clip(r.commit, 8) if r.commit else "—", style="magenta" if r.commit else "dim"),
    }
    # cell_padding is 0 (the table must fit beside the host list): one space either side instead
    for key, text in out.items():
        padded = Text(" ", end="").append_text(text).append(" ")
        padded.justify = text.justify
        out[key] = padded
    return out


def header(key: str, label: str) -> Text:
    return Text(f" {label} " if key != "mark" else "  ", style="bold")


def visible_columns(widths: dict[str, int], available: int) -> list[str]:
    """The columns that fit ``available`` cells, hiding HIDE_FIRST in order."""
    shown = [k for k, _ in COLUMNS]
    for key in HIDE_FIRST:
        if sum(widths[k] for k in shown) <= available:
            break
        shown.remove(key)
    return shown


class ReleasesTable(NavTable[Text]):
    DEFAULT_CSS = """
    ReleasesTable { height: 1fr; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False, cell_padding=0)
        self.rows_by_version: dict[str, ReleaseRow] = {}
        self.filter_text = ""
        self._all: list[ReleaseRow] = []
        self._now = 0.0
        self.shown_columns: list[str] = [k for k, _ in COLUMNS]
        self.cell_updates = 0  # in-place updates done (tests read it)
        self._measured: dict[str, int] = {}  # the widest cell of each column in the last show()

    def on_mount(self) -> None:
        for key in self.shown_columns:
            self.add_column(header(key, dict(COLUMNS)[key]), key=key)

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

    # -- filter

    def matches(self, row: ReleaseRow) -> bool:
        f = self.filter_text.lower()
        return not f or f in " ".join(
            str(x) for x in (row.info.version, row.info.state, row.info.operator, row.info.commit) if x).lower()

    def match_count(self) -> tuple[int, int]:
        return sum(1 for r in self._all if self.matches(r)), len(self._all)

    def set_filter(self, text: str, now: float) -> None:
        self.filter_text = text
        self.show(self._all, now)

    # -- columns that fit

    def _widths(self, rows: list[ReleaseRow], now: float) -> dict[str, int]:
        widths = {k: header(k, label).cell_len for k, label in COLUMNS}
        for row in rows:
            for k, cell in cells(row, now).items():
                widths[k] = max(widths[k], cell.cell_len)
        return widths

    def _refit(self, rows: list[ReleaseRow], now: float) -> bool:
        """Re-pick the shown columns for the pane's width; True when they changed (table rebuilt)."""
        self._measured = self._widths(rows, now)
        available = self.size.width - 1  # the vertical scrollbar's column
        if available <= 0:
            return False
        wanted = visible_columns(self._measured, available)
        if wanted == self.shown_columns:
            return False
        keep = self.highlighted.version if self.highlighted else None
        self.clear(columns=True)
        self.rows_by_version.clear()
        self.shown_columns = wanted
        for key in wanted:
            self.add_column(header(key, dict(COLUMNS)[key]), key=key)
        self._fill(rows, now)
        self._size_columns()
        self.select_version(keep)
        return True

    def _size_columns(self) -> None:
        """Columns as wide as their widest cell at once: DataTable measures new rows only
        when its queue is idle, and until then draws them at the header's width (a dialog
        opened right after a refresh showed the table under it clipped)."""
        for key in self.shown_columns:
            column = self.columns.get(key)  # type: ignore[call-overload]
            if column is not None and column.auto_width:
                column.content_width = max(column.content_width, self._measured.get(key, 0))

    def on_resize(self) -> None:
        if self._all:
            self._refit(self._visible(self._all), self._now)

    # -- data

    def _visible(self, rows: list[ReleaseRow]) -> list[ReleaseRow]:
        return [r for r in rows if self.matches(r)]

    def _fill(self, rows: list[ReleaseRow], now: float) -> None:
        for row in rows:
            new = cells(row, now)
            self.add_row(*(new[k] for k in self.shown_columns), key=row.version)
            self.rows_by_version[row.version] = row

    def show(self, rows: list[ReleaseRow], now: float, *, reset: bool = False) -> None:
        """Render ``rows``: in place when the same data set is refreshed, rebuilt on ``reset``."""
        self._all, self._now = rows, now
        rows = self._visible(rows)
        keep = self.highlighted.version if self.highlighted else None
        with self.app.batch_update():
            if reset:  # another host or environment: columns re-measured for its releases
                self.clear(columns=True)
                self.rows_by_version.clear()
                for key in self.shown_columns:
                    self.add_column(header(key, dict(COLUMNS)[key]), key=key)
            if self._refit(rows, now):
                if not self.select_version(keep):
                    self._select_current(rows)
                return
            wanted = {r.version for r in rows}
            for version in [v for v in self.rows_by_version if v not in wanted]:
                self.remove_row(version)
                del self.rows_by_version[version]
            added = False
            for row in rows:
                new = cells(row, now)
                if row.version in self.rows_by_version:
                    old = self.get_row(row.version)
                    for key, before in zip(self.shown_columns, old):
                        after = new[key]
                        if before != after:
                            grew = after.cell_len > self.columns[key].content_width  # type: ignore[index]
                            self.update_cell(row.version, key, after, update_width=grew)
                            self.cell_updates += 1
                else:
                    self.add_row(*(new[k] for k in self.shown_columns), key=row.version)
                    added = True
                self.rows_by_version[row.version] = row
            if added:
                order = {r.version: i for i, r in enumerate(rows)}
                self.sort("version", key=lambda v: order.get(v.plain.split()[0], len(order)))
            if reset or added:
                self._size_columns()
            if not self.select_version(keep) and (reset or keep is None):
                self._select_current(rows)

    def _select_current(self, rows: list[ReleaseRow]) -> None:
        current = next((r.version for r in rows if r.info.current or r.current_on), None)
        self.select_version(current)
