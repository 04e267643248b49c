"""One long-lived remote ``sh`` per SSH channel that runs many scripts (issue 21).

Opening a session channel and exec'ing a command costs ~2 RTT before a script's first
byte runs; a session pays that once, and every later script costs one RTT. The channel
runs ``LOOP`` (POSIX sh); the client frames each exchange on the channel's stdin:

    <tag> <script bytes> <stdin bytes>\\n<script><stdin>

The loop reads the header with ``read`` (one byte at a time from a pipe, as POSIX
requires), the two bodies with ``head -c`` into files of a private ``mktemp -d`` dir,
runs ``sh <script> < <stdin>`` — a process of its own, as with a channel per script:
its own ``$$``, traps, ``exit`` and ``set -e`` — and then prints ``<tag> <status>`` on
stdout and on stderr, so the client knows both streams are drained. A stream (a tar
upload) comes as ``<tag> <script bytes> s`` and then chunks ``<n>\\n<n bytes>`` up to a
``0\\n``; each chunk is read whole into a file before it is piped on, so a script that
stops reading early never leaves half a chunk in the channel. A chunk ``<n>z\\n`` is one
gzip member (a :class:`Packed` piece), inflated with ``gzip -dc`` on its way to the script;
the ready line says ``ok gzip`` when the host has gzip, and only then are chunks sent
packed (otherwise the client inflates them first). Its end tag comes as
soon as the script exits; the client then sends the ``0`` at once instead of the rest. The tag is random
per exchange and never in the script's text or environment, so no host content can
forge an end. ``head -c`` must not read past its count (GNU's does not; BusyBox's
buffered one does): the loop checks that first and refuses (``<ready> refused``), and the
client then uses a channel per script for that host.

A session's first script, when it has no stdin (a deploy's lock+setup, a rollback's
lock+listing), rides on the exec itself (issue 21): the loop runs it (stdin /dev/null)
before reading anything, so its output comes back with the exec's reply instead of one
RTT after it. A host that refuses the loop refuses before running it; the channel per
script then runs it, once. A command over FIRST_MAX sends it as an ordinary exchange.

Anything unusual (a cancel, a timeout, an end of stream before the tag) ends the whole
session: the channel's TERM reaches the loop and the running script alike (sshd signals
the process group), the KILL after the grace whatever trapped it, and the next script gets
a fresh session. A script or input the link cut short never runs (``head -c`` stops short
with status 0, so the loop checks the length). A stream's feeder ignores TERM and HUP:
a TERM racing the pipeline's forks can spare the script (its subshell catches it before
it resets its traps), and a feeder it killed would close the pipe, which the script would
take for the stream's end; only the ``0`` ends the script's input.
"""

from __future__ import annotations

import asyncio
import secrets
import shlex
import signal as _signal
from dataclasses import dataclass
from typing import AsyncIterable, AsyncIterator, Callable

import asyncssh

from capview.remote.transport import LineCallback, Packed, ScriptPreamble

_PID_MARKER = "\x1ecapview-pid "  # the wrapper's first stderr line: its pid (ssh.py)
SESSION_STDIN_MAX = 1 << 20  # bigger payloads are streamed in chunks
_READ_CHUNK = 64 * 1024
_WRITE_CHUNK = 256 * 1024
_STREAM_CHUNK = 1 << 20  # a stream's chunks are gathered up to this (two host forks each)

