"""Rich ``Text`` from host strings and engine numbers: the dashboard's only formatting.

Remote strings go through :mod:`capview.inert` (every control character, escape
sequence and bidi override shown as a visible escape) and are never parsed as markup;
numbers go through :mod:`capview.units`, the formatter the CLI uses too, so the same
release prints the same size in both. Nothing here formats on its own.
"""

from __future__ import annotations

import time

from rich.text import Text

from capview import inert as _inert
from capview import units
from capview.tui.operations import word  # noqa: F401  (re-exported for the screens)

clean_line = _inert.line
clean_block = _inert.block
clip = _inert.clip
size = units.size
duration = units.duration
age = units.age
ago = units.ago
plural = units.plural
rate = units.rate

# What the size columns mean (the help screen and the column tooltips say it in words).
SIZE_HELP = ("size: the release's files (apparent bytes, each hard-linked file counted once); "
             "unique: disk space only this release holds, shared hard links not counted: what deleting "
             "it alone frees, and what prune reports per release. Binary units: 1 KiB = 1024 bytes.")

def inert(s: object, style: str = "") -> Text:
    """A single-line Text showing ``s`` literally (no markup, no escape sequences)."""
    return Text(clean_line(s), style=style, no_wrap=True, overflow="ellipsis")


def inert_block(s: object, style: str = "") -> Text:
    return Text(clean_block(s), style=style)


def stamp(at: float | None, *, seconds: bool = True) -> str:
    """Local wall-clock time of an engine timestamp: ``14:03:22``; a date when not today."""
    if at is None:
        return "-"
    return time.strftime("%H:%M:%S" if seconds else "%H:%M", time.localtime(at))


def when(at: float | None, now: float) -> str:
    """``2026-01-01 12:00`` (local time) for tables that list events over days."""
    if at is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(at))
