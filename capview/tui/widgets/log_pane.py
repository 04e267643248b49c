"""A capped log pane that writes in batches on a timer.

Lines are appended to a :class:`LogStream` (cheap, any rate); every ``flush_interval``
the pane writes what arrived since its last flush with one ``Log.write_lines`` call,
at most ``max_lines`` of them (older ones would be pruned straight away anyway).
Every line is made inert first (control characters become visible escapes) and clipped
to ``LINE_LIMIT`` characters, so neither a flood of lines nor one huge line can make
the pane hold more than ``max_lines`` x ``LINE_LIMIT``. ``paused``: nothing is written
until it is cleared (the stream keeps the newest lines meanwhile).

Search (``search``): a plain, case-insensitive substring of what the pane shows (the
inert text: an escape sequence is found as the ``\\x1b[..`` it is shown as, never
interpreted); every match is highlighted, ``search_step`` moves to the next or the
previous matching line (wrapping) and scrolls it into view.
"""

from __future__ import annotations

import re

from rich.cells import cell_len
from rich.style import Style
from rich.text import Text
from textual.screen import ModalScreen
from textual.strip import Strip
from textual.widgets import Log

from capview.tui.operations import LogStream
from capview.tui.text import clip

LINE_LIMIT = 2000  # characters of one line shown (a host may print megabytes without a newline)
SEARCH_LIMIT = 200  # characters of a search
MATCH = Style(color="#000000", bgcolor="#bcbc5f")  # every match: a dull yellow
CURRENT_MATCH = Style(color="#000000", bgcolor="#ff8700", bold=True)  # the one n / N went to: orange
CURRENT_LINE = Style(underline=True)


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
        self.search_text = ""  # what is searched for ("" : no search)
        self._search_re: re.Pattern[str] | None = None
        self.matches: list[int] = []  # indexes of the lines that match, oldest first
        self._match_set: frozenset[int] = frozenset()
        self.current: int | None = None  # index into ``matches`` of the match shown

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
        self._find()
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
        shown = [clip(line, LINE_LIMIT) for line in lines]
        before = len(self.lines)
        self.write_lines(shown)
        self.lines_written += len(lines)
        self.flushes += 1
        if self._search_re is not None:  # lines pruned from the top move every index up
            pruned = before + sum(len(x.splitlines()) for x in shown) - len(self.lines)
            self._find(keep=self._current_line(), shift=pruned)

    # -- search

    def search(self, text: str) -> int:
        """Highlight every line holding ``text`` (plain, any case); the number of such lines.
        The match shown stays unset until :meth:`search_step`."""
        text = text[:SEARCH_LIMIT]
        self.search_text = text
        self._search_re = re.compile(re.escape(text), re.IGNORECASE) if text else None
        self.current = None
        self._find()
        return len(self.matches)

    def clear_search(self) -> None:
        self.search("")

    def _current_line(self) -> int | None:
        return self.matches[self.current] if self.current is not None and self.matches else None

    def _find(self, keep: int | None = None, shift: int = 0) -> None:
        pat = self._search_re
        self.matches = [] if pat is None else [i for i, line in enumerate(self.lines) if pat.search(line)]
        self._match_set = frozenset(self.matches)
        self.current = None
        if keep is not None and keep - shift in self._match_set:
            self.current = self.matches.index(keep - shift)
        self._render_line_cache.clear()
        self.refresh()

    def search_step(self, forward: bool = True) -> int | None:
        """Show the next (or previous) matching line, wrapping; from the top of the view when
        no match is shown yet. The index into ``matches`` shown, None without any."""
        if not self.matches:
            self.current = None
            return None
        if self.current is None:
            top = int(self.scroll_y)
            after = [k for k, i in enumerate(self.matches) if i >= top]
            before = [k for k, i in enumerate(self.matches) if i < top]
            if forward:
                self.current = after[0] if after else 0
            else:
                self.current = before[-1] if before else len(self.matches) - 1
        else:
            self.current = (self.current + (1 if forward else -1)) % len(self.matches)
        line = self.matches[self.current]
        height = max(1, self.scrollable_content_region.height)
        if not (self.scroll_y <= line < self.scroll_y + height):
            self.scroll_to(y=max(0, line - height // 3), animate=False, immediate=True)
        self.refresh()
        return self.current

    def render_line(self, y: int) -> Strip:
        """Log's own line, or (a line that matches the search) the same with every match
        highlighted. The text is the pane's inert line: nothing in it is interpreted."""
        scroll_x, scroll_y = self.scroll_offset
        n = scroll_y + y
        pat = self._search_re
        if pat is None or n not in self._match_set or n >= len(self.lines):
            return super().render_line(y)
        rich_style = self.rich_style
        line = self._process_line(self.lines[n])  # Log's own (control codes -> a visible mark)
        text = Text(line, no_wrap=True)
        text.stylize(rich_style)
        current = self._current_line() == n
        if current:
            text.stylize(CURRENT_LINE)
        for m in pat.finditer(line):
            text.stylize(CURRENT_MATCH if current else MATCH, m.start(), m.end())
        strip = Strip(text.render(self.app.console), cell_len(line))
        return strip.crop_extend(scroll_x, scroll_x + self.size.width, rich_style).apply_offsets(scroll_x, n)
