"""The dashboard's test world: real engine, real host trees, frozen clocks.

Snapshots, Pilot tests, ``scripts/screenshots.py`` and ``benchmarks/tui_bench.py`` all
look at the same world, and nothing in it is simulated above the transport:

* **Hosts** are directories driven by the real engine over ``LocalTransport`` (every
  script is the engine's own, run by this machine's ``sh``). ``prod-1`` and ``prod-2``
  are seeded by real ``deploy.release`` / ``rollback`` / ``ops.pin`` calls (one seeding
  per session, copied per test with ``cp -a`` so hard links stay hard links);
  ``legacy-1`` is an old in-place app (as the demo lays it out) with a stale lock taken
  by the engine's own lock script.
* **Clocks** are frozen: the engine's ``Context.clock`` and the App's clock are
  injected (``T0``); the host's clock is a ``date`` shim first on ``PATH`` that advances
  a fixed step per call (one counter per host, so the downtime the switch script
  measures is the same on every run); the engine's phase timer (``time.monotonic``
  inside ``capview.engine.*``) is a fixed sequence per task (:class:`EngineTimer`).
* **Operations held mid-run** use files the test controls: the release's build script
  waits while ``gates/build`` exists, the service's stop command while ``gates/stop``
  exists. Health is the service's ``status`` command: ``test -e current/HEALTHY``, so a
  release without that file fails its health check and the engine switches back.
* **A host that is down** is one the transport refuses (``WorldTransport.down``), the
  way a cut network refuses ``ssh``.
"""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import time as _time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from capview.config import load_config
from capview.engine.context import Context
from capview.errors import HostUnreachable
from capview.remote.local import LocalTransport

T0 = 1_767_268_800.0  # 2026-01-01 12:00:00 UTC: "now" in every snapshot
DAY = 86_400.0
HOSTILE = "[bold]mallory[/bold]\x1b[31m@evil\x1b]52;c;cHduZWQ=\x07"  # markup, CSI, OSC 52


# --------------------------------------------------------------------------- clocks


class EngineTimer:
    """``time.monotonic`` for the engine's phase timing: call n returns the sum of the first
    n steps of a fixed sequence (times ``scale``), so phases get plausible durations that
    are the same on every run. One sequence for the process: operations the tests run one
    host at a time (rolling) time the same way every run."""

    STEPS = (0.04, 0.06, 0.03, 1.42, 0.02, 0.09, 2.61, 0.31, 0.05, 0.83, 0.12, 0.07)

    def __init__(self) -> None:
        self.scale = 1.0
        self.calls = 0
        self.value = 1000.0

    def monotonic(self) -> float:
        self.value += self.scale * self.STEPS[self.calls % len(self.STEPS)]
        self.calls += 1
        return self.value


class _EngineTime:
    """Stands in for the ``time`` module inside engine modules: only monotonic differs."""

    def __init__(self, timer: EngineTimer) -> None:
        self._timer = timer

    def monotonic(self) -> float:
        return self._timer.monotonic()

    def __getattr__(self, name: str) -> Any:
        return getattr(_time, name)


def freeze_engine_timer(timer: EngineTimer) -> Callable[[], None]:
    """Patch ``time`` in every loaded ``capview.engine`` module; returns the undo."""
    import capview.engine.deploy  # noqa: F401  (load the operations before patching)
    import capview.engine.migrate  # noqa: F401
    import capview.engine.ops  # noqa: F401
    import capview.engine.prune  # noqa: F401
    import capview.engine.rollback  # noqa: F401

    proxy = _EngineTime(timer)
    patched = []
    for name, mod in list(sys.modules.items()):
        if name.startswith("capview.engine") and getattr(mod, "time", None) is _time:
            mod.time = proxy  # type: ignore[attr-defined]
            patched.append(mod)

    def undo() -> None:
        for mod in patched:
            mod.time = _time  # type: ignore[attr-defined]

    return undo


DATE_SHIM = r"""#!/bin/sh
# The test host's frozen clock: every call advances it by a fixed step (ms in $f.step).
f=${CV_TEST_CLOCK:?}
n=$(cat "$f" 2>/dev/null || echo 0); n=$((n + 1)); printf '%s\n' "$n" > "$f"
step=$(cat "$f.step" 2>/dev/null || echo 170)
ms=$((n * step)); s=$((T0 + ms / 1000)); frac=$((ms % 1000))
case "${1:-}" in
  +%s) printf '%s\n' "$s" ;;
  +%s.%N) printf '%d.%03d000000\n' "$s" "$frac" ;;
  *) exec /bin/date "$@" ;;
esac
"""


