"""A capped log pane that writes in batches on a timer.

Lines are appended to a :class:`LogStream` (cheap, any rate); every ``flush_interval``
the pane writes what arrived since its last flush with one ``Log.write_lines`` call,
at most ``max_lines`` of them (older ones would be pruned straight away anyway).
Every line is made inert first (control characters become visible escapes) and clipped
to ``LINE_LIMIT`` characters, so neither a flood of lines nor one huge line can make
the pane hold more than ``max_lines`` x ``LINE_LIMIT``. ``paused``: nothing is written
until it is cleared (the stream keeps the newest lines meanwhile).
"""

from __future__ import annotations

from textual.screen import ModalScreen
from textual.widgets import Log

from capview.tui.operations import LogStream
from capview.tui.text import clip

LINE_LIMIT = 2000  # characters of one line shown (a host may print megabytes without a newline)


class LogPane(Log):
    DEFAULT_CSS = """
    LogPane { height: 1fr; overflow-x: hidden; overflow-y: scroll; scrollbar-size-vertical: 1; }
    """

    def __init__(self, *, max_lines: int = 5000, flush_interval: float = 0.1,
                 stream: LogStream | None = None, name: str | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(max_lines=max_lines, auto_scroll=True, name=name, id=id, classes=classes)
        self.flush_interval = flush_interval
        self.own = LogStream(max_lines)
        self.stream = stream or self.own
        self._seen = 0
        self.lines_written = 0  # total lines handed to write_lines (tests and benchmarks read it)
        self.flushes = 0
        self.paused = False
        self._pinned = True  # following the newest line (False once the user scrolls up)

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        self._pinned = new >= self.max_scroll_y

    def on_resize(self) -> None:
        # Log follows new lines only from the end; a shrink (a table above appearing) leaves
        # it short of the end, and from then on the newest lines would stay hidden.
        if self.auto_scroll and self._pinned and not self.is_vertical_scroll_end:
            self.scroll_end(animate=False, immediate=True, x_axis=False)

    def on_mount(self) -> None:
        self._timer = self.set_interval(self.flush_interval, self.flush, name="log-flush")
        self.flush()

    def attach(self, stream: LogStream, *, replay: bool = True) -> None:
        """Follow another stream (an operation's); ``replay`` shows what it already holds."""
        self.stream = stream
        self._seen = 0 if replay else stream.total
        self.clear()
        self.flush()

    def push(self, line: str) -> None:
        """Append a line of our own (written on the next flush)."""
        self.own.append(line)

    @property
    def showing(self) -> bool:
        """On a visible screen (the current one, or under dialogs only) and not inside a
        hidden tab: only then is writing worth it."""
        try:
            stack = self.app.screen_stack
            above = stack[stack.index(self.screen) + 1:]
        except Exception:
            return False
        if not all(isinstance(s, ModalScreen) for s in above):  # a dialog leaves it in view
            return False
        return all(node.display for node in self.ancestors_with_self)

    @property
    def pending(self) -> bool:
        """Lines it will write on its next flush (tests wait for none before a screenshot)."""
        return self.showing and not self.paused and self.stream.total > self._seen

    def flush(self) -> None:
        """Write what arrived since the last flush (the newest max_lines of it) in one batch.

        Hidden panes (another screen on top, an inactive tab) skip the work and catch up
        when shown: the stream keeps the newest lines, so nothing needed is lost."""
        if not self.is_attached or self.paused or not self.showing:
            return
        lines, self._seen = self.stream.since(self._seen)
        if not lines:
            return
        self.write_lines([clip(line, LINE_LIMIT) for line in lines])
        self.lines_written += len(lines)
        self.flushes += 1
