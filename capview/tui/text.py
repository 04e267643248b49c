"""Rendering remote text inert, and the small formatters every widget shares.

Anything that came from a host (release names, operators, commits, file names and
contents, log lines, error messages) goes through :func:`inert` / :func:`clean_line`
before it reaches a widget: it is never parsed as markup, and control characters
(escape sequences, carriage returns, NULs) are shown as visible ``\\x1b`` escapes.
"""

from __future__ import annotations

import re
from datetime import timedelta

import humanize
from rich.text import Text

_CTRL_LINE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")  # everything but TAB
_CTRL_BLOCK = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # keeps TAB and LF


def _esc(m: re.Match[str]) -> str:
    ch = m.group()
    return {"\n": "\\n", "\r": "\\r"}.get(ch, f"\\x{ord(ch):02x}")


def clean_line(s: object) -> str:
    """One displayable line: control characters (newlines too) become visible escapes."""
    text = "" if s is None else str(s)
    return _CTRL_LINE.sub(_esc, text).expandtabs(4)


def clean_block(s: object) -> str:
    """Multi-line text (file contents, logs): keeps newlines, escapes other control characters."""
    text = "" if s is None else str(s)
    return _CTRL_BLOCK.sub(_esc, text.replace("\r\n", "\n")).expandtabs(4)


def inert(s: object, style: str = "") -> Text:
    """A Text that shows ``s`` literally: no markup parsing, no escape sequences."""
    return Text(clean_line(s), style=style, no_wrap=True, overflow="ellipsis")


def inert_block(s: object, style: str = "") -> Text:
    return Text(clean_block(s), style=style)


def human_bytes(n: int | float | None) -> str:
    if n is None:
        return "—"
    if abs(n) < 1000:  # humanize says "968 Bytes"; keep the column's short unit style
        return f"{int(n)} B"
    return humanize.naturalsize(n, format="%.1f")


def human_age(seconds: float | None) -> str:
    """'3 minutes ago' for a delta (computed against the injected clock by the caller)."""
    if seconds is None:
        return "—"
    if seconds < 0:
        seconds = 0
    return humanize.naturaltime(timedelta(seconds=seconds))


def human_delta(seconds: float | None) -> str:
    """A compact age for tables: '3 min', '12 days', 'a month' (humanize's naturaldelta)."""
    if seconds is None:
        return "—"
    text = humanize.naturaldelta(timedelta(seconds=max(0.0, seconds)))
    return (text.replace(" minutes", " min").replace("a minute", "1 min")
            .replace(" seconds", " sec").replace("a second", "1 sec"))


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(round(seconds)), 60)
    return f"{minutes}m{sec:02d}s"


def human_rate(bytes_per_second: float | None) -> str:
    if not bytes_per_second:
        return "—"
    return f"{human_bytes(bytes_per_second)}/s"
