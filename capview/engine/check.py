"""``capview check``: connect to every host at once and run the preflight script."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from capview.config import Environment, HostConfig
from capview.engine.context import Context
from capview.engine.hosts import each_host
from capview.engine.preflight import parse_preflight
from capview.engine.scripts.shell import Frames
from capview.engine.scripts.status import preflight
from capview.errors import CapviewError


@dataclass(frozen=True)
class HostCheck:
    host: str
    ok: bool
    failures: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    free_kb: int | None = None
    passed: tuple[str, ...] = ()  # the checks that passed (check -v)


async def check_host(ctx: Context, host: HostConfig) -> HostCheck:
    frames = Frames.new()
    try:
        res = await ctx.transport.run(host, frames.prelude() + preflight(host, for_deploy=True), timeout=60)
    except CapviewError as exc:
        return HostCheck(host.name, False, (str(exc),))
    except asyncio.TimeoutError:
        return HostCheck(host.name, False, ("preflight timed out after 60s",))
    report = parse_preflight(frames.parse(res.stdout))
    failures = report.failures
    if res.exit_status not in (0, 4) and not failures:
        failures = (f"preflight script failed (exit {res.exit_status}): {res.stderr.strip()[:200]}",)
    return HostCheck(host.name, not failures, failures, report.warnings, report.free_kb, report.passed)


async def check(ctx: Context, env: Environment, *, host: str | None = None) -> list[HostCheck]:
    return await each_host(env, host, lambda h: check_host(ctx, h))
