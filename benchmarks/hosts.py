"""Benchmark hosts: real sshd instances on loopback (via tests/testbed.py), a latency
proxy process in front of them, and the small app service each one runs.

A *host* is one sshd on its own 127.0.0.1 port logging in as ``cvdeploy`` (the testbed's
user, which has a real ``systemd --user`` manager), with ``LogLevel VERBOSE`` so its log
names every connection and every session (``sessions_since``). The first host has one
deploy path per scenario and tool (``SITES``); ``cap``, ``sh`` and ``pvs`` have their own
``systemd --user`` unit (``cvbench-<host>-<side>.service``) serving ``current/`` over HTTP
on its own port, whose ``ExecStartPost`` waits until the port answers, so
``systemctl --user start`` returns once the app is healthy ("app already healthy after
start" in issue 7). ``hl``'s unit runs an app that starts answering 0.2 s after its
process started and has no such wait: the health check has to find out (issue 21).

Needs root and ``bash scripts/testbed.sh up`` (the harness runs it once).
"""

from __future__ import annotations

import os
import pwd
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "tests") not in sys.path:
    sys.path.insert(0, str(REPO / "tests"))

import testbed as _tb  # noqa: E402  (tests/testbed.py)

UNIT_PREFIX = "cvbench-"
SLOW_APP_START = 0.2  # seconds from exec to the first answer of the ``hl`` site's app

# deploy paths of the first host: side -> unit kind (None: no service)
SITES: dict[str, str | None] = {
    "cap": "ready", "sh": "ready",  # capview / shell baseline, issue-7 scenarios
    "fan": None, "big": None,  # fan-out (every host), 500 MB RSS
    "pv": None, "cp": None, "pvs": "ready",  # peers: capview like-for-like, Capistrano, capview full
    "hl": "slow",  # health phase with an app that starts in 0.2 s
    "many": None, "tenk": None,  # 200,000-file releases; 10,000 retained releases
}

