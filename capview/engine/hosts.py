"""The one fan-out over an environment's hosts, and the one per-host result shape.

* :func:`each_host`: a read (status, check, a plan) of every selected host at once,
  at most ``max_parallel`` at a time; results in config order.
* :func:`operation`: a change (deploy, rollback, restart, migrate, prune, init, ...):
  OperationStarted, one coroutine per host, a HostFinished per host, OperationFinished,
  and an OperationResult with the right exit code. ``follow_strategy`` runs the hosts as
  the environment says: ``parallel`` (bounded by max_parallel) or ``rolling`` (one by
  one, the rest skipped after the first failure); otherwise they run concurrently.
* :func:`small_op`: :func:`operation` for an op whose host step returns a :class:`Done`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Awaitable, Callable, NamedTuple, Sequence, TypeVar

from capview.config import Environment, HostConfig
from capview.engine.context import Context, OperationResult
from capview.engine.events import HostFinished, LogLine, OperationFinished, OperationStarted
from capview.engine.scripts.shell import one_line
from capview.errors import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, CapviewError, HostUnreachable, UsageError

T = TypeVar("T")


class HostResult(NamedTuple):
    """A host's end: its HostFinished event and the exit code it asks for."""

    finished: HostFinished
    code: int


@dataclass(frozen=True)
class Done:
    """What a small op's host step returns: ok/failed, a one-line message, an exit code."""

    ok: bool
    message: str
    code: int = EXIT_OK
    version: str | None = None


def failed(message: str, code: int = EXIT_FAILED, version: str | None = None) -> Done:
    return Done(False, message, code, version)


def log(ctx: Context, host: HostConfig, line: str, phase: str | None = None) -> None:
    ctx.event(LogLine, host.name, line=line, stream="info", phase=phase)


async def each_host(env: Environment, host: str | None, fn: Callable[[HostConfig], Awaitable[T]]) -> list[T]:
    """Run ``fn`` for the selected hosts concurrently, at most env.max_parallel at a time."""
    return await _bounded(env.select(host), fn, env.max_parallel)


async def _bounded(hosts: Sequence[HostConfig], fn: Callable[[HostConfig], Awaitable[T]], limit: int) -> list[T]:
    gate = asyncio.Semaphore(max(1, limit))

    async def one(h: HostConfig) -> T:
        async with gate:
            return await fn(h)

    return list(await asyncio.gather(*(one(h) for h in hosts)))


async def _rolling(ctx: Context, hosts: Sequence[HostConfig], fn: Callable[[HostConfig], Awaitable[HostResult]],
                   version: str | None) -> list[HostResult]:
    results: list[HostResult] = []
    for i, h in enumerate(hosts):
        res = await fn(h)
        results.append(res)
        if res.finished.outcome not in ("ok", "skipped"):
            for rest in hosts[i + 1:]:
                skipped = HostFinished(host=rest.name, at=ctx.clock(), outcome="skipped",
                                       message=f"not started: {h.name} failed (strategy rolling)", version=version)
                ctx.emit(skipped)
                results.append(HostResult(skipped, EXIT_OK))
            break
    return results


async def operation(ctx: Context, env: Environment, host: str | None, name: str,
                    one: Callable[[HostConfig], Awaitable[HostResult]], *, version: str | None = None,
                    dry_run: bool = False, follow_strategy: bool = False,
                    hosts: Sequence[HostConfig] | None = None) -> OperationResult:
    hosts = tuple(hosts if hosts is not None else env.select(host))
    ctx.event(OperationStarted, None, operation=name, env=env.name,
              hosts=tuple(h.name for h in hosts), version=version, dry_run=dry_run)
    if follow_strategy and env.strategy == "rolling" and len(hosts) > 1:
        results = await _rolling(ctx, hosts, one, version)
    else:
        results = await _bounded(hosts, one, env.max_parallel)
    out = OperationResult.from_hosts(tuple(r.finished for r in results), tuple(r.code for r in results))
    ctx.event(OperationFinished, None, operation=name, ok=out.ok, results=out.hosts)
    return out


async def small_op(ctx: Context, env: Environment, host: str | None, name: str,
                   fn: Callable[[HostConfig], Awaitable[Done]], *, version: str | None = None,
                   dry_run: bool = False) -> OperationResult:

    async def one(h: HostConfig) -> HostResult:
        t0 = ctx.clock()
        try:
            done = await fn(h)
        except UsageError:
            raise
        except HostUnreachable as exc:
            done = failed(one_line(str(exc)), EXIT_UNREACHABLE)
        except (CapviewError, OSError, RuntimeError, ValueError) as exc:
            done = failed(one_line(str(exc) or type(exc).__name__))
        hf = HostFinished(host=h.name, at=ctx.clock(), outcome="ok" if done.ok else "failed",
                          message=done.message, version=done.version or version, duration=ctx.clock() - t0)
        ctx.emit(hf)
        return HostResult(hf, EXIT_OK if done.ok else done.code)

    return await operation(ctx, env, host, name, one, version=version, dry_run=dry_run)
