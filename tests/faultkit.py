"""Helpers for the safety suites (faults, atomicity, hostile input, security, endurance).

Everything here looks at the host *independently* of capview's own code: manifests are
parsed and files hashed here, the source trees are walked here, the SQLite database is
checked with the ``sqlite3`` module as the deploy user. The testbed hosts live on this
machine, so (as root) the tests read the deploy_path directly.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from capview.config import Environment, HostConfig, SshOptions

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

EXCLUDE = (".git", "*.pyc")
SHARED_LINKS = {"data": "../../shared/data", ".env": "../../shared/.env"}
IN_PROGRESS = ("uploading", "building", "ready")


# --------------------------------------------------------------------------- manifests

def _unescape(text: str) -> str:
    return re.sub(r"%([0-9A-F]{2})", lambda m: chr(int(m.group(1), 16)), text)


def read_manifest(rel: Path) -> dict[str, tuple[str, int, int, str]]:
    """path -> (type, mode, size, digest) from releases/<v>/.capview/manifest.tsv."""
    out = {}
    for line in (rel / ".capview" / "manifest.tsv").read_text("utf-8", "surrogateescape").splitlines():
        t, mode, size, digest, path = line.split("\t")
        out[_unescape(path)] = (t, int(mode, 8), int(size), _unescape(digest))
    return out


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def source_entries(src: Path) -> dict[str, tuple[str, str]]:
    """path -> (type, digest) of a local source tree, as the test expects it on the host."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(src):
        rel_dir = os.path.relpath(dirpath, src)
        for name in sorted(dirnames + filenames):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if rel in ("data", ".env", ".capview") or name == ".git" or name.endswith(".pyc"):
                if name in dirnames:
                    dirnames.remove(name)
                continue
            p = src / rel
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("l", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("d", "-")
            else:
                out[rel] = ("f", sha256(p))
    return out


def verify_release(rel: Path, source: Path | None = None) -> None:
    """Every manifest line matches the file on disk (sha256, size, mode, link target),
    nothing is there that the manifest does not list (besides the shared links and
    .capview/), and -- when ``source`` is given -- the manifest is that source tree."""
    assert rel.is_dir() and not rel.is_symlink(), f"{rel} is not a release directory"
    man = read_manifest(rel)
    assert man, f"{rel}: empty manifest"
    for path, (t, mode, size, digest) in man.items():
        p = rel / path
        st = p.lstat()
        if t == "f":
            assert stat.S_ISREG(st.st_mode), f"{p}: not a regular file"
            assert st.st_size == size, f"{p}: size {st.st_size} != manifest {size}"
            assert stat.S_IMODE(st.st_mode) == mode, f"{p}: mode {stat.S_IMODE(st.st_mode):o} != {mode:o}"
            assert sha256(p) == digest, f"{p}: sha256 differs from the manifest"
        elif t == "d":
            assert stat.S_ISDIR(st.st_mode), f"{p}: not a directory"
        else:
            assert stat.S_ISLNK(st.st_mode) and os.readlink(p) == digest, f"{p}: link target differs"
    on_disk = set()
    for dirpath, dirnames, filenames in os.walk(rel):
        rd = os.path.relpath(dirpath, rel)
        if rd == ".":
            dirnames[:] = [d for d in dirnames if d != ".capview"]
        for name in dirnames + filenames:
            on_disk.add(name if rd == "." else f"{rd}/{name}")
    for name, target in SHARED_LINKS.items():
        assert os.readlink(rel / name) == target, f"{rel}/{name} is not the link to shared/"
        on_disk.discard(name)
    extra, missing = on_disk - set(man), set(man) - on_disk
    assert not extra and not missing, f"{rel}: not in manifest {sorted(extra)[:5]}, missing {sorted(missing)[:5]}"
    if source is not None:
        want = source_entries(source)
        got = {p: (t, d) for p, (t, _, _, d) in man.items()}
        assert got == want, f"{rel}: manifest is not the source tree {source}"


def current_version(dp: Path) -> str:
    target = os.readlink(dp / "current")
    assert target.startswith("releases/") and "/" not in target[len("releases/"):], target
    return target[len("releases/"):]


def verify_host(app, sources: dict[str, Path] | None = None, *, service: bool = True) -> str:
    """``current`` is a relative link to a complete release whose files match its manifest,
    and (``service``) the running service answers /health with that release's version."""
    dp = Path(app.deploy_path)
    assert (dp / "current").is_symlink()
    v = current_version(dp)
    verify_release(dp / "releases" / v, (sources or {}).get(v))
    if service:
        got = None
        for _ in range(50):  # the service may still be starting after a killed client
            got = http_get(app, "/health")
            if got == (200, v):
                break
            time.sleep(0.1)
        assert got == (200, v), f"service answers {got}, current is {v}"
    return v


def http_get(app, path: str) -> tuple[int, str] | str:
    """(status, body), or the connection error as a string (the service is down)."""
    try:
        return app.get(path)
    except OSError as exc:
        return f"unreachable: {exc}"


def leftovers(dp: str | Path) -> list[str]:
    """Junk a finished deploy must not leave: temp links, half-extracted or unfinished
    releases, trash, temp files, the lock."""
    dp = Path(dp)
    found = [p.name for p in dp.glob("current.tmp*")]
    rels = dp / "releases"
    if rels.is_dir():
        for r in rels.iterdir():
            if r.name.startswith(".trash-"):
                found.append(f"releases/{r.name}")
                continue
            if r.is_symlink() or not r.is_dir():
                continue
            meta = r / ".capview"
            if (meta / "incoming").exists():
                found.append(f"releases/{r.name}/.capview/incoming")
            for t in meta.glob("*.tmp*"):
                found.append(f"releases/{r.name}/.capview/{t.name}")
            try:
                state = json.loads((meta / "release.json").read_text()).get("state")
            except (OSError, ValueError):
                state = "incomplete"
            if state in IN_PROGRESS or state == "incomplete":
                found.append(f"releases/{r.name} ({state})")
    if (dp / ".capview" / "lock").exists():
        found.append(".capview/lock")
    return found


def remote_scripts(dp: str) -> list[int]:
    """pids of capview scripts (``sh -c '...'`` naming dp, or a detached switch transaction
    ``sh <dp>/.capview/ops/<token>/txn.sh``) still running on the host."""
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            argv = Path(f"/proc/{d}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if len(argv) >= 3 and argv[0].endswith(b"sh") and argv[1] == b"-c" and dp.encode() in argv[2] \
                and b"capview-pid" in argv[2]:
            pids.append(int(d))
        elif len(argv) >= 2 and argv[0].endswith(b"sh") and argv[1].startswith(dp.encode() + b"/") \
                and argv[1].endswith(b"/txn.sh"):
            pids.append(int(d))
        elif len(argv) >= 2 and argv[0].endswith(b"sh") and b"/capview-sh." in argv[1] and argv[1].endswith(b"/s") \
                and _cwd_in(d, dp):
            # a script of a long-lived session (ssh_session.py) working in dp, or a job it
            # left to finish on the host (a big prune's removal, the usage sums)
            pids.append(int(d))
    return pids


def _cwd_in(pid: str, dp: str) -> bool:
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return False
    return cwd == dp or cwd.startswith(dp.rstrip("/") + "/")


def settle(dp: str, timeout: float = 60) -> None:
    """Wait until no capview script runs on the host for ``dp`` (a killed client's
    script may still be finishing there)."""
    deadline = time.monotonic() + timeout
    while remote_scripts(dp):
        assert time.monotonic() < deadline, f"capview scripts still running for {dp}: {remote_scripts(dp)}"
        time.sleep(0.05)


# --------------------------------------------------------------------------- the data

class Hitter:
    """A background loop writing rows through the app (GET /hit) while a deploy runs."""

    def __init__(self, app, every: float = 0.02) -> None:
        self.app, self.every = app, every
        self.ok = self.attempts = 0
        self.served: list[tuple[float, float, str]] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.attempts += 1
            sent = time.time()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.app.port}/hit", timeout=2) as r:
                    if r.status == 200:
                        self.ok += 1
                        # (sent, answered, the body's first word: the version that wrote the row)
                        self.served.append((sent, time.time(), r.read(64).decode(errors="replace").split(" ")[0]))
            except (OSError, urllib.error.URLError):
                pass
            self._stop.wait(self.every)

    def __enter__(self) -> "Hitter":
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join(10)


DB_CHECK = (
    "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], timeout=30); "
    "print(c.execute('PRAGMA integrity_check').fetchone()[0]); "
    "print(c.execute('SELECT count(*) FROM hits').fetchone()[0] if "
    "c.execute(\"SELECT name FROM sqlite_master WHERE name='hits'\").fetchone() else 0)"
)


def db_state(app) -> tuple[str, int]:
    """(integrity_check, rows) of shared/data/app.db, read as the deploy user."""
    db = f"{app.deploy_path}/shared/data/app.db"
    out = app.host.run_as_user(f"python3 -c {shlex_quote(DB_CHECK)} {db}").stdout.split()
    return out[0], int(out[1])


def shlex_quote(s: str) -> str:
    import shlex

    return shlex.quote(s)


# --------------------------------------------------------------------------- config

def known_hosts_for(host, port: int, dest: Path) -> Path:
    """A known_hosts file pinning ``host``'s key for 127.0.0.1:``port`` (e.g. a proxy)."""
    line = host.known_hosts.read_text().split("\n")[0].split(" ", 1)[1]
    dest.write_text(f"[{host.host}]:{port} {line}\n")
    return dest


def env_via(env: Environment, port: int, known_hosts: Path) -> Environment:
    """The same environment reached through another port (a proxy in front of sshd)."""
    hosts = []
    for h in env.hosts:
        ssh = dataclasses.replace(h.settings.ssh, known_hosts=str(known_hosts))
        s = dataclasses.replace(h.settings, ssh=ssh)
        hosts.append(dataclasses.replace(h, port=port, settings=s))
    return dataclasses.replace(env, hosts=tuple(hosts), settings=hosts[0].settings)


def write_config(path: Path, app, source: Path, *, port: int | None = None, known_hosts: Path | None = None,
                 keep: int = 3, build: bool = True, health_timeout: str = "10s") -> Path:
    """A deploy.yaml for ``app`` (what a user would write) for the CLI in a subprocess."""
    h = app.host
    doc = {
        "app": app.name,
        "deploy_path": app.deploy_path,
        "keep_releases": keep,
        "source": str(source),
        "exclude": list(EXCLUDE),
        "shared": {"dirs": ["data"], "files": [".env"]},
        # a label per app keeps concurrent identical builds apart, as on real separate hosts
        "build": ({"command": f"podman build -q --layers=false --label capview.test.app={app.name} -t {{image}}:{{version}} .",
                   "image": app.image}
                  if build and app.image else None),
        "service": {"manager": "systemd-user", "unit": app.unit},
        "health": {"url": f"http://127.0.0.1:{app.port}/health", "timeout": health_timeout, "interval": "200ms"},
        "ssh": {"known_hosts": str(known_hosts or h.known_hosts), "identity_file": str(h.identity_file),
                "connect_timeout": "10s"},
        "environments": {"test": {"hosts": [
            {"name": h.name, "host": h.host, "user": h.user, "port": port or h.port}]}},
    }
    path.write_text(json.dumps(doc, indent=2))  # JSON is YAML
    return path


# --------------------------------------------------------------------------- the CLI

def cli_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "capview", *args]


