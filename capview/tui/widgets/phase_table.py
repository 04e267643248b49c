"""One row per host, one column per phase: pending, running (spinner), done (duration), failed."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from capview.tui.operations import HostProgress, Operation, PhaseState
from capview.tui.text import clean_line, human_duration

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"

OUTCOME_STYLE = {"ok": "bold green", "failed": "bold red", "rolled_back": "bold red",
                 "cancelled": "yellow", "skipped": "dim"}


def phase_cell(ps: PhaseState, now: float) -> Text:
    if ps.state == "pending":
        return Text("·", style="dim")
    if ps.state == "running":
        frame = SPINNER[int(now * 10) % len(SPINNER)]
        elapsed = max(0.0, now - ps.started) if ps.started is not None else 0.0
        return Text(f"{frame} {human_duration(elapsed)}", style="bold yellow")
    if ps.state == "done":
        return Text(f"✓ {human_duration(ps.duration)}", style="green")
    return Text("✗ " + ("cancelled" if ps.detail == "cancelled" else human_duration(ps.duration)), style="bold red")


def result_cell(hp: HostProgress) -> Text:
    if hp.outcome is None:
        if hp.current_phase:
            return Text(clean_line(hp.current_phase) + "…", style="yellow")
        return Text("waiting", style="dim")
    t = Text(clean_line(hp.outcome), style=OUTCOME_STYLE.get(hp.outcome, ""))
    if hp.message:
        t.append(": " + clean_line(hp.message), style="")
    return t


class PhaseTable(DataTable[Text]):
    DEFAULT_CSS = """
    PhaseTable { height: auto; max-height: 12; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", show_cursor=False, zebra_stripes=False)
        self._columns: list[str] = []

    def update_from(self, op: Operation, now: float) -> None:
        if not self._columns:
            self.add_column("host", key="host")
            self._columns.append("host")
        for phase in op.phase_names:
            if phase not in self._columns:
                self.add_column(phase, key=phase, default=Text("·", style="dim"))
                self._columns.append(phase)
        if "downtime" not in self._columns:
            self.add_column("downtime", key="downtime", default=Text("—", style="dim"))
            self.add_column("result", key="result", default=Text(""))
            self._columns += ["downtime", "result"]
        else:
            # keep downtime/result last if phases were added later
            pass
        with self.app.batch_update():
            for name, hp in op.hosts.items():
                values: dict[str, Text] = {"host": Text(clean_line(name), style="bold")}
                for phase in op.phase_names:
                    values[phase] = phase_cell(hp.phases.get(phase, PhaseState()), now)
                values["downtime"] = (Text(human_duration(hp.downtime), style="bold")
                                      if hp.downtime is not None else Text("—", style="dim"))
                values["result"] = result_cell(hp)
                if name not in self.rows:
                    self.add_row(*(values.get(c, Text("")) for c in self._columns), key=name)
                    continue
                for col in self._columns:
                    new = values.get(col)
                    if new is not None and self.get_cell(name, col) != new:
                        # re-measuring widths means a layout pass: only when the cell grew
                        grew = new.cell_len > self.columns[col].content_width  # type: ignore[index]
                        self.update_cell(name, col, new, update_width=grew)
