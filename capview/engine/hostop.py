"""The frame every small per-host operation shares (init, pin, unlock, ...):
OperationStarted, one coroutine per host (bounded, concurrent), a HostFinished
per host, OperationFinished, and an OperationResult with the right exit code."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Awaitable, Callable

from capview.config import Environment, HostConfig
from capview.engine.context import Context, OperationResult
from capview.engine.events import HostFinished, LogLine, OperationFinished, OperationStarted
from capview.engine.frames import one_line
from capview.engine.status import each_host
from capview.errors import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, CapviewError, HostUnreachable, UsageError


@dataclass(frozen=True)
class Done:
    """A host's end: ok/failed, a one-line message, and the exit code it asks for."""

    ok: bool
    message: str
    code: int = EXIT_OK
    version: str | None = None


def failed(message: str, code: int = EXIT_FAILED, version: str | None = None) -> Done:
    return Done(False, message, code, version)


def log(ctx: Context, host: HostConfig, line: str, phase: str | None = None) -> None:
    ctx.event(LogLine, host.name, line=line, stream="info", phase=phase)


async def run_op(ctx: Context, env: Environment, host: str | None, operation: str,
                 fn: Callable[[HostConfig], Awaitable[Done]], *, version: str | None = None,
                 dry_run: bool = False) -> OperationResult:
    hosts = env.select(host)
    ctx.event(OperationStarted, None, operation=operation, env=env.name,
              hosts=tuple(h.name for h in hosts), version=version, dry_run=dry_run)

    async def one(h: HostConfig) -> tuple[HostFinished, int]:
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
        return hf, (EXIT_OK if done.ok else done.code)

    done = await each_host(env, host, one)
    result = OperationResult.from_hosts(tuple(d[0] for d in done), tuple(d[1] for d in done))
    ctx.event(OperationFinished, None, operation=operation, ok=result.ok, results=result.hosts)
    return result
