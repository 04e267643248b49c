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
    return Text("✗ " + ("cancel" if ps.detail == "cancelled" else human_duration(ps.duration)), style="bold red")


def result_cell(hp: HostProgress) -> Text:
    if hp.outcome is None:
        if hp.current_phase:
            return Text(clean_line(hp.current_phase) + "…", style="yellow")
        return Text("waiting", style="dim")
    t = Text(clean_line(hp.outcome), style=OUTCOME_STYLE.get(hp.outcome, ""), no_wrap=True, overflow="ellipsis")
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
        # every column has a fixed width: re-measuring while cells change is racy and costs layouts
        if not self._columns:
            self.add_column("host", key="host", width=max([4, *(len(clean_line(h)) for h in op.hosts)]))
            self._columns.append("host")
        # fixed widths ("✓ 14.8s", "⠋ 0.00s", "✗ cancel" all fit in 8): a spinner never re-measures
        for phase in op.phase_names:
            if phase not in self._columns:
                self.add_column(phase, key=phase, width=max(8, len(phase)), default=Text("·", style="dim"))
                self._columns.append(phase)
        if "downtime" not in self._columns:
            self.add_column("downtime", key="downtime", width=8, default=Text("—", style="dim"))
            self.add_column("result", key="result", width=44, default=Text(""))
            self._columns += ["downtime", "result"]
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
                        self.update_cell(name, col, new)