# The test host's disk: `df -Pk PATH` (status, preflight) reports a fixed free space, so a
# snapshot does not change with this machine's disk; anything else is the real df.
DF_SHIM = r"""#!/bin/sh
case "${1:-}" in
  -Pk) echo "Filesystem     1024-blocks     Used Available Capacity Mounted on"
       echo "/dev/vda1         41152736 21856432  19296304      54% /" ;;
  *) exec /bin/df "$@" ;;
esac
"""


class WorldTransport(LocalTransport):
    """LocalTransport with the host clock shim on PATH and hosts that can be 'down'."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root
        self.down: dict[str, str] = {}  # host name -> the error ssh would give
        self.scripts: list[tuple[str, str]] = []  # (host, first line) of every script run

    def take_down(self, host: str) -> None:
        self.down[host] = f"ssh: connect to host {host} port 22: Connection timed out after 10s"

    async def run(self, host, script, **kw):  # type: ignore[override]
        if host.name in self.down:
            await asyncio.sleep(0)
            raise HostUnreachable(f"{host.name}: {self.down[host.name]}")
        clock = self.root / "clocks" / host.name
        prefix = (f"PATH={shlex.quote(str(self.root / 'bin'))}:$PATH; export PATH\n"
                  f"CV_TEST_CLOCK={shlex.quote(str(clock))}; export CV_TEST_CLOCK\n")
        self.scripts.append((host.name, script.split("\n", 1)[0]))
        return await super().run(host, prefix + script, **kw)


# --------------------------------------------------------------------------- source trees


def _asset(seed: int, size: int) -> bytes:
    """Deterministic, incompressible-looking bytes as hex text (a stand-in for an asset)."""
    import hashlib

    out, i = bytearray(), 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{i}".encode()).hexdigest().encode()
        i += 1
    return bytes(out[:size])


APP_PY = '''"""shop: the sample app the dashboard tests deploy."""
import os
import sqlite3

VERSION = "{version}"


def main() -> None:
    db = sqlite3.connect(os.path.join(os.path.dirname(__file__), "data", "shop.db"))
    db.execute("CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY{extra})")
    print("shop", VERSION, "listening on :8080")


if __name__ == "__main__":
    main()
'''

BUILD_SH = '''#!/bin/sh
# build step of the sample app (the dashboard tests hold a deploy here with gates/build)
while [ -e {gate} ]; do sleep 0.05; done
echo "STEP 1/4: check sources"
echo "STEP 2/4: compile templates ({version})"
echo "STEP 3/4: bundle static/app.js"
echo "STEP 4/4: done [bold]not markup[/bold]"
'''

TOML = '''[server]
port = 8080
workers = {workers}

[features]
coupons = {coupons}
'''


def tree(root: Path, version: str, *, healthy: bool = True, coupons: bool = False, workers: int = 2,
         css_rev: int = 1, extra_files: dict[str, bytes] | None = None) -> dict[str, bytes]:
    gate = "../../../../gates/build"  # from releases/<v>/ of a host under <world>/hosts/
    files = {
        "app.py": APP_PY.format(version=version, extra=", coupon TEXT" if coupons else "").encode(),
        "build.sh": BUILD_SH.format(gate=gate, version=version).encode(),
        "config/app.toml": TOML.format(workers=workers, coupons=str(coupons).lower()).encode(),
        "requirements.txt": b"jinja2==3.1.4\nitsdangerous==2.2.0\n",
        "templates/index.html": f"<main><h1>shop {version}</h1></main>\n".encode(),
        "templates/cart.html": b"<main><h1>cart</h1>{% for i in items %}<li>{{ i }}</li>{% endfor %}</main>\n",
        "static/style.css": f"/* rev {css_rev} */\nbody {{ font: 16px system-ui; }}\n".encode() + _asset(css_rev, 3000),
        "static/app.js": b"// the cart\n" + _asset(7, 60_000),
        "static/logo.png": _asset(99, 24_000),
    }
    if healthy:
        files["HEALTHY"] = b"ok\n"
        files["app.log"] = f"shop {version} listening on :8080\n".encode()
    else:
        files["app.log"] = (
            f"shop {version} starting\n"
            "Traceback (most recent call last):\n"
            '  File "app.py", line 10, in main\n'
            "sqlite3.OperationalError: no such column: orders.coupon\n"
        ).encode()
    files.update(extra_files or {})
    return files


def write_tree(path: Path, files: dict[str, bytes]) -> Path:
    if path.exists():
        shutil.rmtree(path)
    for rel, data in files.items():
        p = path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        os.utime(p, (1_700_000_000, 1_700_000_000))
    return path


# --------------------------------------------------------------------------- config


LOGS = 'tail -n "${CAPVIEW_LINES:-200}" ${CAPVIEW_FOLLOW:+-f} current/app.log'  # honours -n and -f


def config_text(root: Path, keep: int = 3, build: bool = True, logs: str = LOGS) -> str:
    gates = "../../gates/stop"  # the service commands run in deploy_path

    def host(name: str) -> str:
        return (f"      - name: {name}\n        host: {name}.example.net\n"
                f"        deploy_path: {json.dumps(str(root / 'hosts' / name))}\n")

    return f"""\
