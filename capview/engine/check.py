"""``capview check``: connect to every host at once and run the preflight script."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from capview.config import Environment, HostConfig
from capview.engine.context import Context
from capview.engine.preflight import parse_preflight, preflight_script
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
    try:
        res = await ctx.transport.run(host, preflight_script(host, for_deploy=True), timeout=60)
    except CapviewError as exc:
        return HostCheck(host.name, False, (str(exc),))
    except asyncio.TimeoutError:
        return HostCheck(host.name, False, ("preflight timed out after 60s",))
    report = parse_preflight(res.stdout)
    failures = report.failures
    if res.exit_status not in (0, 4) and not failures:
        failures = (f"preflight script failed (exit {res.exit_status}): {res.stderr.strip()[:200]}",)
    return HostCheck(host.name, not failures, failures, report.warnings, report.free_kb, report.passed)


async def check(ctx: Context, env: Environment, *, host: str | None = None) -> list[HostCheck]:
    gate = asyncio.Semaphore(env.max_parallel)

    async def one(h: HostConfig) -> HostCheck:
        async with gate:
            return await check_host(ctx, h)

    return list(await asyncio.gather(*(one(h) for h in env.select(host))))
