"""The demo's embedded SSH host: an asyncssh server on 127.0.0.1.

It stands in for a VPS so ``capview demo`` exercises the real client path
(``SshTransport``: known_hosts pinning, key auth, one ``sh`` script per call,
tar streams on stdin). Every session runs its exec command as
``/bin/sh -c <command>`` as the current user, with ``cwd`` = the demo
directory (confinement is by convention only: this is a sandbox, not a jail).

* keys: ``keys/host_ed25519`` (host key), ``keys/client_ed25519`` (+ ``.pub``)
  and ``keys/authorized_keys`` are generated once and reused.
* ``known_hosts`` pins the host key as ``[127.0.0.1]:PORT ssh-ed25519 ...``;
  clients keep host-key checking on.
* stdin/stdout/stderr are passed through as bytes with flow control; client
  EOF closes the command's stdin; the exit status (or the killing signal) is
  reported like sshd does.
* when the channel closes before the command finished (client cancelled, or
  the connection dropped), the command's whole process group is killed.
"""

from __future__ import annotations

import asyncio
import errno
import getpass
import logging
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh

from capview.errors import CapviewError

HOST = "127.0.0.1"
CHUNK = 64 * 1024
# After the command exits, how long to wait for its stdout/stderr to reach EOF.
# A real sshd waits forever (the classic "ssh hangs on a background job"); the
# demo logs a warning and finishes instead, so a sloppy script cannot wedge it.
EOF_GRACE = 5.0
KILL_GRACE = 2.0

log = logging.getLogger("capview.demo.server")


class DemoServerError(CapviewError):
    """The embedded SSH host could not start (port in use, keys unreadable...)."""


# --------------------------------------------------------------------------- keys


def _keys_dir(demo_dir: Path) -> Path:
    return demo_dir / "keys"


def host_key_path(demo_dir: Path) -> Path:
    return _keys_dir(demo_dir) / "host_ed25519"


def client_key_path(demo_dir: Path) -> Path:
    return _keys_dir(demo_dir) / "client_ed25519"


def known_hosts_path(demo_dir: Path) -> Path:
    return demo_dir / "known_hosts"


def authorized_keys_path(demo_dir: Path) -> Path:
    return _keys_dir(demo_dir) / "authorized_keys"


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _load_or_create_key(path: Path, comment: str) -> asyncssh.SSHKey:
    if path.exists():
        try:
            return asyncssh.read_private_key(str(path))
        except (OSError, asyncssh.KeyImportError) as e:
            raise DemoServerError(f"cannot read demo key {path}: {e}") from None
    key = asyncssh.generate_private_key("ssh-ed25519", comment=comment)
    _write_private(path, key.export_private_key())
    _write_public(path.with_name(path.name + ".pub"), key.export_public_key())
    return key


def ensure_keys(demo_dir: Path) -> tuple[asyncssh.SSHKey, asyncssh.SSHKey]:
    """Create (once) the host key, the client key and authorized_keys. Returns (host, client)."""
    kdir = _keys_dir(demo_dir)
    kdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    user = getpass.getuser()
    host_key = _load_or_create_key(host_key_path(demo_dir), f"capview-demo-host@{HOST}")
    client_key = _load_or_create_key(client_key_path(demo_dir), f"{user}@capview-demo")
    _write_public(authorized_keys_path(demo_dir), client_key.export_public_key())
    return host_key, client_key


def write_known_hosts(demo_dir: Path, host_key: asyncssh.SSHKey, port: int) -> Path:
    pub = host_key.export_public_key("openssh").decode().split()
    line = f"[{HOST}]:{port} {pub[0]} {pub[1]}\n"
    path = known_hosts_path(demo_dir)
    _write_public(path, line.encode())
    return path


# --------------------------------------------------------------------------- sessions


def session_env(demo_dir: Path) -> dict[str, str]:
    """What a login on the demo host sees: a small environment, like sshd gives.

    The directory of the Python running capview comes first on PATH, so the
    sample app's ``python3`` is a Python that exists (pyenv shims, venvs...).
    """
    path = [os.path.dirname(sys.executable)]
    for p in os.environ.get("PATH", "").split(os.pathsep) + ["/usr/local/bin", "/usr/bin", "/bin"]:
        if p and p not in path:
            path.append(p)
    user = getpass.getuser()
    env = {
        "HOME": str(demo_dir),
        "PATH": os.pathsep.join(path),
        "USER": user,
        "LOGNAME": user,
        "SHELL": "/bin/sh",
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "CAPVIEW_DEMO": "1",
    }
    for k in ("TMPDIR", "TZ", "LC_ALL"):
        if k in os.environ:
            env[k] = os.environ[k]
    return env