# The ``hl`` app: answers HTTP on argv[1] once argv[2] seconds have passed since its
# process started (counted from /proc, so the interpreter's own start is included).
SLOW_APP = """\
import functools, http.server, os, sys, time
port, delay = int(sys.argv[1]), float(sys.argv[2])
with open("/proc/self/stat") as f:
    started = int(f.read().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
with open("/proc/uptime") as f:
    time.sleep(max(0.0, delay - (float(f.read().split()[0]) - started)))
class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), functools.partial(Quiet, directory=".")).serve_forever()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BenchTestbed(_tb.Testbed):
    """tests/testbed.py's Testbed, minus its constructor's reset of *all* the user's units
    (that would stop units of test runs going on at the same time): the benchmarks only
    ever remove their own ``cvbench-*`` units."""

    def __init__(self, run_up: bool = True) -> None:  # noqa: D107 - see class doc
        reason = _tb.testbed_unavailable_reason()
        if reason:
            raise RuntimeError(f"testbed unavailable: {reason}")
        self.state_dir = _tb.STATE_DIR
        if run_up:
            env = dict(os.environ, CAPVIEW_TESTBED_STATE=str(self.state_dir))
            _tb._run(["bash", str(_tb.TESTBED_SH), "up"], timeout=180, env=env)
        self.client_key = self.state_dir / "client_ed25519"
        if not self.client_key.exists():
            raise RuntimeError(f"{self.client_key} missing: run `bash scripts/testbed.sh up` first")
        self.hosts = []
        self._seq = 0

    def close(self) -> None:
        for h in list(self.hosts):
            self.stop_host(h)
        remove_bench_units()


def unit_dir(user: str = _tb.DEPLOY_USER) -> Path:
    """Where the benchmark units live: ``~/.local/share/systemd/user`` (on the user
    manager's search path), NOT ``~/.config/systemd/user``, which tests/testbed.py empties
    whenever a test session starts -- the benchmarks may run while tests do."""
    return Path(pwd.getpwnam(user).pw_dir) / ".local" / "share" / "systemd" / "user"


def install_unit(th: "_tb.TestHost", name: str, text: str) -> None:
    d = unit_dir(th.user)
    _tb._makedirs_owned(d, th.home, th.uid, th.pw.pw_gid)
    p = d / name
    p.write_text(text)
    os.chown(p, th.uid, th.pw.pw_gid)
    p.chmod(0o644)
    th.systemctl("daemon-reload", check=True)


def remove_bench_units(user: str = _tb.DEPLOY_USER) -> None:
    pw = pwd.getpwnam(user)
    d = unit_dir(user)
    if not d.is_dir():
        return
    units = [p.name for p in d.glob(UNIT_PREFIX + "*.service")]
    if not units:
        return
    _tb._run(_tb._as_user_argv(pw, ["systemctl", "--user", "stop", *units]), check=False)
    for u in units:
        (d / u).unlink(missing_ok=True)
    _tb._run(_tb._as_user_argv(pw, ["systemctl", "--user", "daemon-reload"]), check=False)
    _tb._run(_tb._as_user_argv(pw, ["systemctl", "--user", "reset-failed"]), check=False)


@dataclass
class Site:
    """One deploy path on a host, with its own unit and HTTP port."""

    host: "BenchHost"
    side: str  # a key of SITES
    path: str  # absolute deploy path
    unit: str | None  # None: no service on this site
    http_port: int
    kind: str | None = None  # SITES value: "ready" | "slow" | None

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/"

    def unit_text(self) -> str:
        if self.kind == "slow":
            return (
                "[Unit]\n"
                f"Description=capview benchmark app {self.host.name}/{self.side} (starts in {SLOW_APP_START} s)\n"
                "[Service]\n"
                "Type=exec\n"
                f"WorkingDirectory={self.path}/current\n"
                f"ExecStart=/usr/bin/python3 {self.host.th.base}/slow-app.py {self.http_port} {SLOW_APP_START}\n"
                "TimeoutStopSec=5\n"
            )
        wait = (
            f"for i in $$(seq 300); do curl -fs -o /dev/null {self.health_url} && exit 0; "
            "sleep 0.02; done; exit 1"
        )
        return (
            "[Unit]\n"
            f"Description=capview benchmark app {self.host.name}/{self.side}\n"
            "[Service]\n"
            "Type=exec\n"
            f"WorkingDirectory={self.path}/current\n"
            f"ExecStart=/usr/bin/python3 -m http.server {self.http_port} --bind 127.0.0.1\n"
            f"ExecStartPost=/bin/sh -c '{wait}'\n"
            "TimeoutStopSec=5\n"
        )

    def reset(self) -> None:
        """Empty deploy path with shared/data and shared/.env (0600); unit stopped.

        The old tree is renamed aside, not deleted: on an ext4 without a journal (this
        machine's disk) every inode freed in the last ~30 s is skipped, one inode-table
        lookup each, by the next allocations, and the 2,000 files a first deploy then
        creates took 0.9-1.5 s of kernel time instead of 0.1-0.2 s -- in both tools, as
        no real first deploy is preceded by deleting a release. The host's directory,
        and so this graveyard, is removed when the run ends."""
        th = self.host.th
        if self.unit:
            th.systemctl("stop", self.unit)
        if os.path.lexists(self.path):
            grave = th.base / ".graveyard"
            grave.mkdir(exist_ok=True)
            os.rename(self.path, grave / f"{self.side}-{time.time_ns()}")
        th.run_as_user(
            f"mkdir -p {shlex.quote(self.path)}/shared/data {shlex.quote(self.path)}/releases && "
            f"umask 077 && printf 'SECRET=bench\\n' > {shlex.quote(self.path)}/shared/.env"
        )

    def release_growth(self, previous: str, new: str) -> int:
        """Bytes the release ``new`` added on disk next to ``previous``: one ``du -sb``
        of both (a hard-linked file is counted once, under the first argument), so the
        second total is what ``new`` holds that ``previous`` does not. Unaffected by
        pruning of older releases during the deploy."""
        rel = f"{self.path}/releases"
        out = subprocess.run(["du", "-sb", f"{rel}/{previous}", f"{rel}/{new}"],
                             capture_output=True, text=True)
        lines = out.stdout.split("\n")
        if out.returncode != 0 or len(lines) < 2:
            raise RuntimeError(f"du failed: {out.stderr.strip()}")
        return int(lines[1].split()[0])

    def disk_bytes(self) -> int:
        """Apparent bytes under releases/ (hard-linked files counted once)."""
        out = subprocess.run(["du", "-sb", f"{self.path}/releases"], capture_output=True, text=True)
        return int(out.stdout.split()[0]) if out.returncode == 0 else 0


@dataclass
class BenchHost:
    name: str
    th: "_tb.TestHost"
    sites: dict[str, Site] = field(default_factory=dict)
    proxy_port: int | None = None  # set while a proxy is in front

    def log_mark(self) -> int:
        """The sshd log's current size: pass it to ``sessions_since``."""
        return len(self.th.sshd_log().encode(errors="replace"))

    def sessions_since(self, mark: int, settle: float = 0.3) -> tuple[int, int]:
        """(connections, sessions) sshd logged after ``mark``. With LogLevel VERBOSE,
        OpenSSH logs one "Accepted publickey for" per authenticated connection and one
        "Starting session:" per session channel (exec, shell or subsystem) -- what an SSH
        client pays a channel open + request for. ``settle``: let the per-connection
        sshd children write their lines."""
        time.sleep(settle)
        text = self.th.sshd_log().encode(errors="replace")[mark:].decode(errors="replace")
        lines = text.splitlines()
        return (sum(1 for ln in lines if ln.startswith("Accepted publickey for ")),
                sum(1 for ln in lines if ln.startswith("Starting session: ")))

    @property
    def sshd_port(self) -> int:
        return self.th.port

    @property
    def port(self) -> int:
        """Where clients connect: the proxy if one is up, else sshd."""
        return self.proxy_port or self.th.port

    @property
    def user(self) -> str:
        return self.th.user

    @property
    def key(self) -> str:
        return str(self.th.identity_file)

    @property
    def known_hosts(self) -> str:
        return str(self.th.known_hosts)

    def ssh_base(self) -> list[str]:
        """ssh argv up to (and including) the destination, through the proxy if any."""
        opts = self.th.ssh_options()
        opts[opts.index("-p") + 1] = str(self.port)
        return ["ssh", *opts, self.th.target]

    def rsync_rsh(self) -> str:
        """The ``-e`` value for rsync (same options as ssh_base, without the target)."""
        opts = self.th.ssh_options()
        opts[opts.index("-p") + 1] = str(self.port)
        return " ".join(shlex.quote(o) for o in ["ssh", *opts])

    def trust_port(self, port: int) -> None:
        """Add ``[127.0.0.1]:port`` (a proxy listener) to this host's known_hosts."""
        pub = (self.th.dir / "host_ed25519.pub").read_text().split()
        line = f"[127.0.0.1]:{port} {pub[0]} {pub[1]}\n"
        kh = Path(self.known_hosts)
        if line not in kh.read_text():
            with open(kh, "a") as f:
                f.write(line)


class Hosts:
    """Starts ``n`` sshd hosts with their sites and units; stops and cleans up everything."""

    def __init__(self, n: int, run_up: bool = True) -> None:
        self.tb = BenchTestbed(run_up=run_up)
        self.hosts: list[BenchHost] = []
        try:
            remove_bench_units()
            for i in range(1, n + 1):
                self.add()
        except BaseException:
            self.close()
            raise

    def add(self) -> BenchHost:
        """Start one more host. The first host gets every site of SITES; the others only
        ``fan`` (the fan-out scenarios)."""
        i = len(self.hosts) + 1
        name = f"h{i:02d}"
        th = self.tb.start_host(f"bench-{name}", extra_sshd_config="LogLevel VERBOSE")
        bh = BenchHost(name=name, th=th)
        sides = SITES if i == 1 else {"fan": None}
        if i == 1:
            slow = th.base / "slow-app.py"
            slow.write_text(SLOW_APP)
            os.chown(slow, th.uid, th.pw.pw_gid)
        for side, kind in sides.items():
            site = Site(bh, side, str(th.base / side),
                        f"{UNIT_PREFIX}{name}-{side}.service" if kind else None,
                        free_port() if kind else 0, kind)
            if site.unit:
                install_unit(th, site.unit, site.unit_text())
            site.reset()
            bh.sites[side] = site
        self.hosts.append(bh)
        return bh

    def close(self) -> None:
        try:
            remove_bench_units()
        finally:
            self.tb.close()

    def __enter__(self) -> "Hosts":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ProxyProcess:
    """``python -m benchmarks.latency_proxy`` in its own process (so the proxy never
    competes with the client under test for one event loop), one listener per host and
    one per ``extra`` port (e.g. the git daemon Capistrano's host pulls from; its
    listener is ``extra_ports[i]``). ``rate_mbit`` caps each listener's link. Nests: on
    exit the hosts get back the proxy they had before."""

    def __init__(self, hosts: list[BenchHost], one_way: float, *, rate_mbit: float = 0.0,
                 extra: tuple[int, ...] = ()) -> None:
        self.hosts = hosts
        self.one_way = one_way
        self.rate_mbit = rate_mbit
        self.extra = tuple(extra)
        self.extra_ports: list[int] = []
        self.saved: list[int | None] = []
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "ProxyProcess":
        argv = [sys.executable, "-m", "benchmarks.latency_proxy", "--delay-ms", str(self.one_way * 1000)]
        if self.rate_mbit:
            argv += ["--rate-mbit", str(self.rate_mbit)]
        targets = [h.sshd_port for h in self.hosts] + list(self.extra)
        for port in targets:
            argv += ["--target", f"127.0.0.1:{port}"]
        self.proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        ports = []
        for _ in targets:
            line = self.proc.stdout.readline()
            if not line.startswith("LISTEN "):
                self.__exit__()
                raise RuntimeError(f"latency proxy did not start: {line!r}")
            ports.append(int(line.split()[1]))
        if self.proc.stdout.readline().strip() != "READY":
            self.__exit__()
            raise RuntimeError("latency proxy did not report READY")
        self.saved = [h.proxy_port for h in self.hosts]
        for h, p in zip(self.hosts, ports):
            h.trust_port(p)
            h.proxy_port = p
        self.extra_ports = ports[len(self.hosts):]
        return self

    def __exit__(self, *exc: object) -> None:
        for h, prev in zip(self.hosts, self.saved):
            h.proxy_port = prev
        self.saved = []
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class NoProxy:
    """RTT 0: straight to sshd; ``extra_ports`` are the extra targets themselves."""

    def __init__(self, extra: tuple[int, ...] = ()) -> None:
        self.extra_ports = list(extra)

    def __enter__(self) -> "NoProxy":
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def latency(hosts: list[BenchHost], rtt_ms: float, *, rate_mbit: float = 0.0,
            extra: tuple[int, ...] = ()) -> ProxyProcess | NoProxy:
    """Context manager: hosts (and the ``extra`` ports, at ``.extra_ports``) reachable at
    ``rtt_ms``, each link capped at ``rate_mbit`` if given (0 ms and no cap = straight
    to the servers, no proxy)."""
    if rtt_ms > 0 or rate_mbit:
        return ProxyProcess(hosts, rtt_ms / 2000.0, rate_mbit=rate_mbit, extra=extra)
    return NoProxy(extra)


def timed(argv: list[str], *, check: bool = True, timeout: float = 600,
          capture: bool = True) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    cp = subprocess.run(argv, capture_output=capture, text=True, timeout=timeout,
                        stdin=subprocess.DEVNULL)
    dt = time.perf_counter() - t0
    if check and cp.returncode != 0:
        raise _tb.TestbedError(cp.returncode, argv, cp.stdout, cp.stderr)
    return dt, cp
