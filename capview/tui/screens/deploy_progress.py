"""Deploy / rollback / prune progress: per-host phases, upload bars, downtime, one log per host.

The operation runs in an App-level worker, so going back to the main screen (escape)
does not stop it; ``o`` on the main screen comes back here. Cancel (``c``) is offered
only while the operation runs, honoured only before any host has begun its switch, and
otherwise explains why not. Every host's message is shown in full below the table.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Header, Label, ProgressBar, Static, TabbedContent, TabPane

from capview.tui.operations import HostProgress, Operation
from capview.tui.text import clean_block, clean_line, plural, rate, size, word
from capview.tui.widgets.footer import CapviewFooter, sync_bindings
from capview.tui.widgets.log_pane import LogPane
from capview.tui.widgets.phase_table import OUTCOME_STYLE, PhaseTable

STATE_STYLE = {"running": "bold yellow", "ok": "bold green", "failed": "bold red",
               "cancelled": "yellow", "error": "bold red"}


def _tab_id(host: str) -> str:
    return "log-" + "".join(c if c.isalnum() else "_" for c in host)


def upload_stats(hp: HostProgress) -> Text:
    u = hp.upload
    if u is None:
        if hp.phases.get("upload") and hp.phases["upload"].state == "done":
            return Text("unchanged files only")
        return Text("waiting", style="dim")
    speed = f" · {rate(hp.upload_rate)}" if hp.upload_rate else ""
    return Text(f"{size(u.bytes_done)} / {size(u.bytes_total)}{speed} · {u.files_done}/{plural(u.files_total, 'file')}")


class UploadRow(Horizontal):
    """host | bar | bytes, rate, files."""

    DEFAULT_CSS = """
    UploadRow { height: 1; }
    UploadRow > .upload-host { width: 12; }
    UploadRow > ProgressBar { width: 30; }
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
        bar = self.query_one(ProgressBar)
        u = hp.upload
        if u is not None:
            bar.update(total=max(u.bytes_total, 1), progress=u.bytes_done)
        elif hp.phases.get("upload") and hp.phases["upload"].state == "done":
            bar.update(total=1, progress=1)
        self.query_one(".upload-stats", Label).update(upload_stats(hp))


class ProgressScreen(Screen[None]):
    BINDINGS = [
        Binding("c", "cancel_operation", "Cancel", id="progress.cancel"),
        Binding("s", "scripts", "Scripts", id="progress.scripts"),
        Binding("escape,b", "back_running", "Back (keeps running)", id="progress.back_running"),
        Binding("escape,b", "back", "Back", id="progress.back"),
        Binding("question_mark", "app.help", "Help", id="progress.help"),
        Binding("q", "app.quit_safely", "Quit", id="progress.quit"),
    ]
    FOOTER_KEEP = ["cancel_operation", "scripts"]

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
        yield CapviewFooter()

    def on_mount(self) -> None:
        self.sub_title = self.op.title
        self.refresh_op(force=True)
        self.set_interval(0.1, self.refresh_op, name="progress-tick")
        if getattr(self.op, "ready", None) is not None:
            self.call_after_refresh(self.op.ready.set)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel_operation":
            return self.op.running  # nothing to cancel once it has finished
        if action == "scripts":
            return any(hp.scripts for hp in self.op.hosts.values())
        if action in ("back_running", "back"):
            return self.op.running == (action == "back_running")  # "keeps running" only while it runs
        return True

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
        sync_bindings(self)

    def _title(self) -> Text:
        op = self.op
        t = Text()
        t.append(clean_line(op.title), style="bold")
        if op.dry_run:
            t.append("  (dry run)", style="italic")
        t.append("  ·  ")
        t.append(word(op.state), style=STATE_STYLE.get(op.state, ""))
        return t

    def _status(self) -> Text:
        op = self.op
        t = Text()
        for host, hp in op.hosts.items():
            if hp.outcome is None and not hp.warnings:
                continue
            t.append(clean_line(host), style="bold")
            if hp.outcome is not None:
                t.append(": ")
                t.append(word(hp.outcome), style=OUTCOME_STYLE.get(hp.outcome, ""))
                if hp.message:
                    t.append(": " + clean_line(hp.message))
            for w in hp.warnings[-3:]:
                t.append("\n  warning: " + clean_line(w), style="yellow")
            t.append("\n")
        if op.running:
            if op.switched:
                t.append("Past the switch on " + ", ".join(clean_line(h) for h in op.switched_hosts()) +
                         ": cancel is refused now; let it finish (a failed health check switches back).",
                         style="yellow")
            else:
                t.append("c cancels safely: no host has switched yet.", style="dim")
            return t
        if op.state == "error":
            t.append(clean_line(op.summary()), style=STATE_STYLE["error"])
        elif op.state == "ok" and op.kind == "release" and not op.dry_run:
            t.append("Done. r on the main screen rolls back in one key.", style="dim")
        elif op.state == "cancelled":
            t.append("Cancelled before the switch: the live release is unchanged (the new one, if uploaded, "
                     "stays as a failed release for inspection).", style="yellow")
        if t.plain.endswith("\n"):
            t.right_crop(1)
        return t

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_back_running(self) -> None:
        self.app.pop_screen()

    def action_cancel_operation(self) -> None:
        self.app.cancel_operation(self.op)  # type: ignore[attr-defined]

    def action_scripts(self) -> None:
        from capview.tui.screens.viewer import TextScreen

        body = Text()
        for host, hp in self.op.hosts.items():
            for phase, script in hp.scripts.items():
                body.append(f"# --- {clean_line(host)}: {clean_line(phase)} ---\n", style="bold cyan")
                body.append(clean_block(script) + "\n")
        self.app.push_screen(TextScreen(f"dry run: the scripts of {self.op.title}", body,
                                        subtitle=self.op.title))
