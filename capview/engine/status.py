"""``capview releases`` / the dashboard: what is on each host, all hosts at once
(one read-only script each; see snapshot.py)."""

from __future__ import annotations

from capview.config import Environment, HostConfig
from capview.engine.context import Context
from capview.engine.hosts import each_host
from capview.engine.model import HostStatus
from capview.engine.scripts.shell import one_line
from capview.engine.snapshot import Snapshot, snapshot  # noqa: F401  (public: prune, migrate, tests)


def unreachable(host: HostConfig, exc: BaseException, env: str = "") -> HostStatus:
    return HostStatus(host=host.name, env=host.env or env, reachable=False,
                      error=one_line(str(exc) or type(exc).__name__))


async def host_status(ctx: Context, host: HostConfig, env: str = "") -> HostStatus:
    try:
        return (await snapshot(ctx, host, env, detail=False)).status
    except Exception as exc:  # one bad host never fails the others
        return unreachable(host, exc, env)


async def status(ctx: Context, env: Environment, *, host: str | None = None) -> list[HostStatus]:
    """Per host, in config order: layout, current, previous, lock, releases with sizes."""
    return await each_host(env, host, lambda h: host_status(ctx, h, env.name))