# $1: the ready tag. Signals end the loop through its EXIT trap (the private dir is
# removed); the script it runs gets default dispositions (trapped signals are reset by exec).
LOOP = r"""
d=$(mktemp -d "${TMPDIR:-/tmp}/capview-sh.XXXXXX") || exit 97
trap 'rm -rf "$d"' EXIT
trap 'exit 129' HUP
trap 'exit 141' PIPE
trap 'exit 143' TERM
if [ "$(printf ab | { head -c 1 >/dev/null; head -c 1; })" != b ]; then
  printf '%s refused\n' "$1"; exit 0
fi
# the ready line says whether the host can inflate packed stream chunks (a builtin, no fork)
if command -v gzip >/dev/null 2>&1; then printf '%s ok gzip\n' "$1"; else printf '%s ok\n' "$1"; fi
end() { printf '%s %s\n' "$1" "$2"; printf '%s %s\n' "$1" "$2" >&2; }
# head -c stops short, with status 0, when the link ends: a cut script or input must never run
whole() { head -c "$2" > "$1" && [ "$(($(wc -c < "$1")))" -eq "$2" ]; }
# the stream broke: end the script before its input can end, then everything with it
broke() { kill -TERM 0 2>/dev/null; sleep 1; rm -rf "$d"; kill -KILL 0; }
if [ $# -ge 3 ]; then
  # the first script came with the exec ($2 its tag, $3 its text): run it at once
  printf '%s' "$3" > "$d/s" || exit 98
  s=0; sh "$d/s" < /dev/null || s=$?; end "$2" "$s"
fi
while IFS=' ' read -r t a b; do
  whole "$d/s" "$a" || exit 98
  if [ "$b" = s ]; then
    # the feeding side ignores TERM and HUP: only it may end the script's input, and only at
    # the stream's end (a signal racing a fork can spare the script yet kill its feeder)
    { trap '' TERM HUP INT
      while :; do
        IFS= read -r n || n=x
        case $n in 0) break ;; *z) z=1; n=${n%z} ;; *) z= ;; esac
        case $n in ''|*[!0-9]*) broke ;; esac
        head -c "$n" > "$d/c" || broke
        if [ -z "$z" ]; then cat "$d/c" 2>/dev/null || :
        # a packed chunk that does not inflate would hand the script a corrupt stream
        else gzip -dc < "$d/c" || broke; fi
      done
    } | { s=0; sh "$d/s" || s=$?; end "$t" "$s"; cat >/dev/null; }
  else
    whole "$d/i" "$b" || exit 98
    s=0; sh "$d/s" < "$d/i" || s=$?; end "$t" "$s"
  fi
done
"""


@dataclass
class ProcState:
    pid: int | None = None
    marker_seen: bool = False
    done: bool = False


def _sig_number(name: str) -> int:
    try:
        return int(getattr(_signal, "SIG" + name.upper()))
    except (AttributeError, TypeError, ValueError):
        return 0



def line_sink(out: list[str], err: list[str], on_line: LineCallback | None, state: ProcState):
    """(stream, raw line) -> the run's lines and ``on_line``; strips the wrapper's pid line."""

    def emit(name: str, raw: bytes) -> None:
        line = raw.decode("utf-8", "replace")
        # the wrapper's pid line (not necessarily the first: a login shell's rc
        # files may print before the `exec`)
        if name == "stderr" and not state.marker_seen and line.startswith(_PID_MARKER):
            state.marker_seen = True
            try:
                state.pid = int(line[len(_PID_MARKER):].strip())
            except ValueError:
                pass
            return
        (out if name == "stdout" else err).append(line)
        if on_line is not None:
            on_line(name, line)

    return emit


def exit_code(proc: asyncssh.SSHClientProcess) -> int:
    if proc.exit_signal:
        return 128 + _sig_number(proc.exit_signal[0])
    if proc.exit_status is not None and proc.exit_status >= 0:
        return proc.exit_status
    return 255  # the channel closed without an exit status (what ssh(1) reports)



async def _pieces(data: bytes) -> AsyncIterator[bytes]:
    view = memoryview(data)
    for i in range(0, len(view), _STREAM_CHUNK):
        yield bytes(view[i:i + _STREAM_CHUNK])


class SessionRefused(Exception):
    """The host cannot run the session loop: use a channel per script."""


class SessionLost(Exception):
    """The session's streams ended before the script's end tag."""


# A first script rides on the exec while the whole command stays under this: one SSH
# packet any server takes (RFC 4253's 32768-byte minimum), one argv string anywhere.
FIRST_MAX = 30 * 1024


