"""The one interface the engine uses to reach a host.

A Transport runs a whole POSIX ``sh`` script per call (one round trip), can feed
it a byte stream on stdin (tar uploads), streams output lines to a callback as
they arrive, and counts round trips and bytes so benchmarks and tests can hold
the engine to its budget. Implementations: ``SshTransport`` (asyncssh, real hosts
and the demo's embedded server) and ``LocalTransport`` (runs ``sh`` here; unit tests).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import AsyncIterable, Callable, Protocol

from capview.config import HostConfig

# Prepended to every script: strict mode, and the systemd --user bus that sshd
# without PAM (and many VPSes without lingering) leaves unset.
ScriptPreamble = (
    "set -eu\n"
    'if [ -z "${XDG_RUNTIME_DIR:-}" ]; then XDG_RUNTIME_DIR="/run/user/$(id -u)"; export XDG_RUNTIME_DIR; fi\n'
    "umask 022\n"
)

LineCallback = Callable[[str, str], None]  # (stream: "stdout" | "stderr", line)


@dataclass(frozen=True)
class RunResult:
    exit_status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


class Packed(bytes):
    """A piece of a stdin stream as one gzip member (issue 21: compressed per piece, so
    the engine can choose per piece). A transport whose host side inflates pieces
    (:meth:`Transport.unpacks`) sends it as it is; any other inflates it here, so the
    script always reads the plain stream."""

    plain: int = 0  # its length inflated

    @classmethod
    def of(cls, member: bytes, plain: int) -> "Packed":
        piece = cls(member)
        piece.plain = plain
        return piece

    def inflate(self) -> bytes:
        return zlib.decompress(self, 31)  # wbits 31: one gzip member


def plain(piece: bytes) -> bytes:
    """A stream piece as the script reads it."""
    return piece.inflate() if isinstance(piece, Packed) else piece


def unpacks(transport: object, host: HostConfig) -> bool:
    """Whether ``transport`` sends :class:`Packed` pieces to ``host`` packed (its side
    inflates them). Optional in a Transport: without it, pieces are inflated before sending."""
    ask = getattr(transport, "unpacks", None)
    return bool(ask is not None and ask(host))


class Transport(Protocol):
    round_trips: int  # scripts run (each is one request waited on)
    bytes_sent: int  # stdin payload bytes sent to hosts

    async def run(
        self,
        host: HostConfig,
        script: str,
        *,
        stdin: bytes | AsyncIterable[bytes] | None = None,
        on_line: LineCallback | None = None,
        timeout: float | None = None,
    ) -> RunResult:
        """Run ``script`` under ``sh`` on ``host`` (ScriptPreamble first).

        Raises HostUnreachable when the host cannot be reached or authenticated.
        Cancelling the awaiting task kills the remote process. A stream may hold
        :class:`Packed` pieces: the script reads them inflated.
        """
        ...

    async def close(self) -> None: ...
