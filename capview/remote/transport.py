"""The one interface the engine uses to reach a host.

A Transport runs a whole POSIX ``sh`` script per call (one round trip), can feed
it a byte stream on stdin (tar uploads), streams output lines to a callback as
they arrive, and counts round trips and bytes so benchmarks and tests can hold
the engine to its budget. Implementations: ``SshTransport`` (asyncssh, real hosts
and the demo's embedded server) and ``LocalTransport`` (runs ``sh`` here; unit tests).
"""

from __future__ import annotations

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
        Cancelling the awaiting task kills the remote process.
        """
        ...

    async def close(self) -> None: ...
