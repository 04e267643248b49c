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
from capview.engine.scripts.shell import Frames
from capview.errors import EXIT_UNREACHABLE, CapviewError, HostUnreachable
from capview.remote.transport import RunResult


class PhaseFailed(CapviewError):
    """A phase failed; ``code`` is the exit code the operation should end with."""

    def __init__(self, message: str, code: int = 1, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.code = code


def failure(exc: Exception) -> tuple[str, int]:
    """(one-line message, exit code) for a host's failure before anything switched."""
    if isinstance(exc, PhaseFailed):
        return str(exc), exc.code
    if isinstance(exc, HostUnreachable):
        return str(exc), EXIT_UNREACHABLE
    return f"unexpected error: {type(exc).__name__}: {exc}", 1  # a bug or an odd host answer: this host only


def phase_reason(exc: BaseException) -> str:
    """A failed phase's detail (PhaseFinished) for ``exc``."""
    if isinstance(exc, CapviewError):
        return str(exc)
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    return type(exc).__name__ + (f": {exc}" if str(exc) else "")


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
        self.switch_result = None  # switching.SwitchResult, once a switch transaction ended
        self.started = ctx.clock()
        self._mono = time.monotonic()

    def log(self, line: str, stream: str = "info") -> None:
        self.ctx.event(LogLine, self.host.name, line=line, stream=stream, phase=self.phase)

    async def run(
        self,
        script: str,
        *,
        stdin: bytes | AsyncIterable[bytes] | None = None,
        frames: Frames | None = None,
        on_frame: Callable[[str, str], None] | None = None,
        on_line: Callable[[str], None] | None = None,
        quiet: bool = False,
        timeout: float | None = None,
    ) -> RunResult:
        """Run one script (one round trip). Frame lines of ``frames`` go to
        ``on_frame(kind, arg)`` as they arrive (and are never shown); other lines to
        ``on_line`` and, unless ``quiet``, become LogLine events."""
        self.round_trips += 1

        def handle(stream: str, line: str) -> None:
            frame = frames.line(line) if frames is not None else None
            if frame is not None:
                if on_frame:
                    on_frame(*frame)
                return
            if on_line:
                on_line(line)
            if not quiet:
                self.ctx.event(LogLine, self.host.name, line=line, stream=stream, phase=self.phase)

        if stdin is not None and not isinstance(stdin, (bytes, bytearray)):
            stdin = self._count(stdin)
        elif stdin is not None:
            self.bytes_sent += len(stdin)
        return await self.ctx.transport.run(self.host, script, stdin=stdin, on_line=handle, timeout=timeout)

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
            self.phase_end(phase, False, phase_reason(exc))
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
