"""What every engine operation is given: transport, clock, event sink, operator."""

from __future__ import annotations

import getpass
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Callable

from capview.engine.events import Emit, Event, HostFinished, discard
from capview.errors import EXIT_FAILED, EXIT_LOCKED, EXIT_OK, EXIT_UNREACHABLE
from capview.remote.transport import Transport


def default_operator() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry (containers)
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


class GuardedSink:
    """An Emit that never lets the front break an operation: an exception from the sink
    (a closed stdout, a terminal that went away, a renderer bug) is remembered and the
    operation carries on; its result does not depend on what could be shown."""

    def __init__(self, sink: Emit) -> None:
        self.sink = sink
        self.error: Exception | None = None  # the first failure
        self.failures = 0

    def __call__(self, ev: Event) -> None:
        try:
            self.sink(ev)
        except Exception as exc:
            self.failures += 1
            if self.error is None:
                self.error = exc


@dataclass
class Context:
    transport: Transport
    clock: Callable[[], float] = time.time
    emit: Emit = discard
    operator: str = field(default_factory=default_operator)

    def __post_init__(self) -> None:
        if not isinstance(self.emit, GuardedSink):
            self.emit = GuardedSink(self.emit)

    @property
    def sink_error(self) -> Exception | None:
        """The first exception the event sink raised (the events after it were dropped
        by the sink, never by the operation)."""
        return self.emit.error if isinstance(self.emit, GuardedSink) else None

    def event(self, cls: type[Event], host: str | None, **fields) -> Event:
        """Build an event stamped with the engine clock and emit it."""
        ev = cls(host=host, at=self.clock(), **fields)
        self.emit(ev)
        return ev


@dataclass(frozen=True)
class OperationResult:
    ok: bool
    exit_code: int
    hosts: tuple[HostFinished, ...] = ()

    @classmethod
    def from_hosts(cls, hosts: tuple[HostFinished, ...], codes: tuple[int, ...] = ()) -> "OperationResult":
        """Exit code: the most specific failure wins (lock held 3, unreachable 4, else 1)."""
        ok = all(h.outcome in ("ok", "skipped") for h in hosts) and not any(codes)
        if ok:
            return cls(True, EXIT_OK, hosts)
        for code in (EXIT_UNREACHABLE, EXIT_LOCKED):
            if code in codes:
                return cls(False, code, hosts)
        return cls(False, EXIT_FAILED, hosts)
