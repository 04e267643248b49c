"""``capview check``: connect to every host at once and run the preflight script."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from capview.config import Environment, HostConfig
from capview.engine.context import Context
from capview.engine.hosts import each_host
from capview.engine.layout import HostPaths, current_version
from capview.engine.model import ServiceState
from capview.engine.preflight import parse_preflight
from capview.engine.scripts.fleet import current_probe
from capview.engine.scripts.service import service_state_if_deployed
from capview.engine.split import Split
from capview.engine.scripts.shell import Frames
from capview.engine.scripts.status import preflight
from capview.engine.service_state import advice, parse_service
from capview.errors import CapviewError


@dataclass(frozen=True)
class HostCheck:
    host: str
    ok: bool
    failures: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    free_kb: int | None = None
    passed: tuple[str, ...] = ()  # the checks that passed (check -v)
    service: ServiceState | None = None  # issue 16: None when not deployed or not asked
    current: str | None = None  # issue 17: the release current names (None: none / not read)
    reachable: bool = True


async def check_host(ctx: Context, host: HostConfig) -> HostCheck:
    frames = Frames.new()
    try:
        script = (frames.prelude() + current_probe(HostPaths(host.settings.deploy_path))
                  + service_state_if_deployed(host.settings) + preflight(host, for_deploy=True))
        res = await ctx.transport.run(host, script, timeout=60)
    except CapviewError as exc:
        return HostCheck(host.name, False, (str(exc),), reachable=False)
    except asyncio.TimeoutError:
        return HostCheck(host.name, False, ("preflight timed out after 60s",), reachable=False)
    parts = frames.parse(res.stdout)
    report = parse_preflight(parts)
    failures = report.failures
    if res.exit_status not in (0, 4) and not failures:
        failures = (f"preflight script failed (exit {res.exit_status}): {res.stderr.strip()[:200]}",)
    # a deployed host whose service is down is a failure (issue 16), whatever else passed
    body = next((b for kind, _, b in parts if kind == "service"), None)
    service = parse_service(host.settings, body) if body is not None else None
    passed = report.passed
    if service is not None and service.down:
        failures += (advice(host.env or "ENV", service),)
    elif service is not None and service.condition != "unknown":
        passed += (f"the service is {service.summary}",)
    cur = next((a for k, a, _ in parts if k == "current"), "")
    return HostCheck(host.name, not failures, failures, report.warnings, report.free_kb, passed, service,
                     current_version(cur.strip(), host.settings.deploy_path) if cur.strip() else None)


async def check(ctx: Context, env: Environment, *, host: str | None = None) -> list[HostCheck]:
    return await each_host(env, host, lambda h: check_host(ctx, h))


def check_split(env: str, reports: list[HostCheck]) -> Split:
    """issue 17: the environment is split when its hosts' ``current`` differ."""
    return Split(env, {r.host: r.current for r in reports if r.reachable},
                 tuple(r.host for r in reports if not r.reachable), listed=False)
