"""``l``: the service's own log on the selected host or environment (``capview logs``'
engine, ``engine.logs.logs``): the last lines, then following (``f`` toggles), paused and
resumed with space, read again with ``R``; ``/`` searches what it shows (n / N: the next
and previous match, esc: done), pausing it meanwhile.

Whatever a host prints, the dashboard holds at most ``max_log_lines`` of it (the pane's
LogStream is a bounded deque and the Log widget prunes to the same cap), each line inert
and clipped (LogPane). While paused, lines keep arriving into the bounded stream and the
newest are shown on resume. Leaving the screen cancels the read, which ends the remote
command (the transport kills its process group / channel).
"""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Header, Input, Static

from capview.errors import CapviewError
from capview.tui.operations import LogStream
from capview.tui.text import clean_line, plural
from capview.tui.widgets.footer import CapviewFooter, sync_bindings
from capview.tui.widgets.host_list import Target
from capview.tui.widgets.log_pane import SEARCH_LIMIT, LogPane

BACKLOG = 200  # lines each host prints before following


class LogsScreen(Screen[None]):
    DEFAULT_CSS = """
    #logs-search-bar { height: 1; display: none; }
    #logs-search-bar.-open { display: block; }
    #logs-search-slash { width: 1; color: $accent; text-style: bold; }
    #logs-search { width: 1fr; height: 1; border: none; padding: 0 1 0 0; background: $boost; }
    #logs-search:focus { border: none; }
    #logs-search-count { width: auto; max-width: 60%; padding: 0 0 0 1; color: $text-muted; }
    """
    BINDINGS = [
        Binding("f", "follow", "Follow", id="logs.follow"),
        Binding("f", "stop_following", "Stop following", id="logs.unfollow"),
        Binding("space", "pause", "Pause", id="logs.pause"),
        Binding("space", "resume", "Resume", id="logs.resume"),
        Binding("slash", "search", "Search", id="logs.search"),
        Binding("n", "search_next", "Next match", id="logs.search_next"),
        Binding("N", "search_previous", "Prev match", id="logs.search_previous", key_display="N"),
        Binding("escape", "close_search", "Close search", id="logs.search_close"),
        Binding("R", "reload", "Reload", id="logs.reload", key_display="R"),
        Binding("j", "scroll('down')", show=False),
        Binding("k", "scroll('up')", show=False),
        Binding("g", "scroll('home')", show=False),
        Binding("G", "scroll('end')", show=False),
        Binding("escape,b", "back", "Back", id="logs.back"),
        Binding("question_mark", "app.help", "Help", id="logs.help"),
        Binding("q", "app.quit_safely", "Quit", id="logs.quit"),
    ]
    FOOTER_KEEP = ["close_search", "search_next", "search_previous", "search", "follow", "stop_following",
                   "pause", "resume", "reload"]
    COMMAND_HELP = {
        "search": "Find text in the log (plain, any case): enter jumps to it, n / N next / previous",
        "search_next": "The next line that matches the search",
        "search_previous": "The previous line that matches the search",
        "close_search": "End the search: following goes on as before",
    }

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
        self.searching = False  # a search is open (its bar shows; the pane is paused for it)
        self._paused_for_search = False  # the search paused the pane: closing it resumes

    @property
    def capp(self):
        return self.app

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="logs"):
            yield Static(id="logs-title", classes="screen-title")
            yield LogPane(id="logs-pane", max_lines=self.capp.max_log_lines,
                          flush_interval=self.capp.log_flush_interval)
            with Horizontal(id="logs-search-bar"):
                yield Static("/", id="logs-search-slash")
                yield Input(placeholder="search: plain text, any case (enter finds, esc closes)",
                            max_length=SEARCH_LIMIT, id="logs-search")
                yield Static(id="logs-search-count")
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
        if action in ("search_next", "search_previous", "close_search"):
            return self.searching
        return True

    def _title(self) -> None:
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(f"Service log of {clean_line(self.target.label)}", style="bold")
        running = self.worker is not None and self.worker.is_running
        if self.paused and self._paused_for_search:
            t.append("  paused for the search (esc resumes)", style="bold yellow")
        elif self.paused:
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
        if self.searching:
            self.action_close_search()
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
        if self.searching:  # resuming ends the search: the view would run away from it
            self._paused_for_search = True
            self.action_close_search()
            return
        self.paused = self.pane.paused = False
        self.pane.flush()
        self._title()

    # -- search

    @property
    def search_box(self) -> Input:
        return self.query_one("#logs-search", Input)

    def action_search(self) -> None:
        """Open the search bar (or go back to it): the pane stops moving until it is closed."""
        if not self.searching:
            self.searching = True
            self._paused_for_search = not self.paused
            self._scroll_before = self.pane.scroll_y
            self.paused = self.pane.paused = True
            self.query_one("#logs-search-bar").add_class("-open")
        box = self.search_box
        box.focus()
        box.select_all()
        self._search_count()
        self._title()

    @on(Input.Changed, "#logs-search")
    def _search_changed(self, event: Input.Changed) -> None:
        self.pane.search(event.value)
        self._search_count()

    @on(Input.Submitted, "#logs-search")
    def _search_submitted(self, event: Input.Submitted) -> None:
        pane = self.pane
        if pane.search_text != event.value[:SEARCH_LIMIT]:
            pane.search(event.value)
        if not event.value:
            self.action_close_search()
            return
        pane.search_step(True)
        pane.focus()  # n / N / esc from here on
        self._search_count()
        self._title()

    def action_search_next(self) -> None:
        self.pane.search_step(True)
        self._search_count()

    def action_search_previous(self) -> None:
        self.pane.search_step(False)
        self._search_count()

    def action_close_search(self) -> None:
        """Escape: no highlights, no bar; the pane as it was (following again if the search
        paused it, else where it was)."""
        if not self.searching:
            return
        self.searching = False
        pane = self.pane
        pane.clear_search()
        self.search_box.value = ""
        self.query_one("#logs-search-bar").remove_class("-open")
        pane.focus()
        if self._paused_for_search:
            self._paused_for_search = False
            self.paused = pane.paused = False
            pane.scroll_end(animate=False, immediate=True, x_axis=False)
            pane.flush()
        else:
            pane.scroll_to(y=self._scroll_before, animate=False, immediate=True)
        self._title()

    def search_status(self) -> str:
        """What the bar says: ``match 3 of 17``, ``17 matches``, ``no match for 'x'``."""
        pane = self.pane
        text = pane.search_text
        if not text:
            return ""
        shown = clean_line(text if len(text) <= 40 else text[:39] + "…")
        if not pane.matches:
            return f"no match for '{shown}'"
        if pane.current is None:
            return f"{plural(len(pane.matches), 'matching line')} for '{shown}'"
        return f"match {pane.current + 1} of {len(pane.matches)}"

    def _search_count(self) -> None:
        status = self.search_status()
        style = "red" if status.startswith("no match") else ""
        self.query_one("#logs-search-count", Static).update(Text(status, style=style, no_wrap=True,
                                                                 overflow="ellipsis"))

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
