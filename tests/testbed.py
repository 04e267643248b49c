"""Real-host integration testbed for capview (helpers only; fixtures live in conftest.py).

Every "host" is a real OpenSSH server (its own ``sshd`` process, its own ed25519 host
key, its own free port on 127.0.0.1) in front of a real login user that has a real
``systemd --user`` manager and real rootless ``podman``.  ``scripts/testbed.sh up``
(run as root) creates the users and starts the user managers; this module starts and
stops the sshd instances.  See ``shared/TESTBED.md`` for why the tricks are needed.

Users (created by ``scripts/testbed.sh up``):

* ``cvdeploy`` -- running ``systemd --user`` manager, rootless podman (vfs storage,
  subuid/subgid ranges), used by ``start_host()`` by default.
* ``cvnosd``   -- a login user with *no* user manager: ``systemctl --user`` fails with
  "Failed to connect to bus" (the "no user manager / enable-linger" preflight case).

Missing podman (``start_host(..., hide_podman=True)``): the sshd for that host is
started inside a private mount namespace (``unshare -m --propagation private``) in which
``/usr/bin`` is an overlayfs over the real ``/usr/bin`` (upper/work dirs on a tmpfs private
to that namespace) with ``podman`` deleted (whiteout).  Every session of that sshd --
login or not, whatever PATH ``/etc/profile`` or ``~/.profile`` set -- sees no podman
anywhere (``command -v podman`` fails, ``podman`` gives exit 127), while the user, its
``systemd --user`` manager and everything else are exactly as on a normal host.  This was
chosen over a PATH trick (``PermitUserEnvironment`` + ``~/.ssh/environment``) because
login shells (``bash -lc``) reset PATH from ``/etc/profile`` and would find podman again.
The mounts vanish with the namespace when that sshd exits; nothing on the machine changes.

Environment variables:

* ``CAPVIEW_TESTBED_DISABLE=1`` -- pretend the testbed is unavailable (tests skip, or fail
  under ``CAPVIEW_REQUIRE_TESTBED=1``); useful to check the "require" plumbing.
* ``CAPVIEW_TESTBED_STATE``     -- state dir (default ``/tmp/capview-testbed``).
* ``CAPVIEW_TESTBED_KEEP=1``    -- keep hosts' base dirs after the tests (debugging).
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "STATE_DIR",
    "TESTBED_SH",
    "DEPLOY_USER",
    "NOSD_USER",
    "TestHost",
    "Testbed",
    "TestbedError",
    "testbed_unavailable_reason",
    "rotate_host_key",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
TESTBED_SH = REPO_ROOT / "scripts" / "testbed.sh"
STATE_DIR = Path(os.environ.get("CAPVIEW_TESTBED_STATE", "/tmp/capview-testbed"))
CLIENT_KEY = STATE_DIR / "client_ed25519"
DEPLOY_USER = "cvdeploy"
NOSD_USER = "cvnosd"
SSHD = "/usr/sbin/sshd"
SYSTEMD = "/lib/systemd/systemd"
USER_PATH = "/usr/local/bin:/usr/bin:/bin"


class TestbedError(subprocess.CalledProcessError):
    """A failed command; unlike CalledProcessError its message includes stdout/stderr."""

    __test__ = False

    def __str__(self) -> str:  # pragma: no cover - formatting only
        base = super().__str__()
        return f"{base}\n--- stdout ---\n{self.stdout or ''}\n--- stderr ---\n{self.stderr or ''}"


def _run(argv, *, check=True, input=None, timeout=120, env=None) -> subprocess.CompletedProcess:
    cp = subprocess.run(
        argv,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        stdin=None if input is not None else subprocess.DEVNULL,
    )
    if check and cp.returncode != 0:
        raise TestbedError(cp.returncode, argv, cp.stdout, cp.stderr)
    return cp


def testbed_unavailable_reason() -> str | None:
    """None when this machine can run the real-host tests, else a human-readable reason."""
    if os.environ.get("CAPVIEW_TESTBED_DISABLE", "") not in ("", "0"):
        return "testbed disabled by CAPVIEW_TESTBED_DISABLE"
    if not sys.platform.startswith("linux"):
        return f"testbed needs Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return "testbed needs root (starts sshd, creates users, runs systemd --user)"
    missing = [
        p
        for p in (SSHD, SYSTEMD)
        if not os.access(p, os.X_OK)
    ] + [
        b
        for b in ("ssh", "ssh-keygen", "systemctl", "podman", "setpriv", "unshare", "rsync")
        if shutil.which(b) is None
    ]
    if missing:
        return "testbed packages missing: " + ", ".join(missing) + " (run: bash scripts/testbed.sh install)"
    if not TESTBED_SH.exists():
        return f"{TESTBED_SH} not found"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _user_env(pw: pwd.struct_passwd) -> dict[str, str]:
    rt = f"/run/user/{pw.pw_uid}"
    return {
        "HOME": pw.pw_dir,
        "USER": pw.pw_name,
        "LOGNAME": pw.pw_name,
        "SHELL": pw.pw_shell or "/bin/bash",
        "PATH": USER_PATH,
        "XDG_RUNTIME_DIR": rt,
        "DBUS_SESSION_BUS_ADDRESS": f"unix:path={rt}/bus",
        "LANG": "C.UTF-8",
    }


def _as_user_argv(pw: pwd.struct_passwd, argv: list[str]) -> list[str]:
    """argv that runs ``argv`` locally as the user (no PAM, no login), with a clean env."""
    env = [f"{k}={v}" for k, v in _user_env(pw).items()]
    return [
        "setpriv",
        f"--reuid={pw.pw_uid}",
        f"--regid={pw.pw_gid}",
        "--init-groups",
        "env",
        "-i",
        *env,
        *argv,
    ]


@dataclass
class TestHost:
    """One "remote" host: its own sshd on 127.0.0.1:port, logging in as ``user``."""

    __test__ = False  # not a pytest test class

    name: str
    host: str
    port: int
    user: str
    uid: int
    home: Path
    identity_file: Path
    known_hosts: Path
    base: Path
    # --- internals (not part of the stable API) ---
    dir: Path = field(default=None, repr=False)  # type: ignore[assignment]
    hide_podman: bool = field(default=False, repr=False)
    extra_sshd_config: str = field(default="", repr=False)
    proc: subprocess.Popen | None = field(default=None, repr=False)
    testbed: "Testbed | None" = field(default=None, repr=False)

    # ---------------------------------------------------------------- ssh
    @property
    def target(self) -> str:
        """``user@127.0.0.1``"""
        return f"{self.user}@{self.host}"

    def ssh_options(self) -> list[str]:
        """ssh ``-o``/``-i``/``-p`` options that reach this host with host key checking ON."""
        return [
            "-F", "/dev/null",
            "-i", str(self.identity_file),
            "-p", str(self.port),
            "-o", "IdentitiesOnly=yes",
            "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes",
            "-o", "ConnectTimeout=10",
            "-o", "LogLevel=ERROR",
        ]

    def ssh_argv(self, cmd: str | None = None) -> list[str]:
        argv = ["ssh", *self.ssh_options(), self.target]
        if cmd is not None:
            argv.append(cmd)  # everything after the target is the remote command
        return argv

    def ssh_config(self, alias: str | None = None) -> str:
        """An ssh_config ``Host`` block for this host (for tools that read ssh config)."""
        alias = alias or self.name
        return (
            f"Host {alias}\n"
            f"    HostName {self.host}\n"
            f"    Port {self.port}\n"
            f"    User {self.user}\n"
            f"    IdentityFile {self.identity_file}\n"
            f"    IdentitiesOnly yes\n"
            f"    UserKnownHostsFile {self.known_hosts}\n"
            f"    GlobalKnownHostsFile /dev/null\n"
            f"    StrictHostKeyChecking yes\n"
            f"    BatchMode yes\n"
        )

    def ssh(self, cmd: str, check: bool = True, input: str | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
        """Run ``cmd`` (a shell string) on the host over real ssh as the user."""
        return _run(self.ssh_argv(cmd), check=check, input=input, timeout=timeout)

    # ---------------------------------------------------------- local helpers
    @property
    def pw(self) -> pwd.struct_passwd:
        return pwd.getpwnam(self.user)

    @property
    def runtime_dir(self) -> Path:
        return Path(f"/run/user/{self.uid}")

    def run_as_user(self, cmd: str, check: bool = True, input: str | None = None,
                    timeout: float = 120) -> subprocess.CompletedProcess:
        """Run a shell command locally as the user (no ssh; XDG_RUNTIME_DIR set). Fast."""
        return _run(_as_user_argv(self.pw, ["bash", "-c", cmd]), check=check, input=input,
                    timeout=timeout)

    def systemctl(self, *args: str, check: bool = False, timeout: float = 60) -> subprocess.CompletedProcess:
        """``systemctl --user ARGS`` as the user with XDG_RUNTIME_DIR set (locally, no ssh)."""
        return _run(_as_user_argv(self.pw, ["systemctl", "--user", *args]), check=check,
                    timeout=timeout)

    def unit_dir(self) -> Path:
        return self.home / ".config" / "systemd" / "user"

    def install_unit(self, name: str, text: str) -> None:
        """Write ``~/.config/systemd/user/<name>.service`` (owned by the user) + daemon-reload."""
        if "." not in name:
            name += ".service"
        d = self.unit_dir()
        _makedirs_owned(d, self.home, self.uid, self.pw.pw_gid)
        p = d / name
        p.write_text(text)
        os.chown(p, self.uid, self.pw.pw_gid)
        p.chmod(0o644)
        self.systemctl("daemon-reload", check=True)

    def write_file(self, path: str | Path, text: str, mode: int = 0o644) -> Path:
        """Write a file on the host (locally, as root) and chown it to the user."""
        p = Path(path)
        if not p.is_absolute():
            p = self.base / p
        _makedirs_owned(p.parent, self.home, self.uid, self.pw.pw_gid)
        p.write_text(text)
        os.chown(p, self.uid, self.pw.pw_gid)
        p.chmod(mode)
        return p

    def rotate_host_key(self) -> None:
        """Restart this host's sshd with a NEW host key (known_hosts keeps the old one)."""
        assert self.testbed is not None
        self.testbed.rotate_host_key(self)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def sshd_log(self) -> str:
        try:
            return (self.dir / "sshd.log").read_text(errors="replace")
        except OSError:
            return ""


