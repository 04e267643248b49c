"""The demo sandbox on disk: hosts, app sources, keys and a real deploy.yaml.

::

    <demo_dir>/
      sandbox.json          ports and format version (marks the dir as a demo sandbox)
      seeded                written once the seeded history is complete
      demo.pid              pid of the `capview demo` using it (removed on exit)
      deploy.yaml           the real config capview uses for the sandbox
      known_hosts           the embedded SSH host's key, pinned (written by server.py)
      ssh_config            empty: the demo never reads ~/.ssh/config
      keys/                 host and client keys (server.py)
      bin/appctl.sh         the sample app's start/stop/status commands
      src/v1.0.0 v1.1.0 v1.2.0-broken next    the app trees the demo deploys
      hosts/prod-1 prod-2   deploy_paths of environment "prod"
      hosts/legacy-1        environment "legacy", seeded in the OLD overwrite-in-place layout

``prepare()`` lays this out (or reuses / repairs an existing one) and claims it
by writing ``demo.pid``; ``Sandbox.close()`` releases it. Every bad state is a
one-line ``DemoError``: a live sandbox in use, an unwritable directory, a port
that is taken, a directory that is not a sandbox.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import sqlite3
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from capview.demo.config_text import HEALTH_INTERVAL, HEALTH_TIMEOUT, KEEP_RELEASES, render_config  # noqa: F401 (re-exported)
from capview.demo.errors import DemoError
from capview.demo.trees import LEGACY_VERSION, _tree_files, _write_tree

FORMAT = 1
HOST = "127.0.0.1"
# (release name, source tree under src/): the seeded history, oldest first.
SEED: tuple[tuple[str, str], ...] = (
    ("v1.0.0", "v1.0.0"),
    ("v1.1.0", "v1.1.0"),
    ("v1.2.0", "v1.2.0-broken"),
)
PROD_HOSTS = ("prod-1", "prod-2")
LEGACY_HOSTS = ("legacy-1",)


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class DemoHost:
    name: str
    env: str
    deploy_path: Path
    app_port: int

    @property
    def health_url(self) -> str:
        return f"http://{HOST}:{self.app_port}/health"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.app_port}/"

    @property
    def pid_file(self) -> Path:
        return self.deploy_path / "shared" / "run" / "app.pid"

    @property
    def log_file(self) -> Path:
        return self.deploy_path / "shared" / "log" / "app.log"


@dataclass
class Sandbox:
    dir: Path
    ssh_port: int
    hosts: tuple[DemoHost, ...]
    notes: list[str] = field(default_factory=list)  # what prepare() repaired, for the user
    reused: bool = False  # an existing sandbox was picked up (--dir, second run)
    _claimed: bool = False

    # paths -----------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.dir / "deploy.yaml"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "known_hosts"

    @property
    def client_key(self) -> Path:
        return self.dir / "keys" / "client_ed25519"

    @property
    def ssh_config(self) -> Path:
        return self.dir / "ssh_config"

    @property
    def appctl(self) -> Path:
        return self.dir / "bin" / "appctl.sh"

    @property
    def pid_path(self) -> Path:
        return self.dir / "demo.pid"

    def source(self, tree: str) -> Path:
        return self.dir / "src" / tree

    def host(self, name: str) -> DemoHost:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)

    def env_hosts(self, env: str) -> tuple[DemoHost, ...]:
        return tuple(h for h in self.hosts if h.env == env)

    # state -----------------------------------------------------------------
    def seeded(self) -> bool:
        """The seed history was completed once (a reused sandbox then keeps whatever state
        the user left it in: more deploys, rollbacks, prunes, a migrated legacy host)."""
        return (self.dir / "seeded").is_file() and all(
            (h.deploy_path / "releases").is_dir() for h in self.env_hosts("prod")
        )

    def mark_seeded(self) -> None:
        (self.dir / "seeded").write_text(f"{time.time():.0f}\n")

    def partly_seeded(self) -> bool:
        return not self.seeded() and any((h.deploy_path / "releases").exists() for h in self.env_hosts("prod"))

    def reset_prod_hosts(self) -> None:
        """Wipe and re-create the prod hosts (a half-seeded sandbox from a killed run)."""
        for h in self.env_hosts("prod"):
            _stop_app(self.appctl, h.deploy_path)
            shutil.rmtree(h.deploy_path, ignore_errors=True)
            _init_host(h)

    def stop_apps(self) -> list[str]:
        """Stop every sample-app process this sandbox's pid files name. Returns what was stopped."""
        return [msg for h in self.hosts if (msg := _stop_app(self.appctl, h.deploy_path))]

    def close(self) -> None:
        """Release the sandbox (remove demo.pid if it is ours)."""
        if not self._claimed:
            return
        self._claimed = False
        try:
            if _read_pid(self.pid_path) == os.getpid():
                self.pid_path.unlink()
        except OSError:
            pass