# the dashboard test world (tests/tui_world.py): real engine over LocalTransport
app: shop
deploy_path: {json.dumps(str(root / 'hosts' / 'prod-1'))}
source: src/next
keep_releases: {keep}
shared:
  dirs: [data]
  files: [.env]
{"build:" + chr(10) + "  command: sh build.sh" if build else "build: null"}
service:
  manager: command
  start: "true"
  stop: {json.dumps(f"while [ -e {gates} ]; do sleep 0.05; done")}
  status: test -e current/HEALTHY
  logs: {json.dumps(logs)}
health: null
environments:
  prod:
    strategy: rolling
    hosts:
{host('prod-1')}{host('prod-2')}  legacy:
    build: null
    hosts:
{host('legacy-1')}"""


# --------------------------------------------------------------------------- the world


@dataclass
class World:
    root: Path
    transport: WorldTransport
    timer: EngineTimer
    now: float = T0
    config_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.config_path = self.root / "deploy.yaml"

    @property
    def config(self):
        return load_config(self.config_path)

    def dp(self, host: str) -> Path:
        return self.root / "hosts" / host

    def clock(self) -> float:
        return self.now

    def backend(self, *, operator: str = "you@workstation", clock: Callable[[], float] | None = None):
        from capview.tui.backend import EngineBackend

        return EngineBackend(config=self.config, transport=self.transport, clock=clock or self.clock,
                             operator=operator, label="deploy.yaml")

    def app(self, **kw):
        """The dashboard on this world: frozen clock, no timer refresh, no animations."""
        from capview.tui.app import CapviewApp

        kw.setdefault("refresh_interval", 3600)
        backend = kw.pop("backend", None) or self.backend()
        return CapviewApp(backend, clock=self.clock, animations=False, **kw)

    def set_config(self, **kw) -> None:
        """Rewrite deploy.yaml (e.g. build=False: no build configured); backends made after see it."""
        (self.root / "deploy.yaml").write_text(config_text(self.root, **kw))

    def hold(self, gate: str) -> Path:
        """Hold operations at a phase: 'build' (the build script) or 'stop' (the service stop)."""
        p = self.root / "gates" / gate
        p.touch()
        return p

    def release_gate(self, gate: str) -> None:
        (self.root / "gates" / gate).unlink(missing_ok=True)

    def next_tree(self, version: str = "next", **kw) -> None:
        """What `d Deploy` uploads (the config's source: src/next)."""
        write_tree(self.root / "src" / "next", tree(self.root, version, **kw))

    def host_clock_step(self, host: str, ms: int) -> None:
        (self.root / "clocks" / f"{host}.step").write_text(f"{ms}\n")

    def current(self, host: str) -> str:
        return os.readlink(self.dp(host) / "current").rsplit("/", 1)[-1]

    def release_json(self, host: str, version: str) -> dict:
        return json.loads((self.dp(host) / "releases" / version / ".capview" / "release.json").read_text())

    def history(self, host: str) -> list[dict]:
        path = self.dp(host) / ".capview" / "history.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def ctx(self, operator: str = "you@workstation") -> Context:
        return Context(transport=self.transport, clock=self.clock, operator=operator)


# (version, days ago, operator, engine timer scale, host clock step ms, healthy, tree options)
SEED = (
    ("v0.9.0", 20.0, "alice@laptop", 1.30, 520, True, dict(css_rev=1)),
    ("v1.0.0", 12.0, "alice@laptop", 1.10, 470, True, dict(css_rev=2)),
    ("v1.1.0", 6.0, "ci@runner-3", 0.90, 390, True, dict(css_rev=2, workers=4)),
    ("v1.2.0", 2.0, "ci@runner-3", 1.60, 440, False, dict(css_rev=3, workers=4, coupons=True)),
    ("v1.2.1", 1.0, "bob@desk", 1.20, 410, True, dict(css_rev=3, workers=4)),
    ("v1.3.0", 180 / DAY, "alice@laptop", 1.05, 380, True, dict(css_rev=4, workers=4)),
)


def _seed_legacy(dp: Path) -> None:
    """The old way: app files copied over the live tree, the DB beside them, a .bak."""
    files = tree(dp, "v0.8.3")
    for rel, data in files.items():
        if rel in ("HEALTHY", "app.log"):
            continue
        p = dp / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    (dp / "HEALTHY").write_text("ok\n")
    (dp / "app.py.bak").write_bytes(files["app.py"])
    (dp / "templates.bak").mkdir()
    (dp / ".env").write_text("SECRET_KEY=legacy\n")
    (dp / ".env").chmod(0o600)
    (dp / "data").mkdir()
    db = sqlite3.connect(dp / "data" / "shop.db")
    with db:
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, total INTEGER)")
        db.executemany("INSERT INTO orders (total) VALUES (?)", [(i * 7,) for i in range(120)])
    db.close()