def command(pid_line: str, ready: str, first: tuple[str, bytes] | None = None) -> str:
    """The exec of the loop; ``first``: (tag, script body) run before the loop reads anything."""
    cmd = "exec sh -c " + shlex.quote(pid_line + LOOP) + " capview-session " + ready
    if first is not None:
        cmd += " " + first[0] + " " + shlex.quote(first[1].decode("utf-8"))
    return cmd


Emit = Callable[[str, bytes], None]  # (stream, raw line without the newline)


class Session:
    """One open session channel; one exchange at a time."""

    def __init__(self, proc: asyncssh.SSHClientProcess, ready: str, first: tuple[str, str] | None = None) -> None:
        self.proc = proc
        self._ready = ready.encode()
        self._first = first  # (tag, script) sent with the exec: the first exchange's
        self._started = False
        self._bufs = {"stdout": bytearray(), "stderr": bytearray()}
        self.exchanges = 0
        self.state = ProcState()  # the loop's pid (the process group to kill)
        self.gunzip = False  # the ready line said the host inflates packed chunks

    @classmethod
    async def open(cls, conn: asyncssh.SSHClientConnection, pid_line: str, first: str | None = None) -> "Session":
        """Open the channel and exec the loop. ``first`` (a script without stdin, issue 21):
        sent in the exec itself, so its output comes back with the exec's reply instead of
        one RTT later; the next :meth:`exchange` of that same script only reads it."""
        ready = secrets.token_hex(8)
        embed = (secrets.token_hex(12), (ScriptPreamble + first).encode("utf-8")) if first is not None else None
        cmd = command(pid_line, ready, embed)
        if embed is not None and len(cmd.encode("utf-8")) > FIRST_MAX:
            embed, cmd = None, command(pid_line, ready)  # too big: sent as an ordinary exchange
        proc = await conn.create_process(cmd, encoding=None, request_pty=False, x11_forwarding=False)
        return cls(proc, ready, (embed[0], first) if embed else None)

    @property
    def running_first(self) -> bool:
        """The exec's own script may be running (it was sent; its end not read yet)."""
        return self._first is not None

    def close(self) -> None:
        try:
            self.proc.stdin.write_eof()
        except Exception:
            pass
        try:
            self.proc.close()
        except Exception:
            pass

    async def exchange(self, script: str, stdin: bytes | AsyncIterable[bytes] | None, emit: Emit,
                       on_sent: Callable[[int], None]) -> int:
        """Run one script; its output lines go to ``emit`` as they arrive; its exit status."""
        tag = secrets.token_hex(12).encode()
        body = (ScriptPreamble + script).encode("utf-8")
        w = self.proc.stdin
        if stdin is not None and not isinstance(stdin, (bytes, bytearray, memoryview)):
            source: AsyncIterable[bytes] | None = stdin
        elif stdin is not None and len(stdin) > SESSION_STDIN_MAX:
            source = _pieces(bytes(stdin))
        else:
            source = None
        first, self._first = self._first, None
        if first is not None and first[1] == script and not stdin:
            tag = first[0].encode()  # it came with the exec: nothing to send, only to read
        elif first is not None:  # a bug: the session would run a script nobody waits for
            raise RuntimeError("the first exchange is not the script sent with the exec")
        elif source is None:
            data = bytes(stdin or b"")
            w.write(b"%s %d %d\n" % (tag, len(body), len(data)) + body)
            view = memoryview(data)
            for i in range(0, len(view), _WRITE_CHUNK):
                w.write(bytes(view[i:i + _WRITE_CHUNK]))
                on_sent(min(_WRITE_CHUNK, len(view) - i))
            await w.drain()
        else:
            w.write(b"%s %d s\n" % (tag, len(body)) + body)
        self.exchanges += 1
        if not self._started:
            # a refusing host must not have consumed a stream; and its refusal must be read
            # before stderr's EOF could pass for the script's end (SessionLost)
            await self._await_ready(emit)
        tasks = [asyncio.ensure_future(self._until(tag, n, emit)) for n in ("stdout", "stderr")]
        feeder = asyncio.ensure_future(self._feed(source, on_sent)) if source is not None else None
        try:
            pending = set(tasks) | ({feeder} if feeder else set())
            while not all(t.done() for t in tasks):
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for t in done:
                    if t.exception() is not None:
                        raise t.exception()  # type: ignore[misc]
            if feeder is not None and not feeder.done():
                # the script ended before its input did: the rest is not sent, only the end
                feeder.cancel()
                await asyncio.gather(feeder, return_exceptions=True)
                w.write(b"0\n")
            return tasks[0].result()
        finally:
            for t in tasks + ([feeder] if feeder else []):
                if not t.done():
                    t.cancel()
            await asyncio.gather(*tasks, *([feeder] if feeder else []), return_exceptions=True)

    async def _feed(self, source: AsyncIterable[bytes], on_sent: Callable[[int], None]) -> None:
        """Chunks of a stream, whole (``<n>\\n<bytes>``, a packed one ``<n>z\\n<bytes>``);
        ``0\\n`` only once it is exhausted."""
        w = self.proc.stdin
        buf = bytearray()

        def chunk(data: bytes | bytearray, packed: bool = False) -> None:
            w.write(b"%d%s\n" % (len(data), b"z" if packed else b"") + bytes(data))
            on_sent(len(data))

        async for piece in source:
            if isinstance(piece, Packed):
                if not self.gunzip:
                    piece = piece.inflate()  # no gzip there: the host gets the plain stream
                elif piece:
                    if buf:  # the plain bytes before it go first, in order
                        chunk(buf)
                        buf.clear()
                    chunk(piece, packed=True)
                    await w.drain()
                    continue
            buf += piece
            if len(buf) >= _STREAM_CHUNK:
                chunk(buf)
                buf.clear()
                await w.drain()  # a cancel lands here: between chunks, never inside one
        if buf:
            chunk(buf)
        w.write(b"0\n")
        await w.drain()

    async def _await_ready(self, emit: Emit) -> None:
        buf = self._bufs["stdout"]
        while not self._started:
            nl = buf.find(b"\n")
            if nl >= 0:
                line = bytes(buf[:nl])
                del buf[:nl + 1]
                self._line(line, b"", "stdout", emit)  # before the ready line no tag is looked for
                continue
            chunk = await self.proc.stdout.read(_READ_CHUNK)
            if not chunk:
                raise SessionLost("stdout")
            buf += chunk

    async def _until(self, tag: bytes, name: str, emit: Emit) -> int:
        reader = self.proc.stdout if name == "stdout" else self.proc.stderr
        buf = self._bufs[name]
        while True:
            nl = buf.find(b"\n")
            while nl >= 0:
                line = bytes(buf[:nl])
                del buf[:nl + 1]
                status = self._line(line, tag, name, emit)
                if status is not None:
                    return status
                nl = buf.find(b"\n")
            chunk = await reader.read(_READ_CHUNK)
            if not chunk:
                if buf:
                    emit(name, bytes(buf))
                    buf.clear()
                raise SessionLost(name)
            buf += chunk
            await asyncio.sleep(0)  # a flood of output must not starve the event loop

    def _line(self, line: bytes, tag: bytes, name: str, emit: Emit) -> int | None:
        if name == "stdout" and not self._started:
            # lines before the ready line are a login shell's rc noise: the script's output, as before
            if line in (self._ready + b" ok", self._ready + b" ok gzip"):
                self._started = True
                self.gunzip = line.endswith(b" gzip")
                return None
            if line == self._ready + b" refused":
                raise SessionRefused()
            emit(name, line)
            return None
        at = line.find(tag + b" ")
        if at < 0:
            emit(name, line)
            return None
        if at:
            emit(name, line[:at])  # the script's last line had no newline
        try:
            return int(line[at + len(tag) + 1:])
        except ValueError:
            raise SessionLost(name) from None
