"""LocalTransport: runs scripts with this machine's ``sh``. For unit tests."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import AsyncIterable

from capview.config import HostConfig
from capview.remote.transport import LineCallback, RunResult, ScriptPreamble, plain


class LocalTransport:
    def __init__(self) -> None:
        self.round_trips = 0
        self.bytes_sent = 0

    async def run(
        self,
        host: HostConfig,
        script: str,
        *,
        stdin: bytes | AsyncIterable[bytes] | None = None,
        on_line: LineCallback | None = None,
        timeout: float | None = None,
    ) -> RunResult:
        self.round_trips += 1
        proc = await asyncio.create_subprocess_exec(
            "sh", "-c", ScriptPreamble + script,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        out: list[str] = []
        err: list[str] = []

        async def feed() -> None:
            assert proc.stdin is not None
            try:
                if isinstance(stdin, (bytes, bytearray)):
                    proc.stdin.write(stdin)
                    self.bytes_sent += len(stdin)
                elif stdin is not None:
                    async for chunk in stdin:
                        chunk = plain(chunk)  # Packed pieces: this side has no session loop to inflate them
                        proc.stdin.write(chunk)
                        self.bytes_sent += len(chunk)
                        await proc.stdin.drain()
                await proc.stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                pass
            finally:
                proc.stdin.close()

        def emit(name: str, sink: list[str], raw: bytes) -> None:
            line = raw.decode("utf-8", "replace")
            sink.append(line)
            if on_line:
                on_line(name, line)

        async def pump(reader: asyncio.StreamReader, name: str, sink: list[str]) -> None:
            # by chunks, not readline: a line longer than the stream's 64 KiB limit (a build
            # printing a progress bar without newlines) would raise there
            buf = bytearray()
            while chunk := await reader.read(1 << 16):
                buf += chunk
                start = 0
                while (end := buf.find(b"\n", start)) >= 0:
                    emit(name, sink, bytes(buf[start:end]))
                    start = end + 1
                del buf[:start]
            if buf:
                emit(name, sink, bytes(buf))

        try:
            await asyncio.wait_for(
                asyncio.gather(feed(), pump(proc.stdout, "stdout", out), pump(proc.stderr, "stderr", err), proc.wait()),
                timeout,
            )
        except BaseException:
            if proc.returncode is None:
                # the whole session (start_new_session): a child left running would hold the
                # pipes open, and proc.wait() waits for them to close
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                await proc.wait()
            raise
        return RunResult(proc.returncode or 0, "\n".join(out), "\n".join(err))

    async def close(self) -> None:
        return None
