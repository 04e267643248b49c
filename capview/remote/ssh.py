"""SshTransport: run POSIX sh scripts on real hosts over pooled asyncssh connections.

* One connection per (host, port, user, ssh options), opened lazily and reused by
  every call; concurrent first calls share one connect. A semaphore caps the
  channels open on one connection (OpenSSH's MaxSessions is 10) and another caps
  connects in flight across all hosts (OpenSSH's MaxStartups drops bursts).
* ~/.ssh/config (or ``SshOptions.config_file``) is honoured: aliases, User, Port,
  IdentityFile, ProxyJump. ssh-agent is used when SSH_AUTH_SOCK is set.
* Host-key checking is always on. An unknown or changed key raises HostUnreachable
  naming the offered key's SHA256 fingerprint and the command that trusts it.
* Every failure to reach a host is one HostUnreachable line; a connection that
  drops mid-run is removed from the pool so the next call reconnects.

How a run is stopped (cancellation or ``timeout``)
--------------------------------------------------
sshd puts every non-pty command session in its own session / process group
(``setsid()`` in do_exec_no_pty), and since OpenSSH 7.9 it delivers a channel
``signal`` request with ``killpg()`` to that group. Measured on the testbed
(OpenSSH 9.2): ``send_signal("TERM")`` kills both ``sh`` and the ``sleep 30`` it is
waiting on within milliseconds, and the channel reports the exit signal. Just
closing the channel is NOT enough: sshd closes the pipes but the script keeps
running until it next writes (and ``sleep 30; touch x`` still touches x).

So: (1) send TERM on the channel and wait up to ``_KILL_GRACE`` s for the exit;
(2) if the process is still there (a server without signal support, e.g. OpenSSH
< 7.9, Dropbear, or a script trapping TERM) send KILL on the channel AND, on a
fresh channel, ``kill -KILL -<pgid>``. The pgid is known because the command is
``exec sh -c '<marker line>; <script>'``: ``exec`` makes that ``sh`` the session
leader, and its first act is to print its PID on stderr behind a marker, which
``run`` strips before anyone sees stderr. (3) close the channel.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shlex
import socket
from dataclasses import dataclass, field
from typing import AsyncIterable, Awaitable

import asyncssh

from capview.config import HostConfig, SshOptions
from capview.errors import HostUnreachable
from capview.remote import ssh_auth
from capview.remote.ssh_session import (Session, SessionLost, SessionRefused, exit_code,
                                        ProcState, line_sink)
from capview.remote.ssh_target import Target, expand, known_hosts_name, resolve_target
from capview.remote.transport import LineCallback, RunResult, ScriptPreamble, plain

# asyncssh logs every command (our whole script) and env at INFO/DEBUG.
_asyncssh_logger = logging.getLogger("asyncssh")
if not os.environ.get("CAPVIEW_SSH_DEBUG"):
    asyncssh.set_log_level(logging.WARNING)


class _RedactCommands(logging.Filter):
    """Even with CAPVIEW_SSH_DEBUG on, never let a script's text reach a log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and "command" in record.msg.lower() and record.args:
            record.args = tuple("<redacted>" for _ in record.args) if isinstance(record.args, tuple) else ()
        return True


_asyncssh_logger.addFilter(_RedactCommands())

MAX_SCRIPT_BYTES = 100 * 1024  # argv budget: bulk data goes on stdin
_STDIN_CHUNK = 256 * 1024
_READ_CHUNK = 64 * 1024
_KILL_GRACE = 1.0  # seconds to wait for the remote process to exit after a signal
_PID_LINE = "printf '\\036capview-pid %s\\n' \"$$\" >&2\n"


@dataclass
class _Pooled:
    conn: asyncssh.SSHClientConnection
    channels: asyncio.Semaphore
    target: Target
    lost: bool = False
    idle: list[Session] = field(default_factory=list)  # open sessions waiting for a script
    active: int = 0  # runs holding a channel now
    sessions_ok: bool | None = None  # False: the host refused the session loop
    gunzip: bool = False  # its session loop inflates Packed stream pieces (the host has gzip)


