"""The one set of number formats every front uses (CLI, dashboard, engine messages).

Sizes are binary and labelled as such (KiB, MiB, GiB: what ``du -h`` and ``df -h``
mean), so the dashboard, the CLI and a prune's report print the same text for the
same bytes. JSON never goes through here: it carries plain bytes and seconds.
"""

from __future__ import annotations

import math

_SIZE_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB")


def size(n: int | float | None, *, none: str = "-") -> str:
    """``968 B``, ``1.0 KiB``, ``207.0 KiB``, ``77.0 GiB``; None -> ``none``."""
    if n is None or (isinstance(n, float) and not math.isfinite(n)):
        return none
    value = float(n)
    if abs(value) < 1024:
        return f"{int(value)} B"
    for unit in _SIZE_UNITS:
        value /= 1024
        if abs(value) < 1024 or unit == _SIZE_UNITS[-1]:
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def rate(bytes_per_second: float | None, *, none: str = "-") -> str:
    if not bytes_per_second:
        return none
    return f"{size(bytes_per_second)}/s"


def duration(seconds: float | None, *, none: str = "-") -> str:
    """``0.21s``, ``12.3s``, ``4m05s``, ``2h03m``: short, always with a unit."""
    if seconds is None or not math.isfinite(seconds):
        return none
    s = max(0.0, float(seconds))
    if s < 10:
        return f"{s:.2f}s"
    if s < 60:
        return f"{s:.1f}s"
    total = int(round(s))
    if total < 3600:
        minutes, sec = divmod(total, 60)
        return f"{minutes}m{sec:02d}s"
    hours, rest = divmod(total, 3600)
    return f"{hours}h{rest // 60:02d}m"


def age(seconds: float | None, *, none: str = "-") -> str:
    """A compact age for tables: ``12s``, ``5 min``, ``3 h``, ``4 days``, ``2 months``."""
    if seconds is None or not math.isfinite(seconds):
        return none
    s = max(0.0, float(seconds))
    if s < 60:
        return f"{int(s)}s"
    if s < 3600:
        return f"{int(s // 60)} min"
    if s < 86400:
        return f"{int(s // 3600)} h"
    days = int(s // 86400)
    if days < 60:
        return plural(days, "day")
    if days < 730:
        return plural(days // 30, "month")
    return plural(days // 365, "year")


def ago(seconds: float | None, *, none: str = "-") -> str:
    """``5 min ago``; ``just now`` under a second."""
    if seconds is None or not math.isfinite(seconds):
        return none
    if seconds < 1:
        return "just now"
    return age(seconds) + " ago"


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 file``, ``2 files``, ``1 entry``/``3 entries`` (pass ``many`` for irregular words)."""
    return f"{n} {word if n == 1 else (many or word + 's')}"