async def _run_ok(coro, what: str) -> Any:
    result = await coro
    if hasattr(result, "ok") and not result.ok and "v1.2.0" not in what:
        raise RuntimeError(f"seeding {what} failed: {[h.message for h in result.hosts]}")
    return result


async def seed(root: Path) -> None:
    """Build the world at ``root`` through the engine (a few seconds; done once per session)."""
    from capview.engine import deploy, ops, rollback
    from capview.engine.lock import LockOwner

    for d in ("bin", "clocks", "gates", "src", "hosts/prod-1", "hosts/prod-2", "hosts/legacy-1"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for name, text in (("date", DATE_SHIM.replace("T0", str(int(T0)))), ("df", DF_SHIM)):
        shim = root / "bin" / name
        shim.write_text(text)
        shim.chmod(0o755)
    (root / "deploy.yaml").write_text(config_text(root, keep=10))  # seeding keeps everything
    timer = EngineTimer()
    undo = freeze_engine_timer(timer)
    world = World(root, WorldTransport(root), timer)
    try:
        config = world.config
        prod = config.env("prod")
        world.now = T0 - 21 * DAY
        assert (await ops.init(world.ctx("alice@laptop"), prod)).ok
        for version, ago, operator, scale, step, healthy, opts in SEED:
            src = write_tree(root / "src" / version, tree(root, version, healthy=healthy, **opts))
            world.now = T0 - ago * DAY
            timer.scale = scale
            hosts = ("prod-1",) if version == "v0.9.0" else ("prod-1", "prod-2")
            for h in hosts:
                world.host_clock_step(h, step)
                await _run_ok(deploy.release(world.ctx(operator), prod, version, host=h, source=src),
                              f"release {version} on {h}")
        world.now = T0 - 10 * DAY
        await _run_ok(ops.pin(world.ctx("alice@laptop"), prod, "v1.0.0", host="prod-1"), "pin")
        # prod-2 went back to v1.2.1 a minute ago: the environment is split (◐), and its
        # side panel has a rollback to explain
        world.now, timer.scale = T0 - 60, 0.7
        world.host_clock_step("prod-2", 290)
        await _run_ok(rollback.rollback(world.ctx("bob@desk"), prod, to="v1.2.1", host="prod-2"), "rollback")
        # legacy-1: the old in-place layout, and a lock left by a migration that died 3 h ago
        _seed_legacy(world.dp("legacy-1"))
        # a holder on another machine: capview cannot check its pid, so only a forced unlock removes it
        owner = LockOwner("carol@laptop", "migrate", None, T0 - 3 * 3600, "5eed0c0ffee0babe", 4242, "carol-laptop")
        legacy = config.env("legacy").hosts[0]
        await take_lock(world, legacy, "legacy-1", owner, T0 - 3 * 3600)
        write_tree(root / "src" / "next", tree(root, "next", css_rev=5, workers=4))
        (root / "deploy.yaml").write_text(config_text(root, keep=3))
        for f in (root / "clocks").iterdir():
            f.unlink()
    finally:
        undo()


_TEMPLATE: Path | None = None


def template(base: Path) -> Path:
    """The seeded world, built once per process under ``base``."""
    global _TEMPLATE
    if _TEMPLATE is None or not _TEMPLATE.exists():
        root = base / "tui-world"
        if root.exists():
            shutil.rmtree(root)
        # its own loop, in a thread: callers may already run one (pytest-asyncio, a Pilot test)
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, seed(root)).result()
        _TEMPLATE = root
    return _TEMPLATE


