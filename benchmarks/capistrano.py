"""Capistrano 3 as a real peer (issue 21): Debian's ``capistrano`` package, the git SCM,
and a bare repository that the host pulls from over the same delayed link.

* ``GitServer`` -- a bare repository (``app.git``, branch ``main``) in the bench workdir,
  served read-only by ``git daemon`` on a loopback port. The harness puts a latency-proxy
  listener in front of it (same one-way delay, same bandwidth cap as the host's own
  link), and the host's ``git`` (run by Capistrano over ssh) clones / fetches through it.
  ``commit(tree)`` commits a tree as the new head of ``main`` (not timed: the developer's
  push happens before a deploy).
* ``CapProject`` -- a generated Capistrano project (``Capfile``, ``config/deploy.rb``,
  ``config/deploy/bench.rb``) whose host, port, key, known_hosts, repo URL and deploy path
  come from the environment, so one project serves every RTT and every link. Stock
  settings otherwise: ``linked_files .env``, ``linked_dirs data``, ``keep_releases 5``,
  the default flow of ``cap bench deploy`` / ``cap bench deploy:rollback`` (rollback
  includes Capistrano's own ``cleanup_rollback``: tar -czf of the rolled-back release,
  then rm). No restart task, no health check -- like capview with ``service: none``.

Needs ``apt-get install capistrano`` (Debian 12 ships 3.17.2 with SSHKit/net-ssh).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

CAPFILE = """\
require "capistrano/setup"
require "capistrano/deploy"
require "capistrano/scm/git"
install_plugin Capistrano::SCM::Git
"""

DEPLOY_RB = """\
lock "~> 3.17"
set :application, "bench"
set :repo_url, ENV.fetch("CVB_REPO")
set :branch, "main"
set :deploy_to, ENV.fetch("CVB_DEPLOY_TO")
set :tmp_dir, ENV.fetch("CVB_TMP")
set :linked_files, %w[.env]
set :linked_dirs, %w[data]
set :keep_releases, 5
set :log_level, :info
set :format_options, log_file: ENV.fetch("CVB_LOG"), color: false, truncate: false
"""

STAGE_RB = """\
server "127.0.0.1", user: ENV.fetch("CVB_USER"), port: Integer(ENV.fetch("CVB_PORT")), roles: %w[app]
set :ssh_options, {
  keys: [ENV.fetch("CVB_KEY")], keys_only: true, auth_methods: %w[publickey],
  user_known_hosts_file: ENV.fetch("CVB_KNOWN_HOSTS"), global_known_hosts_file: "/dev/null",
  verify_host_key: :always, non_interactive: true, timeout: 30,
}
"""


def cap_missing() -> str | None:
    """None if ``cap`` (Capistrano 3) and ``git`` are installed, else what to do."""
    if not shutil.which("cap"):
        return "Capistrano not installed: run `apt-get install -y capistrano` (Debian's package)"
    if not shutil.which("git"):
        return "git not installed: run `apt-get install -y git`"
    return None


def cap_version() -> str:
    """e.g. ``Capistrano 3.17.2 (Rake 13.0.6; Debian package capistrano 3.17.2-1)``."""
    cp = subprocess.run(["cap", "--version"], capture_output=True, text=True, timeout=60)
    out = (cp.stdout or cp.stderr).strip()  # "Capistrano Version: 3.17.2 (Rake Version: 13.0.6)"
    text = out.replace("Capistrano Version:", "Capistrano").replace("Rake Version:", "Rake")
    deb = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "capistrano"],
                         capture_output=True, text=True)
    if deb.returncode == 0 and deb.stdout.strip():
        text = text.rstrip(")") + f"; Debian package capistrano {deb.stdout.strip()})"
    return text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _git(*args: str, cwd: Path | None = None, env: dict | None = None) -> str:
    cp = subprocess.run(["git", "-c", "user.name=bench", "-c", "user.email=bench@capview-bench",
                         "-c", "init.defaultBranch=main", *args], cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=300)
    if cp.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {cp.stderr.strip()[-500:]}")
    return cp.stdout


class GitServer:
    """A bare repo served by ``git daemon`` on 127.0.0.1 (read-only, this one repo)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bare = root / "app.git"
        self.index = root / "index"
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.commits = 0

    def start(self) -> "GitServer":
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True)
        _git("init", "-q", "--bare", "-b", "main", str(self.bare))
        for _ in range(5):
            self.port = _free_port()
            self.proc = subprocess.Popen(
                ["git", "daemon", "--reuseaddr", "--listen=127.0.0.1", f"--port={self.port}",
                 f"--base-path={self.root}", "--export-all", "--informative-errors",
                 f"--pid-file={self.root / 'daemon.pid'}", str(self.root)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(self.root / "daemon.log", "ab"),
                start_new_session=True)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    return self
                except OSError:
                    time.sleep(0.05)
            self.stop()
        raise RuntimeError(f"git daemon did not start: {(self.root / 'daemon.log').read_text()[-500:]}")

    def url(self, port: int | None = None) -> str:
        """The URL the host clones from: ``port`` = a proxy listener in front of the daemon."""
        return f"git://127.0.0.1:{port or self.port}/app.git"

    def commit(self, tree: Path, message: str) -> str:
        """Commit ``tree`` (all of it, as it is) as the new head of ``main``; returns the sha."""
        env = dict(os.environ, GIT_DIR=str(self.bare), GIT_WORK_TREE=str(tree),
                   GIT_INDEX_FILE=str(self.index))
        _git("add", "-A", ".", cwd=tree, env=env)
        _git("commit", "-q", "--allow-empty", "-m", message, cwd=tree, env=env)
        self.commits += 1
        if self.commits == 1:  # pack the first (big) commit once, as a hosting service would
            _git("repack", "-a", "-d", "-q", env=dict(os.environ, GIT_DIR=str(self.bare)))
        return _git("rev-parse", "HEAD", env=dict(os.environ, GIT_DIR=str(self.bare))).strip()

    def pack_bytes(self) -> int:
        """Bytes of the repository's packs and loose objects (what a clone transfers, roughly)."""
        objs = self.bare / "objects"
        return sum(p.stat().st_size for p in objs.rglob("*") if p.is_file())

    def stop(self) -> None:
        p, self.proc = self.proc, None
        if p is None:
            return
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)  # the daemon and its upload-pack children
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=10)