class _Client(asyncssh.SSHClient):
    """Records the key a server offers when known_hosts does not vouch for it."""

    def __init__(self, on_lost) -> None:
        self.offered: tuple[str, str, int, asyncssh.SSHKey] | None = None
        self._on_lost = on_lost
        # issue 21: log in with one round trip, not four (ssh_auth.py); off for odd servers
        self.fast_auth = not os.environ.get("CAPVIEW_SSH_STOCK_AUTH")

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        self.offered = (host, addr, port, key)
        return False  # checking stays on: only known_hosts can trust a key

    def connection_lost(self, exc: Exception | None) -> None:
        self._on_lost()


ssh_auth.install(lambda owner: isinstance(owner, _Client) and owner.fast_auth)


class SshTransport:
    """Transport over asyncssh. See the module docstring."""

    def __init__(self, *, max_channels_per_host: int = 8, max_concurrent_connects: int = 64,
                 max_connects_per_server: int = 8, sessions: bool = True) -> None:
        self.round_trips = 0
        self.sessions = sessions  # one long-lived sh per channel (ssh_session.py)
        self.sessions_opened = 0
        self.bytes_sent = 0
        self.connects = 0  # connections opened (tests hold pooling to this)
        self.max_channels_per_host = max_channels_per_host
        # OpenSSH's MaxStartups (default 10:30:100) drops bursts of unauthenticated
        # connections per server; the global cap only bounds our own sockets.
        self._connect_sem = asyncio.Semaphore(max_concurrent_connects)
        self._server_sems: dict[tuple[str, int], asyncio.Semaphore] = {}
        self._per_server = max_connects_per_server
        self._pool: dict[tuple, _Pooled] = {}
        self._connecting: dict[tuple, asyncio.Task[_Pooled]] = {}
        self._closed = False

    async def __aenter__(self) -> "SshTransport":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ pool

    @staticmethod
    def _key(host: HostConfig) -> tuple:
        return (host.host, host.port, host.user, host.settings.ssh)

    async def connection(self, host: HostConfig) -> asyncssh.SSHClientConnection:
        """The pooled connection for ``host`` (opened if needed). For tests and tools."""
        return (await self._get(host)).conn

    async def prepare(self, host: HostConfig) -> None:
        """Open the pooled connection before the first script needs it (a deploy overlaps
        it with the local scan); raises what that script's connect would have."""
        await self._get(host)

    async def _get(self, host: HostConfig) -> _Pooled:
        if self._closed:
            raise RuntimeError("SshTransport is closed")
        key = self._key(host)
        pooled = self._pool.get(key)
        if pooled is not None and not pooled.lost and not pooled.conn.is_closed():
            return pooled
        if pooled is not None:
            self._pool.pop(key, None)
        task = self._connecting.get(key)
        if task is None:
            task = asyncio.ensure_future(self._connect(key, host))
            self._connecting[key] = task

            def _done(t: asyncio.Task, key: tuple = key) -> None:
                if self._connecting.get(key) is t:
                    del self._connecting[key]
                if not t.cancelled():
                    t.exception()  # retrieved: every waiter gets it re-raised

            task.add_done_callback(_done)
        # shield: one caller being cancelled must not abort the connect others share
        return await asyncio.shield(task)

    def _resolve(self, host: HostConfig) -> Target:
        return resolve_target(host)

    async def _connect(self, key: tuple, host: HostConfig) -> _Pooled:
        ssh: SshOptions = host.settings.ssh
        target = self._resolve(host)
        holder: list[_Pooled] = []

        def on_lost() -> None:
            for p in holder:
                p.lost = True
                if self._pool.get(key) is p:
                    del self._pool[key]

        client = _Client(on_lost)
        kwargs: dict = dict(
            config=list(target.config_paths),
            known_hosts=list(target.known_hosts) if target.known_hosts else asyncssh.import_known_hosts(""),
            connect_timeout=ssh.connect_timeout or None,
            keepalive_interval=ssh.keepalive or 0,
            request_pty=False,
            agent_forwarding=False,
            x11_forwarding=False,
            client_factory=lambda: client,
        )
        if host.user:
            kwargs["username"] = host.user
        if ssh.identity_file:
            ident = expand(ssh.identity_file)
            if not os.path.isfile(ident):
                raise HostUnreachable(f"{target.label}: identity_file {ssh.identity_file} not found")
            kwargs["client_keys"] = [ident]
        server = self._server_sems.setdefault((target.hostname, target.port),
                                              asyncio.Semaphore(self._per_server))
        async with self._connect_sem, server:
            try:
                conn = await asyncssh.connect(host.host, host.port if host.port else (), **kwargs)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                raise await self._connect_error(exc, target, ssh, client) from None
        self.connects += 1
        pooled = _Pooled(conn, asyncio.Semaphore(self.max_channels_per_host), target)
        holder.append(pooled)
        if self._closed:
            conn.close()
            raise RuntimeError("SshTransport is closed")
        self._pool[key] = pooled
        return pooled

    async def _connect_error(self, exc: BaseException, t: Target, ssh: SshOptions, client: _Client) -> BaseException:
        hp = t.label
        if isinstance(exc, asyncssh.HostKeyNotVerifiable):
            return HostUnreachable(await self._host_key_message(exc, t, client))
        if isinstance(exc, asyncssh.PermissionDenied):
            return HostUnreachable(f"{hp}: permission denied for user {t.user} — check identity_file / ssh-agent")
        if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
            return HostUnreachable(
                f"{hp}: connection timed out after {ssh.connect_timeout:g}s — is the host up and the port reachable?"
            )
        if isinstance(exc, socket.gaierror):
            return HostUnreachable(f"{t.hostname}: cannot resolve host name ({exc.strerror or exc})")
        if isinstance(exc, OSError):
            errnos = re.findall(r"\[Errno (\d+)\]", str(exc))
            if isinstance(exc, ConnectionRefusedError) or (exc.errno is None and errnos and set(errnos) == {"111"}):
                return HostUnreachable(f"{hp}: connection refused — is sshd running / is the port right?")
            return HostUnreachable(f"{hp}: {exc.strerror or exc}")
        if isinstance(exc, asyncssh.DisconnectError):
            return HostUnreachable(f"{hp}: ssh connection failed: {exc.reason}")
        if isinstance(exc, (asyncssh.KeyImportError, asyncssh.KeyEncryptionError)):
            return HostUnreachable(f"{hp}: cannot load the SSH key: {exc}")
        if isinstance(exc, Exception):
            return HostUnreachable(f"{hp}: ssh connection failed: {exc}")
        return exc  # KeyboardInterrupt, SystemExit: not ours to translate

    async def _host_key_message(self, exc: asyncssh.HostKeyNotVerifiable, t: Target, client: _Client) -> str:
        addr = ""
        if client.offered is not None:
            kh_host, addr, port, key = client.offered
            port = port or t.port
        elif t.proxy_jump:
            # the jump host's connection is asyncssh's own: its key was the problem
            return (
                f"{t.label}: host key not verifiable on the way through ProxyJump {t.proxy_jump} "
                f"({exc.reason}) — add the jump host's key to its known_hosts (ssh-keyscan)"
            )
        else:
            # Not captured (e.g. a certificate from an untrusted CA). Connect once more
            # without checking, only to read the offered key for the message.
            kh_host, port = t.hostname, t.port
            try:
                key = await asyncio.wait_for(
                    asyncssh.get_server_host_key(t.alias, t.port, config=list(t.config_paths)), 5
                )
            except Exception:
                key = None
        fp = key.get_fingerprint("sha256") if key is not None else "a key that could not be read"
        name = known_hosts_name(kh_host, port)
        known: list = []
        if t.known_hosts:
            try:
                known = list(asyncssh.match_known_hosts(
                    list(t.known_hosts), kh_host, addr, port if port != 22 else None)[0])
            except Exception:
                known = []
        kh_file = t.known_hosts_hint
        if known:
            f_opt = "" if kh_file == "~/.ssh/known_hosts" else f"-f {shlex.quote(kh_file)} "
            return (
                f"host key for {t.label} changed (offered {fp}) — if expected, remove the old entry with "
                f"ssh-keygen {f_opt}-R {shlex.quote(name)} and re-add it"
            )
        p_opt = "" if port == 22 else f"-p {port} "
        dest = kh_file if kh_file == "~/.ssh/known_hosts" else shlex.quote(kh_file)
        return (
            f"{t.label}: unknown host key (offered {fp}) — if you trust it, run: "
            f"ssh-keyscan {p_opt}{kh_host} >> {dest}"
        )

    async def close(self) -> None:
        self._closed = True
        for task in list(self._connecting.values()):
            task.cancel()
        for task in list(self._connecting.values()):
            try:
                await task
            except BaseException:
                pass
        pooled = list(self._pool.values())
        self._pool.clear()
        for p in pooled:
            p.conn.close()
        for p in pooled:
            try:
                await asyncio.wait_for(p.conn.wait_closed(), 5)
            except Exception:
                pass

    # ------------------------------------------------------------------- run

    @staticmethod
    def build_command(script: str) -> str:
        """The exact command line sent to sshd for ``script``."""
        command = "exec sh -c " + shlex.quote(_PID_LINE + ScriptPreamble + script)
        if len(command.encode("utf-8")) > MAX_SCRIPT_BYTES:
            raise ValueError(
                f"script is {len(script.encode('utf-8'))} bytes; scripts must stay under "
                f"{MAX_SCRIPT_BYTES // 1024} KB — send bulk data on stdin"
            )
        return command

    async def run(
        self,
        host: HostConfig,
        script: str,
        *,
        stdin: bytes | AsyncIterable[bytes] | None = None,
        on_line: LineCallback | None = None,
        timeout: float | None = None,
    ) -> RunResult:
        """Run ``script`` under ``sh`` on ``host``.

        Raises HostUnreachable (cannot connect / authenticate, or the connection
        dropped mid-run), ValueError (script over 100 KB), TimeoutError (``timeout``
        passed; the remote process is killed first). Cancelling kills the remote process.
        """
        command = self.build_command(script)
        self.round_trips += 1
        pooled = await self._get(host)
        async with pooled.channels:
            pooled.active += 1
            try:
                if self.sessions and pooled.sessions_ok is not False:
                    try:
                        return await self._run_in_session(pooled, script, stdin, on_line, timeout)
                    except SessionRefused:
                        pooled.sessions_ok = False  # this host: a channel per script from now on
                self._trim_idle(pooled)
                return await self._run_channel(pooled, command, stdin, on_line, timeout)
            finally:
                pooled.active -= 1

    def unpacks(self, host: HostConfig) -> bool:
        """Packed stream pieces reach ``host`` packed: a session there has said its host
        inflates them (the engine asks after its first exchange; see transport.Packed)."""
        pooled = self._pool.get(self._key(host))
        return bool(self.sessions and pooled is not None and pooled.sessions_ok is not False and pooled.gunzip)

    # ------------------------------------------------------- one long-lived sh

    def _trim_idle(self, pooled: _Pooled) -> None:
        """Idle sessions are open channels too: keep active + idle under the channel cap."""
        while pooled.idle and pooled.active + len(pooled.idle) > self.max_channels_per_host:
            pooled.idle.pop(0).close()

    async def _run_in_session(self, pooled: _Pooled, script: str, stdin: bytes | AsyncIterable[bytes] | None,
                              on_line: LineCallback | None, timeout: float | None) -> RunResult:
        sess = pooled.idle.pop() if pooled.idle else None
        if sess is None:
            self._trim_idle(pooled)
            # issue 21: a script without stdin rides on the exec (its answer comes with the reply)
            opening = asyncio.ensure_future(Session.open(pooled.conn, _PID_LINE, first=script if stdin is None else None))
            try:
                sess = await asyncio.shield(opening)  # a cancel must not orphan an open channel
            except asyncio.CancelledError:
                try:
                    opened = await asyncio.wait_for(opening, 10)
                    if opened.running_first:  # the script went with the exec: end it with the session
                        await self._kill(pooled, opened.proc, opened.state)
                    else:
                        opened.close()  # nothing was sent to it yet
                except BaseException:
                    pass
                raise
            except (asyncssh.Error, OSError) as exc:
                raise self._channel_error(pooled, exc) from None
            self.sessions_opened += 1
        state = sess.state
        out: list[str] = []
        err: list[str] = []
        sink = line_sink(out, err, on_line, state)

        def sent(n: int) -> None:
            self.bytes_sent += n

        try:
            async with asyncio.timeout(timeout):
                status = await sess.exchange(script, stdin, lambda name, raw: sink(name, raw), sent)
            pooled.gunzip = sess.gunzip
        except SessionRefused:
            sess.close()
            raise
        except BaseException as exc:
            # the session ends with whatever it was running (TERM reaches its process group)
            await self._kill(pooled, sess.proc, state)
            if isinstance(exc, SessionLost) or (
                    isinstance(exc, (asyncssh.Error, OSError)) and not isinstance(exc, TimeoutError)):
                if pooled.lost or pooled.conn.is_closed():
                    self._drop(pooled)
                    raise HostUnreachable(
                        f"{pooled.target.label}: connection lost during the run ({_reason(exc)}); "
                        "the remote state is unknown"
                    ) from None
                if isinstance(exc, SessionLost):
                    return RunResult(exit_code(sess.proc), "\n".join(out), "\n".join(err))
            raise
        if self._closed or pooled.lost:
            sess.close()
        else:
            pooled.idle.append(sess)
        return RunResult(status, "\n".join(out), "\n".join(err))

    # ------------------------------------------------------ a channel per script

    async def _run_channel(self, pooled: _Pooled, command: str, stdin: bytes | AsyncIterable[bytes] | None,
                           on_line: LineCallback | None, timeout: float | None) -> RunResult:
        opening = asyncio.ensure_future(pooled.conn.create_process(
            command, encoding=None, request_pty=False, x11_forwarding=False,
        ))
        try:
            # shielded: a cancel landing between "exec sent" and "reply received"
            # must not leave a process running that we hold no handle to
            proc = await asyncio.shield(opening)
        except asyncio.CancelledError:
            try:
                orphan = await asyncio.wait_for(opening, 10)
            except BaseException:
                raise asyncio.CancelledError() from None
            await self._kill(pooled, orphan, ProcState())
            raise
        except (asyncssh.Error, OSError) as exc:
            raise self._channel_error(pooled, exc) from None
        state = ProcState()
        out: list[str] = []
        err: list[str] = []
        try:
            async with asyncio.timeout(timeout):
                await _all_or_nothing(
                    self._feed(proc, stdin),
                    self._pump(proc.stdout, "stdout", out, on_line, state),
                    self._pump(proc.stderr, "stderr", err, on_line, state),
                )
                await proc.wait_closed()
            state.done = True
        except BaseException as exc:
            if not state.done:
                await self._kill(pooled, proc, state)
            if (isinstance(exc, (asyncssh.Error, OSError)) and not isinstance(exc, TimeoutError)
                    and (pooled.lost or pooled.conn.is_closed())):
                self._drop(pooled)
                raise HostUnreachable(
                    f"{pooled.target.label}: connection lost during the run ({_reason(exc)}); "
                    "the remote state is unknown"
                ) from None
            raise
        if (not proc.exit_signal and (proc.exit_status is None or proc.exit_status < 0)
                and (pooled.lost or pooled.conn.is_closed())):
            self._drop(pooled)
            raise HostUnreachable(
                f"{pooled.target.label}: connection lost during the run; the remote state is unknown"
            )
        return RunResult(exit_code(proc), "\n".join(out), "\n".join(err))

    def _channel_error(self, pooled: _Pooled, exc: BaseException) -> HostUnreachable:
        if pooled.conn.is_closed() or pooled.lost:
            self._drop(pooled)
            return HostUnreachable(f"{pooled.target.label}: connection lost ({_reason(exc)})")
        return HostUnreachable(f"{pooled.target.label}: cannot open an ssh channel: {_reason(exc)}")

    def _drop(self, pooled: _Pooled) -> None:
        pooled.lost = True
        for k, v in list(self._pool.items()):
            if v is pooled:
                del self._pool[k]
        pooled.conn.close()

    async def _feed(self, proc: asyncssh.SSHClientProcess, stdin: bytes | AsyncIterable[bytes] | None) -> None:
        w = proc.stdin
        try:
            if isinstance(stdin, (bytes, bytearray, memoryview)):
                data = memoryview(stdin)
                for i in range(0, len(data), _STDIN_CHUNK):
                    chunk = bytes(data[i:i + _STDIN_CHUNK])
                    w.write(chunk)
                    self.bytes_sent += len(chunk)
                    await w.drain()
            elif stdin is not None:
                async for chunk in stdin:
                    chunk = plain(chunk)  # a channel per script has no loop to inflate Packed pieces
                    if not chunk:
                        continue
                    w.write(bytes(chunk))
                    self.bytes_sent += len(chunk)
                    await w.drain()
            w.write_eof()
        except (BrokenPipeError, ConnectionResetError):
            return  # the script stopped reading; its exit status tells the story

    async def _pump(self, reader, name: str, sink: list[str], on_line: LineCallback | None, state: ProcState) -> None:
        emit = line_sink(sink, sink, on_line, state)
        buf = bytearray()
        while True:
            chunk = await reader.read(_READ_CHUNK)
            if not chunk:
                break
            buf += chunk
            start = 0
            while True:
                nl = buf.find(b"\n", start)
                if nl < 0:
                    break
                emit(name, bytes(buf[start:nl]))
                start = nl + 1
            if start:
                del buf[:start]
            # asyncssh's read() returns at once while data is buffered, so a flood (a
            # build printing 100k lines) would otherwise starve the event loop: the
            # dashboard's key presses waited ~55 ms median behind it (benchmarks/tui_bench).
            await asyncio.sleep(0)
        if buf:
            emit(name, bytes(buf))

    async def _kill(self, pooled: _Pooled, proc: asyncssh.SSHClientProcess, state: ProcState) -> None:
        """Stop the remote process group; see the module docstring. Never raises."""

        async def exited(wait: float) -> bool:
            try:
                await asyncio.wait_for(asyncio.shield(proc.wait_closed()), wait)
                return True
            except BaseException:
                return proc.exit_status is not None or proc.exit_signal is not None

        try:
            if pooled.conn.is_closed():
                return
            try:
                proc.send_signal("TERM")
            except Exception:
                pass
            if await exited(_KILL_GRACE):
                return
            try:
                proc.send_signal("KILL")
            except Exception:
                pass
            if state.pid and state.pid > 1:
                pid = state.pid
                try:
                    killer = await asyncio.wait_for(
                        pooled.conn.create_process(
                            f"kill -KILL -{pid} 2>/dev/null || kill -KILL {pid} 2>/dev/null; true",
                            encoding=None, request_pty=False,
                        ),
                        5,
                    )
                    killer.stdin.write_eof()
                    await asyncio.wait_for(killer.wait_closed(), 5)
                except BaseException:
                    pass
            await exited(_KILL_GRACE)
        except BaseException:
            pass
        finally:
            try:
                proc.close()
            except Exception:
                pass


def _reason(exc: BaseException) -> str:
    return getattr(exc, "reason", None) or str(exc) or type(exc).__name__


async def _all_or_nothing(*coros: Awaitable[None]) -> None:
    """Run coroutines concurrently; the first failure cancels the rest and is re-raised."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for t in done:
            if not t.cancelled() and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]
    finally:
        for t in tasks:
            if not t.done():
                t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
