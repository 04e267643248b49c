"""The Textual dashboard. ``run_app`` is the entry point ``capview`` / ``capview ui`` call.

Importing this package is cheap: Textual is only imported when the app runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # pragma: no cover
    from capview.tui.backend import Backend


def run_app(
    config_path: Path,
    *,
    backend: "Backend | None" = None,
    clock: Callable[[], float] | None = None,
    refresh: float | str | None = None,
) -> int:
    """Open the dashboard on ``config_path`` (or on an injected backend). Returns an exit code.

    ``refresh``: seconds, or a duration like ``5s`` / ``500ms`` / ``2m`` (``capview ui --refresh``):
    the wait between the end of one status refresh and the start of the next."""
    from capview.tui.app import run_app as _run

    return _run(config_path, backend=backend, clock=clock, refresh=refresh)


async def run_app_async(
    config_path: Path,
    *,
    backend: "Backend | None" = None,
    clock: Callable[[], float] | None = None,
    refresh: float | str | None = None,
) -> int:
    """``run_app`` for callers that already run an event loop (the demo)."""
    from capview.tui.app import run_app_async as _run

    return await _run(config_path, backend=backend, clock=clock, refresh=refresh)


__all__ = ["run_app", "run_app_async"]
