"""The history (``history.jsonl``): parse it, replay which release was live when, build records.

The replay is what makes "rollback" go to the release that was live before,
rather than the one that sorts or was modified last.
"""

from __future__ import annotations

import json
import math
from typing import Collection, Iterable

from capview.engine.layout import is_version

# Ops whose successful record puts "to" live (a migration creates the first live release).
_PUSHING_OPS = ("release", "migrate")


def parse_history(text: str) -> list[dict]:
    """One dict per valid JSON-object line; corrupt or truncated lines are skipped."""
    return parse_history_counted(text)[0]


def parse_history_counted(text: str) -> tuple[list[dict], int]:
    """parse_history, plus how many non-empty lines were skipped as unreadable."""
    records: list[dict] = []
    skipped = 0
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            skipped += 1
            continue
        if isinstance(obj, dict):
            records.append(obj)
        else:
            skipped += 1
    return records, skipped


def shown_record(rec: dict) -> bool:
    """A record a front can show: ``at`` a plausible time (seconds since the epoch) and ``op`` a string."""
    at = rec.get("at")
    return (isinstance(at, (int, float)) and not isinstance(at, bool) and math.isfinite(at)
            and 0 <= at < 1e11 and isinstance(rec.get("op"), str))


def _target(rec: dict) -> str | None:
    to = rec.get("to")
    return to if isinstance(to, str) and is_version(to) else None


def live_stack(records: Iterable[dict]) -> list[str]:
    """Replay history into the stack of live releases (top = last live).

    A successful release pushes its version; a rollback to X pops until X is on
    top (or pushes X when it is not on the stack). A release that was
    auto-rolled back is recorded with "to" = the restored version, which is then
    already on top, so it never stays on the stack.
    """
    stack: list[str] = []
    for rec in records:
        to = _target(rec)
        outcome = rec.get("outcome")
        if to is None or outcome not in ("ok", "rolled_back"):
            continue
        op = rec.get("op")
        if op in _PUSHING_OPS and outcome == "ok":
            if not stack or stack[-1] != to:
                stack.append(to)
        elif op == "rollback" or (op in _PUSHING_OPS and outcome == "rolled_back"):
            if to in stack:
                del stack[len(stack) - 1 - stack[::-1].index(to) + 1:]
            else:
                stack.append(to)
    return stack


def previous_live(records: Iterable[dict], current: str | None,
                  existing: Collection[str] | None = None) -> str | None:
    """The default rollback target: the live release below ``current`` on the stack.

    ``existing`` (the retained releases) skips entries that were pruned since.
    If ``current`` is not on the stack (changed by hand), the stack top is it.
    """
    stack = live_stack(records)
    if current is not None and current in stack:
        stack = stack[: len(stack) - 1 - stack[::-1].index(current)]
    for version in reversed(stack):
        if version != current and (existing is None or version in existing):
            return version
    return None


def history_record(op: str, host: str, operator: str, at: float, **fields) -> dict:
    """A history line with the common keys; op-specific keys are passed as fields."""
    rec = {"at": at, "op": op, "host": host, "operator": operator}
    rec.update(fields)
    return rec
