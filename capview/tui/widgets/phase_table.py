"""One row per host, one column per phase: pending ``·``, running (spinner), done ``✓``
(duration), failed ``✗``, does not apply ``—`` (no build configured on that host).

When every column with its duration does not fit (a release's eight phases at 80
columns), cells drop the duration and keep the glyph; the running phase's elapsed time
then shows in the result column. The result column holds the outcome word only; the
hosts' full messages are below the table, wrapped, never cut.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from capview.tui.operations import HostProgress, Operation, PhaseState
from capview.tui.text import clean_line, duration, word

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"

OUTCOME_STYLE = {"ok": "bold green", "failed": "bold red", "rolled_back": "bold red",
                 "cancelled": "yellow", "skipped": "dim"}
PHASE_WIDTH = 8  # "✓ 14.8s", "⠋ 0.00s", "✗ cancel"
COMPACT_WIDTH = 2
RESULT_WIDTH = 16


def phase_cell(ps: PhaseState, now: float, *, compact: bool = False, skipped: bool = False) -> Text:
    if skipped:
        return Text("—", style="dim")
    if ps.state == "pending":
        return Text("·", style="dim")
    if ps.state == "running":
        frame = SPINNER[int(now * 10) % len(SPINNER)]
        if compact:
            return Text(frame, style="bold yellow")
        elapsed = max(0.0, now - ps.started) if ps.started is not None else 0.0
        return Text(f"{frame} {duration(elapsed)}", style="bold yellow")
    if ps.state == "done":
        return Text("✓" if compact else f"✓ {duration(ps.duration)}", style="green")
    if compact:
        return Text("✗", style="bold red")
    return Text("✗ " + ("cancel" if ps.detail == "cancelled" else duration(ps.duration)), style="bold red")


def result_cell(hp: HostProgress, now: float) -> Text:
    if hp.outcome is None:
        if hp.current_phase:
            ps = hp.phases.get(hp.current_phase)
            t = Text(clean_line(hp.current_phase) + "…", style="yellow")
            if ps is not None and ps.started is not None:
                t.append(f" {duration(max(0.0, now - ps.started))}", style="yellow")
            return t
        return Text("waiting", style="dim")
    return Text(word(hp.outcome), style=OUTCOME_STYLE.get(hp.outcome, ""), no_wrap=True, overflow="ellipsis")


def needed_width(op: Operation, *, compact: bool) -> int:
    host = max([4, *(len(clean_line(h)) for h in op.hosts)])
    if compact:  # no cell padding: a space after each label instead (see _build)
        return sum(c + 1 for c in [host, 5] + [max(COMPACT_WIDTH, len(p)) for p in op.phase_names])
    cols = [host] + [max(PHASE_WIDTH, len(p)) for p in op.phase_names] + [8, RESULT_WIDTH]
    return sum(c + 2 for c in cols)  # cell padding 1 each side


class PhaseTable(DataTable[Text]):
    DEFAULT_CSS = """
    PhaseTable { height: auto; max-height: 12; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", show_cursor=False, zebra_stripes=False)
        self._columns: list[str] = []
        self.compact = False

    def _build(self, op: Operation) -> None:
        """(Re)create the columns; fixed widths, so a spinner never re-measures the table.

        Compact (narrow: a release's nine phases at 80 columns, migrate beside its plan):
        no cell padding, glyphs without durations, and the downtime right after the host,
        so what matters most is still on screen; no result column (the outcome and the
        message are below the table anyway)."""
        self.clear(columns=True)
        self._columns = []
        self.cell_padding = 0 if self.compact else 1
        gap = 1 if self.compact else 0

        def column(label: str, key: str, width: int, default: Text) -> None:
            self.add_column(label, key=key, width=width + gap, default=default)
            self._columns.append(key)

        column("host", "host", max([4, *(len(clean_line(h)) for h in op.hosts)]), Text(""))
        if self.compact:
            column("down", "downtime", 5, Text("—", style="dim"))
        per = COMPACT_WIDTH if self.compact else PHASE_WIDTH
        for phase in op.phase_names:
            column(phase, phase, max(per, len(phase)), Text("·", style="dim"))
        if not self.compact:
            column("downtime", "downtime", 8, Text("—", style="dim"))
            column("result", "result", RESULT_WIDTH, Text(""))

    def update_from(self, op: Operation, now: float) -> None:
        available = self.size.width or self.app.size.width
        compact = needed_width(op, compact=False) > available
        phases_known = [c for c in self._columns if c not in ("host", "downtime", "result")]
        if not self._columns or compact != self.compact or phases_known != op.phase_names:
            self.compact = compact
            self._build(op)
        with self.app.batch_update():
            for name, hp in op.hosts.items():
                values: dict[str, Text] = {"host": Text(clean_line(name), style="bold")}
                for phase in op.phase_names:
                    values[phase] = phase_cell(hp.phases.get(phase, PhaseState()), now, compact=self.compact,
                                               skipped=phase in hp.skipped)
                values["downtime"] = (Text(duration(hp.downtime), style="bold")
                                      if hp.downtime is not None else Text("—", style="dim"))
                values["result"] = result_cell(hp, now)
                if name not in self.rows:
                    self.add_row(*(values.get(c, Text("")) for c in self._columns), key=name)
                    continue
                for col in self._columns:
                    new = values.get(col)
                    if new is not None and self.get_cell(name, col) != new:
                        self.update_cell(name, col, new)