def _makedirs_owned(d: Path, stop_at: Path, uid: int, gid: int) -> None:
    """mkdir -p ``d``, chowning every directory created below ``stop_at`` to uid:gid."""
    missing = []
    cur = d
    while not cur.exists():
        missing.append(cur)
        if cur == stop_at or cur.parent == cur:
            break
        cur = cur.parent
    for m in reversed(missing):
        m.mkdir(mode=0o755)
        if stop_at in m.parents or m == stop_at:
            os.chown(m, uid, gid)


class Testbed:
    """Starts/stops per-test sshd "hosts". Needs root and ``scripts/testbed.sh up``."""

    __test__ = False  # not a pytest test class

    def __init__(self, run_up: bool = True, state_dir: Path = STATE_DIR):
        reason = testbed_unavailable_reason()
        if reason:
            raise RuntimeError(f"testbed unavailable: {reason}")
        self.state_dir = Path(state_dir)
        if run_up:
            env = dict(os.environ, CAPVIEW_TESTBED_STATE=str(self.state_dir))
            _run(["bash", str(TESTBED_SH), "up"], timeout=180, env=env)
        self.client_key = self.state_dir / "client_ed25519"
        if not self.client_key.exists():
            raise RuntimeError(f"{self.client_key} missing: run `bash scripts/testbed.sh up` first")
        self.hosts: list[TestHost] = []
        self._seq = 0

    # ------------------------------------------------------------------ hosts
    def start_host(self, name: str, user: str = DEPLOY_USER, extra_sshd_config: str = "",
                   hide_podman: bool = False) -> TestHost:
        """Start a new sshd "host" for ``user`` and return it (fresh ``base`` directory).

        hide_podman=True: podman is absent for every session of this host (see module doc).
        """
        try:
            pw = pwd.getpwnam(user)
        except KeyError:
            raise RuntimeError(f"user {user!r} does not exist: run `bash scripts/testbed.sh up`") from None
        self._seq += 1
        token = secrets.token_hex(3)
        hdir = self.state_dir / "hosts" / f"{name}-{os.getpid()}-{self._seq}-{token}"
        hdir.mkdir(parents=True, mode=0o700)
        home = Path(pw.pw_dir)
        base = home / "tb" / f"{name}-{token}"
        _makedirs_owned(base, home, pw.pw_uid, pw.pw_gid)
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"tb-host-{name}",
              "-f", str(hdir / "host_ed25519")])
        h = TestHost(
            name=name,
            host="127.0.0.1",
            port=0,
            user=user,
            uid=pw.pw_uid,
            home=home,
            identity_file=self.client_key,
            known_hosts=hdir / "known_hosts",
            base=base,
            dir=hdir,
            hide_podman=hide_podman,
            extra_sshd_config=extra_sshd_config,
            testbed=self,
        )
        try:
            self._launch(h, new_port=True)
            self._write_known_hosts(h)
            self._wait_login(h)
            if hide_podman:
                cp = h.ssh("command -v podman || test -e /usr/bin/podman", check=False)
                if cp.returncode == 0:
                    raise RuntimeError(f"hide_podman failed: podman still visible: {cp.stdout!r}")
        except BaseException:
            self._kill(h)
            raise
        self.hosts.append(h)
        return h

    def stop_host(self, h: TestHost, keep_base: bool | None = None) -> None:
        """Stop ``h``'s sshd, stop+remove the user units that point into ``h.base``
        (what a deploy under it installed), and delete ``h.base``."""
        self._kill(h)
        if h in self.hosts:
            self.hosts.remove(h)
        try:
            self.remove_units_under(h.user, h.base)
        except Exception:
            pass
        if keep_base is None:
            keep_base = os.environ.get("CAPVIEW_TESTBED_KEEP", "") not in ("", "0")
        if not keep_base:
            shutil.rmtree(h.base, ignore_errors=True)
            shutil.rmtree(h.dir, ignore_errors=True)

    def rotate_host_key(self, h: TestHost) -> None:
        """Restart ``h``'s sshd (same port) with a NEW host key; ``h.known_hosts`` keeps the old one."""
        self._kill(h)
        key = h.dir / "host_ed25519"
        for p in (key, key.with_suffix(".pub")):
            p.unlink(missing_ok=True)
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"tb-host-{h.name}-rotated",
              "-f", str(key)])
        self._launch(h, new_port=False)

    def close(self) -> None:
        for h in list(self.hosts):
            self.stop_host(h)

    def __enter__(self) -> "Testbed":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------ user units
    def remove_units_under(self, user: str, base: Path) -> list[str]:
        """Stop, disable and delete the user's unit files whose text mentions ``base``.

        Safe with concurrent test sessions: only units of that (unique) base dir go."""
        pw = pwd.getpwnam(user)
        d = Path(pw.pw_dir) / ".config" / "systemd" / "user"
        if not d.is_dir():
            return []
        needle = str(base)
        units = []
        for p in d.iterdir():
            try:
                if p.is_file() and needle in p.read_text(errors="replace"):
                    units.append(p.name)
            except OSError:
                continue
        if not units:
            return []
        _run(_as_user_argv(pw, ["systemctl", "--user", "disable", "--now", *units]), check=False)
        for p in d.rglob("*"):
            if p.name in units and (p.is_symlink() or p.is_file()):
                p.unlink(missing_ok=True)
        _run(_as_user_argv(pw, ["systemctl", "--user", "daemon-reload"]), check=False)
        _run(_as_user_argv(pw, ["systemctl", "--user", "reset-failed", *units]), check=False)
        return units

    def reset_user_units(self, user: str = DEPLOY_USER) -> None:
        """Stop and delete EVERY unit file in the user's ~/.config/systemd/user.

        Not called automatically (it would hit concurrent test sessions); for manual cleanup."""
        pw = pwd.getpwnam(user)
        d = Path(pw.pw_dir) / ".config" / "systemd" / "user"
        if not d.is_dir():
            return
        units = [p.name for p in d.iterdir()
                 if p.is_file() and p.suffix in (".service", ".socket", ".timer", ".path", ".target")]
        probe = _run(_as_user_argv(pw, ["systemctl", "--user", "is-system-running"]), check=False)
        has_manager = probe.stdout.strip() in ("running", "degraded", "starting", "initializing")
        if units and has_manager:
            _run(_as_user_argv(pw, ["systemctl", "--user", "disable", "--now", *units]), check=False)
        for p in d.iterdir():
            if p.is_dir() and (p.name.endswith(".wants") or p.name.endswith(".requires")):
                shutil.rmtree(p, ignore_errors=True)
            elif p.name in units:
                p.unlink(missing_ok=True)
        if has_manager:
            _run(_as_user_argv(pw, ["systemctl", "--user", "daemon-reload"]), check=False)
            _run(_as_user_argv(pw, ["systemctl", "--user", "reset-failed"]), check=False)

    # -------------------------------------------------------------- internals
    def _sshd_config(self, h: TestHost) -> str:
        return "\n".join([
            f"Port {h.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {h.dir / 'host_ed25519'}",
            f"PidFile {h.dir / 'sshd.pid'}",
            "UsePAM no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "AuthorizedKeysFile .ssh/authorized_keys",
            "PermitRootLogin no",
            f"AllowUsers {h.user}",
            "StrictModes no",
            "Subsystem sftp internal-sftp",
            "MaxSessions 20",
            "MaxStartups 100:30:200",
            "AcceptEnv LANG LC_*",
            "PrintMotd no",
            "UseDNS no",
            "LogLevel VERBOSE",
            h.extra_sshd_config,
            "",
        ])

    def _launch(self, h: TestHost, new_port: bool) -> None:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        last_err = ""
        for _attempt in range(8):
            if new_port:
                h.port = _free_port()
            cfg = h.dir / "sshd_config"
            cfg.write_text(self._sshd_config(h))
            log = h.dir / "sshd.log"
            _run([SSHD, "-t", "-f", str(cfg)])
            argv = [SSHD, "-D", "-f", str(cfg), "-E", str(log)]
            if h.hide_podman:
                ovl = h.dir / "ovl"
                ovl.mkdir(exist_ok=True)
                script = (
                    'set -e\n'
                    'mount -t tmpfs -o mode=700 tb-ovl "$1"\n'
                    'mkdir "$1/upper" "$1/work"\n'
                    'mount -t overlay tb-usrbin -o "lowerdir=/usr/bin,upperdir=$1/upper,workdir=$1/work" /usr/bin\n'
                    'rm -f /usr/bin/podman\n'
                    'shift\n'
                    'exec "$@"\n'
                )
                argv = ["unshare", "-m", "--propagation", "private", "sh", "-c", script,
                        "tb-nopodman", str(ovl), *argv]
            logf = open(h.dir / "launch.log", "ab")
            try:
                h.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf,
                                          stderr=subprocess.STDOUT, start_new_session=True)
            finally:
                logf.close()
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                if h.proc.poll() is not None:
                    break
                try:
                    with socket.create_connection((h.host, h.port), timeout=1) as s:
                        s.settimeout(5)
                        banner = s.recv(64)
                    if banner.startswith(b"SSH-"):
                        return
                except OSError:
                    pass
                time.sleep(0.05)
            last_err = h.sshd_log()[-2000:] + (h.dir / "launch.log").read_text(errors="replace")[-2000:]
            self._kill(h)
            if not new_port:
                time.sleep(0.5)  # same port requested: give the old listener time to go away
        raise RuntimeError(f"sshd for {h.name} did not come up:\n{last_err}")

    def _write_known_hosts(self, h: TestHost) -> None:
        pub = (h.dir / "host_ed25519.pub").read_text().split()
        h.known_hosts.write_text(f"[{h.host}]:{h.port} {pub[0]} {pub[1]}\n")

    def _wait_login(self, h: TestHost) -> None:
        deadline = time.monotonic() + 20
        while True:
            cp = h.ssh("true", check=False, timeout=20)
            if cp.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"cannot log in to {h.name} ({h.target}:{h.port}): {cp.stderr}\n{h.sshd_log()[-3000:]}")
            time.sleep(0.2)

    def _kill(self, h: TestHost) -> None:
        p = h.proc
        if p is None:
            return
        if p.poll() is None:
            # sshd -D is the session leader of its own process group; per-connection
            # children re-exec into their own sessions, so signal the listener itself:
            # on SIGTERM sshd stops listening (open connections end on their own).
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
        h.proc = None
        (h.dir / "sshd.pid").unlink(missing_ok=True)


def rotate_host_key(h: TestHost) -> None:
    """Restart ``h``'s sshd on the same port with a NEW host key; ``h.known_hosts`` is left
    pinning the OLD key, so the next ssh fails with "REMOTE HOST IDENTIFICATION HAS CHANGED"."""
    assert h.testbed is not None, "host was not started by a Testbed"
    h.testbed.rotate_host_key(h)
