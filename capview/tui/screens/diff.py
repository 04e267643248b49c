"""One file's diff between two releases, fetched from the host in one script
(``engine.inspect.read_pair``: both sides get the inspector's path checks).

Both sides are made inert first (``capview.inert.block``), then diffed with difflib and
shown with Rich's ``diff`` highlighting, which colours lines and never parses markup.
"""

from __future__ import annotations

import difflib

from rich.syntax import Syntax
from rich.text import Text

from capview.engine.inspect import FilePair
from capview.tui.screens.viewer import TextScreen
from capview.tui.text import clean_block, clean_line, plural

MAX_DIFF_LINES = 20_000


def unified(pair: FilePair) -> tuple[str, int, int]:
    """The unified diff text, and how many lines were added and removed."""
    old = clean_block(pair.old).splitlines() if pair.old is not None else []
    new = clean_block(pair.new).splitlines() if pair.new is not None else []
    path = clean_line(pair.path)
    lines = list(difflib.unified_diff(
        old, new, fromfile=f"{clean_line(pair.a)}/{path}" if pair.old is not None else "/dev/null",
        tofile=f"{clean_line(pair.b)}/{path}" if pair.new is not None else "/dev/null", lineterm="", n=3))
    added = sum(1 for x in lines if x.startswith("+") and not x.startswith("+++"))
    removed = sum(1 for x in lines if x.startswith("-") and not x.startswith("---"))
    if len(lines) > MAX_DIFF_LINES:
        lines = lines[:MAX_DIFF_LINES] + [f"... ({len(lines) - MAX_DIFF_LINES} more lines not shown)"]
    return "\n".join(lines), added, removed


def diff_screen(pair: FilePair) -> TextScreen:
    text, added, removed = unified(pair)
    title = Text()
    title.append(clean_line(pair.path), style="bold")
    title.append(f"  {clean_line(pair.a)} → {clean_line(pair.b)}  ", style="dim")
    title.append(f"+{plural(added, 'line')}", style="green")
    title.append("  ")
    title.append(f"-{plural(removed, 'line')}", style="red")
    if not text:
        body: object = Text("the two versions are identical (only mode or metadata differ)", style="dim")
    else:
        body = Syntax(text, "diff", theme="ansi_dark", word_wrap=False, background_color="default")
    return TextScreen(title, body, subtitle=f"diff {clean_line(pair.path)}")