# --------------------------------------------------------------------------- helpers


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip().split()[0]
        return int(text)
    except (OSError, ValueError, IndexError):
        return None


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        out = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True, timeout=5)
        if out.stdout.strip().startswith("Z"):
            return False
    except (OSError, subprocess.TimeoutExpired):
        pass
    return True


def _pid_is_demo(pid: int) -> bool:
    """Is ``pid`` (alive) plausibly a capview demo, not an unrelated process that reused the pid?"""
    try:
        out = subprocess.run(["ps", "-ww", "-o", "args=", "-p", str(pid)], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return True  # cannot tell: assume it is, and refuse rather than trample
    args = out.stdout.strip()
    if not args:
        return True
    return "capview" in args or "python" in args or "pytest" in args


def _stop_app(appctl: Path, deploy_path: Path) -> str | None:
    pid_file = deploy_path / "shared" / "run" / "app.pid"
    if not pid_file.exists():
        return None
    ctl = appctl if appctl.is_file() else _package_appctl()
    try:
        out = subprocess.run(
            ["sh", str(ctl), "stop", str(deploy_path)], capture_output=True, text=True, timeout=15
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{deploy_path.name}: could not stop the app: {e}"
    msg = (out.stdout or out.stderr).strip()
    return None if "not running" in msg else f"{deploy_path.name}: {msg}"


def _package_appctl() -> Path:
    return Path(__file__).resolve().parent / "appctl.sh"


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


def _env_file(host: str) -> str:
    return (
        "# demo secrets: shared/.env is linked into every release, mode 0600, never printed by capview\n"
        f"APP_TITLE=capview demo app on {host}\n"
        f"SECRET_KEY={secrets.token_hex(16)}\n"
    )


def _init_host(h: DemoHost) -> None:
    """What `capview init` does for a release-layout host: shared/ with its dirs and files."""
    (h.deploy_path / "shared" / "data").mkdir(parents=True, exist_ok=True)
    env = h.deploy_path / "shared" / ".env"
    if not env.exists():
        _write_private(env, _env_file(h.name))


def _seed_legacy(h: DemoHost) -> None:
    """The old way: app files copied over the live tree, the DB next to them, a stray .bak."""
    root = h.deploy_path
    root.mkdir(parents=True, exist_ok=True)
    files = _tree_files("legacy")
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.chmod(path, 0o755 if rel.endswith("app.py") else 0o644)
    (root / "app.py.bak").write_bytes(files["app.py"])
    _write_private(root / ".env", _env_file(h.name))
    (root / "data").mkdir(exist_ok=True)
    conn = sqlite3.connect(str(root / "data" / "app.db"))
    try:
        with conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS hits ("
                "id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, version TEXT NOT NULL, path TEXT NOT NULL)"
            )
            start = time.time() - 30 * 86400
            conn.executemany(
                "INSERT INTO hits (at, version, path) VALUES (?, ?, ?)",
                [(start + i * 3600 * 7, "v0.8.0" if i < 20 else LEGACY_VERSION, "/") for i in range(57)],
            )
    finally:
        conn.close()


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def _free_port(taken: set[int]) -> int:
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        if port not in taken:
            return port
    raise DemoError("could not find a free TCP port on 127.0.0.1")


def _check_writable(demo_dir: Path) -> None:
    """Create demo_dir (and parents) and prove we can write in it; one-line error otherwise."""
    probe_dir = demo_dir
    try:
        demo_dir.mkdir(parents=True, exist_ok=True)
    except PermissionError:
        parent = demo_dir
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        raise DemoError(f"cannot create the demo directory {demo_dir}: no write permission on {parent}") from None
    except FileExistsError:
        raise DemoError(f"{demo_dir} exists and is not a directory") from None
    except OSError as e:
        raise DemoError(f"cannot create the demo directory {demo_dir}: {e.strerror or e}") from None
    if not demo_dir.is_dir():
        raise DemoError(f"{demo_dir} exists and is not a directory")
    probe = probe_dir / f".capview-write-test.{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except PermissionError:
        raise DemoError(f"cannot write to the demo directory {demo_dir}: permission denied") from None
    except OSError as e:
        raise DemoError(f"cannot write to the demo directory {demo_dir}: {e.strerror or e}") from None


def _claim(sb: Sandbox) -> None:
    """Write demo.pid atomically (O_EXCL): two demos never share a sandbox."""
    try:
        fd = os.open(sb.pid_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        pid = _read_pid(sb.pid_path)
        raise DemoError(
            f"a capview demo is already running in {sb.dir} (pid {pid}); stop it or use another --dir"
        ) from None
    with os.fdopen(fd, "w") as f:
        f.write(f"{os.getpid()}\n")
    sb._claimed = True


def _clear_stale_locks(sb: Sandbox, stale_pid: int) -> list[str]:
    """Remove host deploy locks left by the killed demo (its pid, this machine)."""
    notes = []
    me = socket.gethostname()
    for lock in sorted((sb.dir / "hosts").glob("*/.capview/lock")):
        try:
            owner = json.loads((lock / "owner.json").read_text())
            pid, machine = int(owner.get("pid", 0)), str(owner.get("machine", ""))
        except (OSError, ValueError, TypeError, AttributeError):
            pid, machine = stale_pid, me  # unreadable: it was being written when the demo died
        if machine == me and (pid == stale_pid or not _pid_alive(pid)):
            shutil.rmtree(lock, ignore_errors=True)
            notes.append(f"removed the deploy lock the killed run left on {lock.parent.parent.name}")
    return notes


def _write_config(sb: Sandbox) -> None:
    tmp = sb.config_path.with_suffix(".yaml.tmp")
    tmp.write_text(render_config(sb))
    os.replace(tmp, sb.config_path)


def _write_state(sb: Sandbox) -> None:
    state = {
        "format": FORMAT,
        "ssh_port": sb.ssh_port,
        "ports": {h.name: h.app_port for h in sb.hosts},
    }
    path = sb.dir / "sandbox.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(tmp, path)


def _read_state(demo_dir: Path) -> dict | None:
    try:
        state = json.loads((demo_dir / "sandbox.json").read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def _pick_ports(state: dict | None, ssh_port: int | None) -> tuple[int, dict[str, int]]:
    """Reuse the previous run's ports when they are free (stable URLs), else pick free ones."""
    old_ports = dict((state or {}).get("ports") or {})
    taken: set[int] = set()
    if ssh_port is not None:
        if not (0 < ssh_port < 65536):
            raise DemoError(f"invalid SSH port {ssh_port}: use 1-65535, or omit it for a free one")
        if not _port_free(ssh_port):
            raise DemoError(f"port {ssh_port} on {HOST} is already in use (pick another, or omit --port)")
        port = ssh_port
    else:
        old = (state or {}).get("ssh_port")
        port = old if isinstance(old, int) and 0 < old < 65536 and _port_free(old) else _free_port(taken)
    taken.add(port)
    ports: dict[str, int] = {}
    for name in PROD_HOSTS + LEGACY_HOSTS:
        old = old_ports.get(name)
        if isinstance(old, int) and 0 < old < 65536 and old not in taken and _port_free(old):
            ports[name] = old
        else:
            ports[name] = _free_port(taken)
        taken.add(ports[name])
    return port, ports


# --------------------------------------------------------------------------- prepare


def prepare(demo_dir: Path, *, fresh: bool, ssh_port: int | None = None) -> Sandbox:
    """Lay out (or reuse) the sandbox in ``demo_dir`` and claim it for this process.

    ``fresh``: wipe an existing sandbox first (temp-dir runs); otherwise reuse it,
    repairing what is missing. ``ssh_port``: a fixed port for the SSH host (error if
    taken); by default the previous run's port if free, else any free port.
    Raises DemoError (one line) for every state the sandbox cannot be used in.
    """
    demo_dir = Path(demo_dir).expanduser().absolute()
    _check_writable(demo_dir)
    notes: list[str] = []

    state = _read_state(demo_dir)
    is_sandbox = state is not None and state.get("format") == FORMAT
    if not is_sandbox:
        leftovers = [p.name for p in demo_dir.iterdir() if not p.name.startswith(".capview-write-test")]
        if leftovers:
            raise DemoError(
                f"{demo_dir} is not empty and is not a capview demo sandbox (no sandbox.json); "
                "use an empty or new directory"
            )

    pid_path = demo_dir / "demo.pid"
    stale_pid: int | None = None
    if pid_path.exists():
        pid = _read_pid(pid_path)
        if pid is not None and pid != os.getpid() and _pid_alive(pid) and _pid_is_demo(pid):
            raise DemoError(
                f"a capview demo is already running in {demo_dir} (pid {pid}); stop it or use another --dir"
            )
        stale_pid = pid if pid is not None else -1
        try:
            pid_path.unlink()
        except FileNotFoundError:
            pass

    ssh, ports = _pick_ports(state if is_sandbox else None, ssh_port)
    hosts = tuple(
        DemoHost(name, "prod" if name in PROD_HOSTS else "legacy", demo_dir / "hosts" / name, ports[name])
        for name in PROD_HOSTS + LEGACY_HOSTS
    )
    sb = Sandbox(dir=demo_dir, ssh_port=ssh, hosts=hosts, notes=notes, reused=is_sandbox and not fresh)

    try:
        _claim(sb)
        (demo_dir / "bin").mkdir(exist_ok=True)
        shutil.copyfile(_package_appctl(), sb.appctl)
        os.chmod(sb.appctl, 0o755)

        if is_sandbox:
            stopped = sb.stop_apps()
            if stale_pid is not None:
                notes.append(
                    "cleaned up a sandbox left by a killed run"
                    + (f" (pid {stale_pid})" if stale_pid > 0 else "")
                    + (f": stopped {len(stopped)} app process(es)" if stopped else "")
                )
                notes.extend(_clear_stale_locks(sb, stale_pid))
            elif stopped:
                notes.append(f"stopped {len(stopped)} app process(es) left running")
            if fresh:
                for child in demo_dir.iterdir():
                    if child.name in ("demo.pid",):
                        continue
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child)
                    else:
                        child.unlink()
                (demo_dir / "bin").mkdir(exist_ok=True)
                shutil.copyfile(_package_appctl(), sb.appctl)
                os.chmod(sb.appctl, 0o755)

        if not sb.ssh_config.exists():
            sb.ssh_config.write_text("# capview demo: an empty ssh_config, so ~/.ssh/config is never read\n")
        for _, tree in SEED:
            _write_tree(sb.source(tree), _tree_files(tree))
        _write_tree(sb.source("next"), _tree_files("next"))
        for h in sb.hosts:
            if h.env == "prod":
                _init_host(h)
            elif not h.deploy_path.exists():
                _seed_legacy(h)
        _write_state(sb)
        _write_config(sb)
    except DemoError:
        sb.close()
        raise
    except PermissionError as e:
        sb.close()
        raise DemoError(f"cannot write to {e.filename or demo_dir}: permission denied") from None
    except OSError as e:
        sb.close()
        raise DemoError(f"cannot lay out the demo sandbox in {demo_dir}: {e.strerror or e}"
                        + (f" ({e.filename})" if getattr(e, "filename", None) else "")) from None
    return sb


__all__ = [
    "DemoError",
    "DemoHost",
    "Sandbox",
    "SEED",
    "prepare",
    "render_config",
]