@dataclass
class CapRun:
    seconds: float
    output: str


class CapProject:
    """The generated Capistrano project; ``run(task, ...)`` times one ``cap bench TASK``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.last_start = 0.0

    def write(self) -> "CapProject":
        shutil.rmtree(self.root, ignore_errors=True)
        (self.root / "config" / "deploy").mkdir(parents=True)
        (self.root / "Capfile").write_text(CAPFILE)
        (self.root / "config" / "deploy.rb").write_text(DEPLOY_RB)
        (self.root / "config" / "deploy" / "bench.rb").write_text(STAGE_RB)
        return self

    def run(self, task: str, *, host: "object", port: int, repo_url: str, deploy_to: str,
            tmp_dir: str, timeout: float = 900) -> CapRun:
        """``cap bench TASK`` against ``host`` (a BenchHost) reached at ``port``.

        Capistrano names releases by UTC time to the second, so two deploys must start at
        least a second apart; the wait is not timed."""
        wait = self.last_start + 1.05 - time.time()
        if wait > 0:
            time.sleep(wait)
        env = dict(os.environ, CVB_REPO=repo_url, CVB_DEPLOY_TO=deploy_to, CVB_TMP=tmp_dir,
                   CVB_USER=host.user, CVB_PORT=str(port), CVB_KEY=host.key,  # type: ignore[attr-defined]
                   CVB_KNOWN_HOSTS=host.known_hosts, CVB_LOG=str(self.root / "capistrano.log"))  # type: ignore[attr-defined]
        self.last_start = time.time()
        t0 = time.perf_counter()
        cp = subprocess.run(["cap", "bench", task], cwd=self.root, env=env, capture_output=True,
                            text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        dt = time.perf_counter() - t0
        out = cp.stdout + cp.stderr
        if cp.returncode != 0:
            raise RuntimeError(f"cap bench {task} exited {cp.returncode}: {out.strip()[-1500:]}")
        return CapRun(dt, out)
