"""Output that can never break an operation.

``capview release v2 prod | head -n 7`` closes the pipe while the deploy runs; a
terminal that goes away (the operator's SSH session drops) turns every write into
EIO. Either must only stop the output: an exception raised by ``print`` inside an
event callback would otherwise reach the engine in the middle of a switch.

:func:`guard_std_streams` replaces ``sys.stdout``/``sys.stderr`` with
:class:`GuardedStream`: the first failed write turns the stream off (later writes
are dropped) and points its file descriptor at /dev/null, so the interpreter's
final flush at exit is silent too. :func:`safe_emit` wraps a renderer so that a bug
in it is reported once and rendering stops, while the operation goes on.
"""

from __future__ import annotations

import io
import os
import sys
from typing import Callable, TextIO


class GuardedStream(io.TextIOBase):
    """A text stream whose writes never raise; see the module docstring."""

    def __init__(self, raw: TextIO) -> None:
        self._raw = raw
        self.dead = False

    # what print(), rich and json writers use
    def write(self, text: str) -> int:
        if not self.dead:
            try:
                self._raw.write(text)
            except (OSError, ValueError):  # EPIPE, EIO; ValueError: the file was closed
                self._die()
        return len(text)

    def flush(self) -> None:
        if not self.dead:
            try:
                self._raw.flush()
            except (OSError, ValueError):
                self._die()

    def isatty(self) -> bool:
        if self.dead:
            return False
        try:
            return self._raw.isatty()
        except (OSError, ValueError):
            return False

    def fileno(self) -> int:
        return self._raw.fileno()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._raw, "encoding", None) or "utf-8"

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self._raw, "errors", None)

    @property
    def raw_stream(self) -> TextIO:
        return self._raw

    def _die(self) -> None:
        self.dead = True
        try:  # whatever is still buffered then goes to /dev/null, not to a traceback at exit
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self._raw.fileno())
            finally:
                os.close(devnull)
        except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
            pass


def guard_std_streams() -> None:
    """Install GuardedStream on sys.stdout and sys.stderr (once)."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, GuardedStream):
            setattr(sys, name, GuardedStream(stream))


def safe_emit(render: Callable, err: Callable[[], TextIO] = lambda: sys.stderr) -> Callable:
    """``render`` made harmless: an exception inside it (a rendering bug) is reported
    once on stderr and turns rendering off; the engine never sees it."""
    broken: list[BaseException] = []

    def emit(event) -> None:
        if broken:
            return
        try:
            render(event)
        except Exception as exc:  # noqa: BLE001 -- rendering must never affect the operation
            broken.append(exc)
            try:
                print(f"capview: output stopped ({type(exc).__name__}: {exc}); the operation goes on",
                      file=err(), flush=True)
            except Exception:  # noqa: BLE001
                pass

    emit.close = getattr(render, "close", None)  # type: ignore[attr-defined]
    emit.inner = render  # type: ignore[attr-defined]
    return emit
