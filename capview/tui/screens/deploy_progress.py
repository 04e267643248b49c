"""Deploy / rollback / prune progress: per-host phases, upload bars, downtime, one log per host.

The operation runs in an App-level worker, so going back to the main screen (escape)
does not stop it; ``o`` on the main screen comes back here. Cancel (``c``) is honoured
only before any host has begun its switch, and otherwise explains why not.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Footer, Header, Label, ProgressBar, Static, TabbedContent, TabPane

from capview.tui.operations import HostProgress, Operation
from capview.tui.text import clean_line, human_bytes, human_rate
from capview.tui.widgets.log_pane import LogPane
from capview.tui.widgets.phase_table import OUTCOME_STYLE, PhaseTable

STATE_STYLE = {"running": "bold yellow", "ok": "bold green", "failed": "bold red",
               "cancelled": "yellow", "error": "bold red"}


def _tab_id(host: str) -> str:
    return "log-" + "".join(c if c.isalnum() else "_" for c in host)


class UploadRow(Horizontal):
    """host | bar | bytes, rate, files."""

    DEFAULT_CSS = """
    UploadRow { height: 1; }
    UploadRow > .upload-host { width: 12; }
    UploadRow > ProgressBar { width: 44; }
    UploadRow > .upload-stats { width: 1fr; color: $text-muted; }
    """

    def __init__(self, host: str) -> None:
        super().__init__(classes="upload-row")
        self.host = host

    def compose(self) -> ComposeResult:
        yield Label(Text(clean_line(self.host), style="bold"), classes="upload-host")
        # a known total from the start: an indeterminate bar animates (and never snapshots the same)
        yield ProgressBar(total=1, show_eta=False, show_percentage=True)
        yield Label("", classes="upload-stats")

    def update_from(self, hp: HostProgress) -> None:
        u = hp.upload
        bar = self.query_one(ProgressBar)
        stats = self.query_one(".upload-stats", Label)
        if u is None:
            if hp.phases.get("upload") and hp.phases["upload"].state == "done":
                bar.update(total=1, progress=1)
                stats.update("unchanged files only")
            else:
                stats.update(Text("waiting", style="dim"))
            return
        bar.update(total=max(u.bytes_total, 1), progress=u.bytes_done)
        stats.update(Text(
            f"{human_bytes(u.bytes_done)} / {human_bytes(u.bytes_total)}  ·  {human_rate(hp.upload_rate)}"
            f"  ·  {u.files_done}/{u.files_total} files"
        ))


class ProgressScreen(Screen[None]):
    BINDINGS = [
        Binding("c", "cancel_operation", "Cancel", id="progress.cancel"),
        Binding("escape,b", "back", "Back (keeps running)", id="progress.back"),
        Binding("question_mark", "app.help", "Help", id="progress.help"),
        Binding("q", "app.quit_safely", show=False, id="progress.quit"),  # q quits here too, as on the main screen
    ]

    def __init__(self, op: Operation) -> None:
        super().__init__()
        self.op = op
        self._seen_changes = -1

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="progress"):
            yield Static(id="op-title")
            yield PhaseTable(id="phases")
            if "upload" in self.op.phase_names:
                with Vertical(id="uploads"):
                    for host in self.op.hosts:
                        yield UploadRow(host)
            yield Static(id="op-status")
            with TabbedContent(id="host-logs"):
                for host, hp in self.op.hosts.items():
                    with TabPane(Content(clean_line(host)), id=_tab_id(host)):
                        yield LogPane(stream=hp.log, max_lines=self.app.max_log_lines,  # type: ignore[attr-defined]
                                      flush_interval=self.app.log_flush_interval)  # type: ignore[attr-defined]
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = self.op.title
        self.refresh_op(force=True)
        self.set_interval(0.1, self.refresh_op, name="progress-tick")
        if getattr(self.op, "ready", None) is not None:
            self.call_after_refresh(self.op.ready.set)

    def operation_changed(self, op: Operation) -> None:
        if op is self.op:
            self.refresh_op()

    def refresh_op(self, force: bool = False) -> None:
        if not self.is_attached:
            return
        op = self.op
        now = self.app.clock()  # type: ignore[attr-defined]
        self.query_one(PhaseTable).update_from(op, now)  # spinners move with the clock
        if op.changes == self._seen_changes and not force:
            return
        self._seen_changes = op.changes
        self.query_one("#op-title", Static).update(self._title())
        for row in self.query(UploadRow):
            hp = op.hosts.get(row.host)
            if hp is not None:
                row.update_from(hp)
        self.query_one("#op-status", Static).update(self._status())

    def _title(self) -> Text:
        op = self.op
        t = Text()
        t.append(clean_line(op.title), style="bold")
        if op.dry_run:
            t.append("  (dry run)", style="italic")
        t.append("  ·  ")
        t.append(op.state, style=STATE_STYLE.get(op.state, ""))
        downs = [(h, hp.downtime) for h, hp in op.hosts.items() if hp.downtime is not None]
        if downs:
            t.append("  ·  downtime window ")
            t.append(", ".join(f"{clean_line(h)} {d:.2f}s" for h, d in downs), style="bold")
        return t

    def _status(self) -> Text:
        op = self.op
        if op.running:
            if op.switched:
                return Text("Past the switch on " + ", ".join(op.switched_hosts()) +
                            ": cancel is refused now; let it finish (a failed health check switches back).",
                            style="yellow")
            return Text("c cancels safely: no host has switched yet.", style="dim")
        t = Text(clean_line(op.summary()), style=STATE_STYLE.get(op.state, ""))
        if op.state == "ok" and op.kind == "release":
            t.append("   r on the main screen rolls back in one key.", style="dim")
        return t

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_cancel_operation(self) -> None:
        self.app.cancel_operation(self.op)  # type: ignore[attr-defined]
