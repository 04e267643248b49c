"""Per-host plumbing shared by operations: run a phase script, count round trips and
bytes for this host, turn output lines into LogLine events, time phases."""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from typing import AsyncIterable, AsyncIterator, Callable

from capview.config import HostConfig
from capview.engine.context import Context
from capview.engine.events import HostFinished, LogLine, PhaseFinished, PhaseStarted
from capview.engine.layout import HostPaths
from capview.engine.script import MARK
from capview.errors import CapviewError
from capview.remote.transport import RunResult


async def await_through_cancel(task: asyncio.Future):
    """Wait for a shielded task (a switch in progress) to finish even while the caller is
    being cancelled; return its result, or None if it failed or was cancelled itself."""
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            continue
        except BaseException:
            break
    if task.cancelled() or task.exception() is not None:
        return None
    return task.result()


class PhaseFailed(CapviewError):
    """A phase failed; ``code`` is the exit code the operation should end with."""

    def __init__(self, message: str, code: int = 1, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.code = code


class HostRun:
    def __init__(self, ctx: Context, host: HostConfig) -> None:
        self.ctx = ctx
        self.host = host
        self.settings = host.settings
        self.paths = HostPaths(host.settings.deploy_path)
        self.round_trips = 0
        self.bytes_sent = 0
        self.phases: dict[str, float] = {}
        self.phase: str | None = None
        self.started = ctx.clock()
        self._mono = time.monotonic()

    def log(self, line: str, stream: str = "info") -> None:
        self.ctx.event(LogLine, self.host.name, line=line, stream=stream, phase=self.phase)

    async def run(
        self,
        script: str,
        *,
        stdin: bytes | AsyncIterable[bytes] | None = None,
        on_marker: Callable[[str, str], None] | None = None,
        quiet: bool = False,
        timeout: float | None = None,
    ) -> RunResult:
        """Run one script (one round trip). Non-marker lines become LogLine events."""
        self.round_trips += 1

        def on_line(stream: str, line: str) -> None:
            if line.startswith(MARK + " "):
                if on_marker:
                    name, _, value = line[len(MARK) + 1:].partition(" ")
                    on_marker(name, value)
                return
            if not quiet:
                self.ctx.event(LogLine, self.host.name, line=line, stream=stream, phase=self.phase)

        if stdin is not None and not isinstance(stdin, (bytes, bytearray)):
            stdin = self._count(stdin)
        elif stdin is not None:
            self.bytes_sent += len(stdin)
        return await self.ctx.transport.run(self.host, script, stdin=stdin, on_line=on_line, timeout=timeout)

    async def _count(self, stream: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        async for chunk in stream:
            self.bytes_sent += len(chunk)
            yield chunk

    def phase_start(self, phase: str) -> None:
        self.phase = phase
        self._phase_t0 = time.monotonic()
        self.ctx.event(PhaseStarted, self.host.name, phase=phase)

    def phase_end(self, phase: str, ok: bool, detail: str = "") -> None:
        took = time.monotonic() - self._phase_t0
        self.phases[phase] = round(took, 3)
        self.ctx.event(PhaseFinished, self.host.name, phase=phase, ok=ok, duration=took, detail=detail)

    @asynccontextmanager
    async def timed(self, phase: str) -> AsyncIterator[dict]:
        """PhaseStarted/PhaseFinished around a block; the block may set info['detail'] and info['ok']."""
        self.phase_start(phase)
        info: dict = {"detail": ""}
        try:
            yield info
        except BaseException as exc:
            if isinstance(exc, CapviewError):
                reason = str(exc)
            elif isinstance(exc, asyncio.CancelledError):
                reason = "cancelled"
            else:
                reason = type(exc).__name__ + (f": {exc}" if str(exc) else "")
            self.phase_end(phase, False, reason)
            raise
        self.phase_end(phase, bool(info.get("ok", True)), info["detail"])

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._mono

    def finish(self, outcome: str, message: str, version: str | None) -> HostFinished:
        """Emit and return this host's HostFinished with its counters."""
        ev = HostFinished(host=self.host.name, at=self.ctx.clock(), outcome=outcome, message=message,
                          version=version, duration=self.elapsed, round_trips=self.round_trips,
                          bytes_sent=self.bytes_sent)
        self.ctx.emit(ev)
        return ev
