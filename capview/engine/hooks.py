"""User hooks (issue 18): deploy.yaml's ``hooks`` as sh, folded into the phase scripts
(their text: engine/scripts/hooks.py), and what the engine reads back from them.

A hook point is a list of shell commands. Where each point runs (no round trip of its own):

* ``after_upload``: the link(+build) script, after the build (old release serving);
* ``before_start``: the switch transaction, after the swap, before the start (old
  release stopped): a failure is handled as a start that failed -> the revert;
* ``after_switch`` (release) / ``after_rollback`` (rollback): the transaction, after a
  healthy switch was recorded: a failure is a warning (the release is live);
* ``on_failure``: the transaction, after the revert: a warning only, never fatal.
"""

from __future__ import annotations

from capview.config import Settings
from capview.config.model import HOOK_POINTS
from capview.engine.layout import HOOKS_LOG
from capview.engine.scripts.hooks import (  # noqa: F401  (the builders, used through this module too)
    KILL_GRACE, TIMED_OUT, HookContext, commands, hook_env, hook_function, release_pieces, restore_precheck,
    rollback_pieces, snapshots_on, warning_only,
)


def dry_run_listing(settings: Settings, points: tuple[str, ...]) -> list[str]:
    """What ``--dry-run`` prints: one line per command that would run, in order."""
    out = []
    for point in points:
        cmds = commands(settings, point)
        for i, cmd in enumerate(cmds, 1):
            out.append(f"hooks.{point} [{i}/{len(cmds)}] (timeout {settings.hooks.timeout:g}s): {cmd}")
    return out


def hook_failure(frames: list[tuple[str, str]]) -> tuple[str, int, int] | None:
    """(point, command number, status) of the ``hook_failed`` frame, if any."""
    for kind, arg in frames:
        if kind == "hook_failed":
            parts = arg.split(" ")
            if len(parts) == 3 and parts[0] in HOOK_POINTS and parts[1].isdigit() and parts[2].lstrip("-").isdigit():
                return parts[0], int(parts[1]), int(parts[2])
    return None


def failure_words(found: tuple[str, int, int], version: str) -> str:
    point, n, rc = found
    why = "timed out" if rc == TIMED_OUT else f"exit {rc}"
    return f"hooks.{point} command {n} failed ({why}); see releases/{version}/{HOOKS_LOG}"


def is_hook_output(line: str) -> bool:
    """A log line a hook printed (``[point] ...``): the fronts show these even when quiet."""
    return line.startswith("[") and line.partition("] ")[0][1:] in HOOK_POINTS
