"""``l``: the service's own log on the selected host or environment (``capview logs``'
engine, ``engine.logs.logs``): the last lines, then following (``f`` toggles), paused and
resumed with space, read again with ``R``.

Whatever a host prints, the dashboard holds at most ``max_log_lines`` of it (the pane's
LogStream is a bounded deque and the Log widget prunes to the same cap), each line inert
and clipped (LogPane). While paused, lines keep arriving into the bounded stream and the
newest are shown on resume. Leaving the screen cancels the read, which ends the remote
command (the transport kills its process group / channel).
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Header, Static

from capview.errors import CapviewError
from capview.tui.operations import LogStream
from capview.tui.text import clean_line, plural
from capview.tui.widgets.footer import CapviewFooter, sync_bindings
from capview.tui.widgets.host_list import Target
from capview.tui.widgets.log_pane import LogPane

BACKLOG = 200  # lines each host prints before following


class LogsScreen(Screen[None]):
    BINDINGS = [
        Binding("f", "follow", "Follow", id="logs.follow"),
        Binding("f", "stop_following", "Stop following", id="logs.unfollow"),
        Binding("space", "pause", "Pause", id="logs.pause"),
        Binding("space", "resume", "Resume", id="logs.resume"),
        Binding("R", "reload", "Reload", id="logs.reload", key_display="R"),
        Binding("j", "scroll('down')", show=False),
        Binding("k", "scroll('up')", show=False),
        Binding("g", "scroll('home')", show=False),
        Binding("G", "scroll('end')", show=False),
        Binding("escape,b", "back", "Back", id="logs.back"),
        Binding("question_mark", "app.help", "Help", id="logs.help"),
        Binding("q", "app.quit_safely", "Quit", id="logs.quit"),
    ]
    FOOTER_KEEP = ["follow", "stop_following", "pause", "resume", "reload"]

    def __init__(self, target: Target, *, follow: bool = True) -> None:
        super().__init__()
        self.target = target
        self.following = follow
        self.paused = False
        self.stream: LogStream | None = None
        self.worker = None
        self.results: list = []  # engine.logs.HostLogs of the last read that ended
        self.error: str | None = None
        self._ticker = None  # the title's line count, once a second

    @property
    def capp(self):
        return self.app

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="logs"):
            yield Static(id="logs-title", classes="screen-title")
            yield LogPane(id="logs-pane", max_lines=self.capp.max_log_lines,
                          flush_interval=self.capp.log_flush_interval)
        yield CapviewFooter()

    def on_mount(self) -> None:
        self.sub_title = f"logs {self.target.label}"
        self.query_one(LogPane).focus()
        self.action_reload()

    @property
    def pane(self) -> LogPane:
        return self.query_one(LogPane)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "follow":
            return not self.following
        if action == "stop_following":
            return self.following
        if action == "pause":
            return not self.paused
        if action == "resume":
            return self.paused
        return True

    def _title(self) -> None:
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(f"Service log of {clean_line(self.target.label)}", style="bold")
        running = self.worker is not None and self.worker.is_running
        if self.paused:
            t.append("  paused", style="bold yellow")
        elif running and self.following:
            t.append("  following", style="bold green")
        elif running:
            t.append("  reading…", style="yellow")
        else:
            t.append("  ended", style="dim")
        if self.stream is not None:
            kept = len(self.stream.lines)
            t.append(f"  · {plural(self.stream.total, 'line')}", style="dim")
            if self.stream.total > kept:
                t.append(f" (the newest {kept} kept)", style="dim")
        for r in self.results:
            if not r.ok:
                t.append(f"  · {clean_line(r.host)}: {clean_line(r.error or 'failed')}", style="red")
        if self.error:
            t.append(f"  · {clean_line(self.error)}", style="red")
        self.query_one("#logs-title", Static).update(t)
        sync_bindings(self)

    # -- reading

    def action_reload(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
        self.stream = LogStream(self.capp.max_log_lines)
        self.results, self.error = [], None
        self.pane.attach(self.stream)
        prefix = self.target.host is None  # an environment: say which host each line is from

        def on_line(host: str, line: str) -> None:
            self.stream.append(f"{host}: {line}" if prefix else line)

        stream = self.stream
        # the screen's own worker: removed with the screen, which cancels it
        self.worker = self.run_worker(self._read(stream, on_line), name=f"logs {self.target.label}",
                                      group="logs", exit_on_error=False)
        self._title()
        if self._ticker is None:
            self._ticker = self.set_interval(1.0, self._title, name="logs-title")

    async def _read(self, stream: LogStream, on_line) -> None:
        try:
            results = await self.capp.backend.logs(self.target.env, host=self.target.host, lines=BACKLOG,
                                                    follow=self.following, on_line=on_line)
            error = None
        except CapviewError as exc:
            results, error = [], str(exc)
        if stream is self.stream and self.is_attached:
            self.results, self.error = results, error
            self.call_after_refresh(self._title)

    def on_worker_state_changed(self, event) -> None:
        if event.worker is self.worker:
            self._title()

    def action_follow(self) -> None:
        self.following = True
        self.action_reload()

    def action_stop_following(self) -> None:
        self.following = False
        if self.worker is not None:
            self.worker.cancel()  # what arrived stays; the remote command ends
        self._title()

    def action_pause(self) -> None:
        self.paused = self.pane.paused = True
        self._title()

    def action_resume(self) -> None:
        self.paused = self.pane.paused = False
        self.pane.flush()
        self._title()

    def action_scroll(self, where: str) -> None:
        pane = self.pane
        {"down": pane.scroll_down, "up": pane.scroll_up, "home": pane.scroll_home,
         "end": pane.scroll_end}[where]()

    def action_back(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
        self.app.pop_screen()

    def on_unmount(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
