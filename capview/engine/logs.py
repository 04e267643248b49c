"""``capview logs``: the service's own output, from every selected host at once.

systemd-user units are read with ``journalctl --user -u UNIT``; ``service.logs`` (any
manager: an app that logs to files) replaces that with the operator's command, which
gets ``CAPVIEW_LINES``, ``CAPVIEW_FOLLOW`` (1 or empty) and ``CAPVIEW_SINCE`` in its
environment so it can honour ``-n``, ``-f`` and ``--since``. ``-f`` runs until the
caller is cancelled (Ctrl-C): cancelling a run kills the remote process group.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Callable

from capview.config import Environment, HostConfig
from capview.engine.context import Context
from capview.engine.scripts.logs import logs_script
from capview.engine.scripts.shell import one_line
from capview.errors import CapviewError, HostUnreachable, UsageError

MAX_LINES = 100_000
# journalctl's time spec, restricted to what needs no quoting tricks: "10m" (made
# relative: "-10m"), "-2h", "today", "yesterday", "2026-12-01", "2026-12-01 10:00[:00]".
_SINCE_RE = re.compile(
    r"^(?:[+-]?\d+\s*(?:s|sec|m|min|h|d|w)|today|yesterday|now|"
    r"\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2})?)?)$"
)


def validate_since(since: str) -> str:
    s = since.strip()
    if not _SINCE_RE.fullmatch(s):
        raise UsageError(f"--since {since!r}: use e.g. 10m, 2h, 1d, today, yesterday or 2026-12-01 10:00")
    return "-" + s.replace(" ", "") if s[0].isdigit() and not re.match(r"^\d{4}-", s) else s


def validate_lines(lines: int) -> int:
    if not 1 <= lines <= MAX_LINES:
        raise UsageError(f"-n {lines}: give 1 to {MAX_LINES} lines")
    return lines


@dataclass(frozen=True)
class HostLogs:
    host: str
    ok: bool
    lines: int = 0
    error: str | None = None
    unreachable: bool = False


async def logs(ctx: Context, env: Environment, *, host: str | None = None, lines: int = 100,
               follow: bool = False, since: str | None = None,
               on_line: Callable[[str, str], None]) -> list[HostLogs]:
    """Stream each selected host's service log to ``on_line(host, line)`` (host text: make it inert)."""
    validate_lines(lines)
    since = validate_since(since) if since else None
    hosts = env.select(host)
    scripts = {h.name: logs_script(h.settings, lines=lines, follow=follow, since=since) for h in hosts}

    async def one(h: HostConfig) -> HostLogs:
        count = 0

        def line(stream: str, text: str) -> None:
            nonlocal count
            count += 1
            on_line(h.name, text)

        try:
            res = await ctx.transport.run(h, scripts[h.name], on_line=line)
        except HostUnreachable as exc:
            return HostLogs(h.name, False, count, one_line(str(exc)), unreachable=True)
        except CapviewError as exc:
            return HostLogs(h.name, False, count, one_line(str(exc)))
        if not res.ok:
            return HostLogs(h.name, False, count, one_line(res.stderr or f"exit {res.exit_status}"))
        return HostLogs(h.name, True, count)

    # not bounded by max_parallel: with -f every host streams until the end
    return list(await asyncio.gather(*(one(h) for h in hosts)))