def copy_world(base: Path, dest: Path) -> World:
    """A fresh copy of the seeded world at ``dest`` (hard links kept; config rewritten)."""
    src = template(base)
    dest.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", str(src), str(dest)], check=True)
    (dest / "deploy.yaml").write_text(config_text(dest, keep=3))  # its paths are absolute
    timer = EngineTimer()
    return World(dest, WorldTransport(dest), timer)


def tamper(world: World, host: str = "prod-1", version: str = "v1.3.0", extra: str = "evil\x1b[31m.js") -> None:
    """Change a deployed release behind capview's back: static/style.css rewritten (and made
    writable), templates/cart.html deleted, ``static/<extra>`` added (what verify must find)."""
    rel = world.dp(host) / "releases" / version
    css = rel / "static" / "style.css"
    css.chmod(0o644)
    css.write_text("body { display: none }\n")
    (rel / "templates" / "cart.html").unlink()
    (rel / "static" / extra).write_text("steal()\n")


async def take_lock(world: World, host, name: str, owner, now: float) -> None:
    """``owner`` takes the lock of ``host`` with the engine's own lock script (HostLock)."""
    from capview.engine.layout import HostPaths
    from capview.engine.lock import HostLock
    from capview.engine.scripts.shell import Frames

    frames = Frames.new()
    script = frames.prelude() + HostLock(HostPaths(str(world.dp(name))), owner).acquire_script(now, frames)
    res = await world.transport.run(host, script)
    assert res.ok and any(k == "locked" for k, _, _ in frames.parse(res.stdout)), res.stderr


async def make_hostile(world: World) -> None:
    """Hostile remote text: prod-1 locked by a name full of markup and escape sequences."""
    from capview.engine.lock import LockOwner

    owner = LockOwner(HOSTILE, "release", "v9", T0 - 60, "0badc0de0badc0de", 1, "evil\x1b[2Jbox")
    await take_lock(world, world.config.env("prod").hosts[0], "prod-1", owner, T0 - 60)


# --------------------------------------------------------------------------- pytest fixtures
# (imported by the tests/test_tui_*.py modules: ``from tui_world import world``)

try:
    import pytest
except ImportError:  # scripts/screenshots.py and the benchmark import this module without pytest
    pytest = None  # type: ignore[assignment]

if pytest is not None:
    @pytest.fixture
    def world(tmp_path, tmp_path_factory, monkeypatch):
        """A fresh copy of the seeded world, the engine's phase timer frozen, local time = UTC."""
        monkeypatch.setenv("TZ", "UTC")
        _time.tzset()
        # a cold listing's sums are always waited for: on a loaded machine the 0.4 s bound
        # would turn sizes into "…" by chance (tests/test_tui_numbers.py shows "…" on purpose)
        from capview.engine.scripts import usage
        monkeypatch.setattr(usage, "COLD_WAIT", 30.0)
        w = copy_world(tmp_path_factory.getbasetemp(), tmp_path / "world")
        undo = freeze_engine_timer(w.timer)
        yield w
        undo()
        for gate in (w.root / "gates").iterdir():  # a held script left behind ends its wait now
            gate.unlink()
        _time.tzset()