def _killpg(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


async def _kill_group(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM the command's process group, then SIGKILL what is left."""
    _killpg(proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), KILL_GRACE)
    except asyncio.TimeoutError:
        pass
    _killpg(proc.pid, signal.SIGKILL)
    if proc.returncode is None:
        await proc.wait()


async def _returncode_set(proc: asyncio.subprocess.Process) -> None:
    while proc.returncode is None:
        await asyncio.sleep(0.1)


class _Session:
    def __init__(self, server: "DemoServer", process: asyncssh.SSHServerProcess) -> None:
        self.server = server
        self.process = process
        self.proc: asyncio.subprocess.Process | None = None

    async def run(self) -> None:
        process = self.process
        command = process.command
        # No command (a "shell" request): the script comes on stdin, like `ssh host < script`.
        argv = ["/bin/sh", "-c", command] if command is not None else ["/bin/sh", "-s"]
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=str(self.server.demo_dir),
                env=self.server.env,
                start_new_session=True,
            )
        except OSError as e:
            self._finish_write(f"capview demo host: cannot run /bin/sh: {e}\n".encode(), stderr=True)
            self._exit(127)
            return
        proc = self.proc
        self.server._procs.add(proc)
        # A channel "signal" request goes to the command's process group, as OpenSSH >= 7.9
        # does. asyncssh would queue it on stdin, which nobody reads after the client's EOF.
        process.signal_received = self._on_signal  # type: ignore[method-assign]
        closed = asyncio.ensure_future(process.channel.wait_closed())
        feeder = asyncio.ensure_future(self._feed())
        pumps = asyncio.ensure_future(
            asyncio.gather(self._pump(proc.stdout, process.stdout), self._pump(proc.stderr, process.stderr))
        )
        try:
            # proc.wait() also waits for the pipes to close; a background job that
            # keeps stdout open would hide the exit, so returncode is watched too.
            exited = asyncio.ensure_future(proc.wait())
            watcher = asyncio.ensure_future(_returncode_set(proc))
            try:
                await asyncio.wait({exited, watcher, closed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                watcher.cancel()
                if not exited.done():
                    exited.cancel()
            if proc.returncode is None:  # the channel closed under a running command
                await _kill_group(proc)
                return
            done, _ = await asyncio.wait({pumps, closed}, timeout=EOF_GRACE, return_when=asyncio.FIRST_COMPLETED)
            if not done:
                log.info("command exited but something it started still holds stdout/stderr: %r", command)
            if closed.done():
                return
            if pumps.done():
                try:
                    process.stdout.write_eof()
                except OSError:
                    pass
            rc = proc.returncode
            assert rc is not None
            if rc < 0:
                try:
                    name = signal.Signals(-rc).name.removeprefix("SIG")
                except ValueError:
                    name = "KILL"
                try:
                    process.exit_with_signal(name)
                except OSError:
                    pass
            else:
                self._exit(rc)
        except asyncio.CancelledError:
            if proc.returncode is None:
                await asyncio.shield(_kill_group(proc))
            raise
        finally:
            for t in (feeder, pumps, closed):
                t.cancel()
            await asyncio.gather(feeder, pumps, closed, return_exceptions=True)
            if proc.returncode is not None:
                # Release our ends of the pipes even if a background job still holds theirs.
                transport = getattr(proc, "_transport", None)
                if transport is not None:
                    transport.close()
            self.server._procs.discard(proc)

    def _on_signal(self, name: str) -> None:
        sig = getattr(signal, "SIG" + name.upper(), None)
        if self.proc is not None and self.proc.returncode is None and isinstance(sig, signal.Signals):
            _killpg(self.proc.pid, sig)

    def _exit(self, status: int) -> None:
        try:
            self.process.exit(status)
        except OSError:
            pass

    def _finish_write(self, data: bytes, *, stderr: bool = False) -> None:
        try:
            (self.process.stderr if stderr else self.process.stdout).write(data)
        except OSError:
            pass

    async def _feed(self) -> None:
        """Client stdin -> command stdin; client EOF closes the command's stdin."""
        assert self.proc is not None and self.proc.stdin is not None
        sink = self.proc.stdin
        broken = False
        while True:
            try:
                data = await self.process.stdin.read(CHUNK)
            except (asyncssh.SignalReceived, asyncssh.BreakReceived, asyncssh.TerminalSizeChanged):
                continue
            except (asyncssh.Error, OSError):
                break
            if not data:
                break
            if broken:
                continue  # keep reading so the client is never blocked on a dead pipe
            try:
                sink.write(data)
                await sink.drain()
            except (BrokenPipeError, ConnectionResetError):
                broken = True
        try:
            sink.close()
        except OSError:
            pass

    @staticmethod
    async def _pump(reader: asyncio.StreamReader | None, writer: asyncssh.SSHWriter) -> None:
        """Command output -> channel, with the channel's flow control."""
        assert reader is not None
        dead = False
        while True:
            data = await reader.read(CHUNK)
            if not data:
                return
            if dead:
                continue
            try:
                writer.write(data)
                await writer.drain()
            except (OSError, asyncssh.Error):
                dead = True  # channel gone: keep draining the pipe so the command is not blocked


class _ServerHooks(asyncssh.SSHServer):
    def __init__(self, server: "DemoServer") -> None:
        self._server = server
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._server._conns.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._server._conns.discard(self._conn)

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False


@dataclass(eq=False)
class DemoServer:
    demo_dir: Path
    port: int
    known_hosts: Path
    client_key: Path
    host_key: Path
    env: dict[str, str]
    _acceptor: asyncssh.SSHAcceptor | None = None
    _conns: set = field(default_factory=set)
    _procs: set = field(default_factory=set)
    _sessions: set = field(default_factory=set)

    @property
    def host(self) -> str:
        return HOST

    async def _handle(self, process: asyncssh.SSHServerProcess) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._sessions.add(task)
        try:
            await _Session(self, process).run()
        finally:
            if task is not None:
                self._sessions.discard(task)

    async def close(self) -> None:
        """Stop listening, drop every connection, kill every command still running."""
        if self._acceptor is not None:
            self._acceptor.close()
            await self._acceptor.wait_closed()
            self._acceptor = None
        for conn in list(self._conns):
            conn.close()
        for proc in list(self._procs):
            if proc.returncode is None:
                _killpg(proc.pid, signal.SIGKILL)
        tasks = list(self._sessions)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=KILL_GRACE + 1)
        for conn in list(self._conns):
            try:
                await asyncio.wait_for(conn.wait_closed(), 1.0)
            except (asyncio.TimeoutError, Exception):
                pass

    async def __aenter__(self) -> "DemoServer":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def start_server(demo_dir: Path, port: int = 0) -> DemoServer:
    """Start the embedded SSH host for ``demo_dir`` on 127.0.0.1:``port`` (0: any free port).

    Generates (once) the keys under ``demo_dir/keys`` and (each start) the pinned
    ``demo_dir/known_hosts``. Raises DemoServerError with a one-line message.
    """
    demo_dir = Path(demo_dir).resolve()
    try:
        demo_dir.mkdir(parents=True, exist_ok=True)
        host_key, _client = ensure_keys(demo_dir)
    except PermissionError as e:
        raise DemoServerError(f"cannot write the demo keys: permission denied: {e.filename or demo_dir}") from None
    except OSError as e:
        raise DemoServerError(f"cannot write the demo keys in {demo_dir}: {e.strerror or e}") from None

    server = DemoServer(
        demo_dir=demo_dir,
        port=0,
        known_hosts=known_hosts_path(demo_dir),
        client_key=client_key_path(demo_dir),
        host_key=host_key_path(demo_dir),
        env=session_env(demo_dir),
    )
    try:
        acceptor = await asyncssh.listen(
            HOST,
            port,
            server_factory=lambda: _ServerHooks(server),
            server_host_keys=[host_key],
            authorized_client_keys=str(authorized_keys_path(demo_dir)),
            process_factory=server._handle,
            encoding=None,
            allow_pty=False,
            agent_forwarding=False,
            x11_forwarding=False,
            allow_scp=False,
            keepalive_interval=15,
            reuse_address=True,
        )
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise DemoServerError(
                f"port {port} on {HOST} is already in use", hint="pick another with --port, or omit it for a free one"
            ) from None
        raise DemoServerError(f"cannot listen on {HOST}:{port}: {e.strerror or e}") from None
    server._acceptor = acceptor
    server.port = acceptor.get_port()
    write_known_hosts(demo_dir, host_key, server.port)
    return server