def cli(*args: str, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cli_argv(*args), capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env=env, stdin=subprocess.DEVNULL)


class CliRun:
    """``capview ... --json`` in a subprocess; events parsed as they arrive."""

    def __init__(self, *args: str) -> None:
        self.args = args
        self.events: list[dict] = []
        self.stderr = ""
        self.proc: asyncio.subprocess.Process | None = None
        self.phases: dict[str, asyncio.Event] = {}

    def phase(self, name: str) -> asyncio.Event:
        return self.phases.setdefault(name, asyncio.Event())

    async def start(self) -> "CliRun":
        self.proc = await asyncio.create_subprocess_exec(
            *cli_argv(*self.args), cwd=REPO, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        self._reader = asyncio.ensure_future(self._read())
        return self

    async def _read(self) -> None:
        assert self.proc and self.proc.stdout and self.proc.stderr
        err = asyncio.ensure_future(self.proc.stderr.read())
        async for raw in self.proc.stdout:
            try:
                e = json.loads(raw)
            except ValueError:
                continue
            self.events.append(e)
            if e.get("event") == "PhaseStarted":
                self.phase(e["phase"]).set()
        self.stderr = (await err).decode(errors="replace")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(sig)

    async def wait(self, timeout: float = 120) -> int:
        assert self.proc is not None
        rc = await asyncio.wait_for(self.proc.wait(), timeout)
        await asyncio.wait_for(self._reader, timeout)
        return rc

    def finished(self) -> list[dict]:
        return [e for e in self.events if e.get("event") == "HostFinished"]


SIGNALS = {"kill": signal.SIGKILL, "int": signal.SIGINT}


# --------------------------------------------------------------------------- fs snapshots

def snapshot_tree(root: Path, skip: tuple[Path, ...] = ()) -> dict[str, tuple]:
    """path -> (type, mode, size, mtime_ns, link target) for everything under root."""
    out: dict[str, tuple] = {}
    skip_s = tuple(str(s) for s in skip)
    for dirpath, dirnames, filenames in os.walk(root):
        if any(dirpath == s or dirpath.startswith(s + "/") for s in skip_s):
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            if any(p == s or p.startswith(s + "/") for s in skip_s):
                continue
            try:
                st = os.lstat(p)
            except OSError:
                continue
            link = os.readlink(p) if stat.S_ISLNK(st.st_mode) else None
            size = st.st_size if stat.S_ISREG(st.st_mode) else 0
            out[p] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), size, st.st_mtime_ns, link)
    return out


def diff_snapshots(a: dict, b: dict) -> list[str]:
    changed = [f"+ {p}" for p in b.keys() - a.keys()] + [f"- {p}" for p in a.keys() - b.keys()]
    changed += [f"~ {p}" for p in a.keys() & b.keys() if a[p] != b[p]]
    return sorted(changed)
