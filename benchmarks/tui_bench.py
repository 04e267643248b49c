"""Dashboard performance (issue 6): first paint, a 50-host fleet behind 100 ms RTT, and a
build flooding 100,000 log lines while keys are pressed.

    .venv/bin/python -m benchmarks.tui_bench                 # everything (~4 min on 2 cores)
    .venv/bin/python -m benchmarks.tui_bench --only paint    # paint | fleet | flood (comma list)
    .venv/bin/python -m benchmarks.tui_bench --runs 5 --hosts 50 --rtt 100 --lines 100000

Prints markdown tables and writes ``benchmarks/results/tui.md`` (and ``tui.json``). The fleet
and the SSH flood need the testbed (root; ``scripts/testbed.sh up`` is run for you); without
it those rows are skipped and listed under "Errors" (exit status 1).

How it is measured
------------------
* **First paint** and **the flood** run the dashboard as a real terminal app: a child
  ``python -m benchmarks.tui_bench --child ...`` in a pseudo-terminal (Textual's real
  Linux driver, 140x40, every frame written and read back), never headless. The parent
  notes when the main screen's first frame (its "hosts" pane) and its footer reach the
  terminal; the child notes, on the same ``CLOCK_MONOTONIC``, when the interpreter was up,
  when its imports were done, when ``App.run`` started, and when the hosts' status was on
  screen. With EngineBackend over LocalTransport on the dashboard tests' seeded world
  (tests/tui_world.py), and over SSH to the ``capview demo`` sandbox (its embedded asyncssh
  host, seeded once by ``capview demo --headless``).
* **Keys during the flood**: the parent writes ``x`` into the terminal every 30 ms while
  the operation runs; the child's App binds ``x`` and records when the action ran.
  Latency = action ran - byte written (both CLOCK_MONOTONIC), keys paired in order; the
  child also records when Textual's input thread parsed each key, which splits the
  latency into "reaching the app" and "queued in the event loop". Peak RSS is the child's
  ``VmHWM``. The child times the UI's big steps (layout, render, log flush) and the
  garbage collector's pauses in CPU time. Every row runs a real build (``seq`` printing the
  lines) through EngineBackend: on the tests' world over LocalTransport (this machine's sh),
  and on a testbed host over SshTransport.
* **Fleet**: one testbed sshd behind ``benchmarks/latency_proxy.py`` (its own process, one
  listener per host, 50 ms each way = 100 ms RTT), 50 HostConfigs on 50 listener ports (so
  50 separate SSH connections, as 50 hosts would be), each with its own deploy_path
  holding 10 releases written in the on-host format (``tests/fakehost.py``). Timed:
  ``engine.status.status()`` cold (connections opened) and warm, the transport's
  ``round_trips`` per host, the client's CPU, one host alone; the dashboard (headless
  Pilot, EngineBackend) from App start until all 50 hosts and the 10 releases are listed,
  then a refresh (``R``); and the same 50 status scripts run by the local ``sh`` at once
  (every "host" here shares this machine's cores, which real hosts would not).

Diagnosis switches for the child (environment): ``CVB_PROFILE=FILE`` (cProfile of the
operation), ``CVB_GC_TYPES=1`` (what the heap holds at the end of the operation),
``CVB_NO_GC_FREEZE=1``, ``CVB_YIELDING_READS=1`` (the what-if row, see below).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import fcntl
import json
import os
import pickle
import pty
import re
import select
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
COLS, ROWS = 140, 40
KEY_INTERVAL = 0.03
NICE = [0]  # --nice: the children's niceness (a shared, busy machine: -10 gives them the CPU first)
TESTS = REPO / "tests"


def _mono() -> float:
    return time.monotonic()


def _cpu() -> float:
    """CPU seconds (user + system) this process used so far: less noisy than wall time on a busy box."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def vm_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


# =========================================================================== the child (in the pty)


def child_main(mode: str, out: Path, config: str | None, signal_path: Path, lines: int, version: str) -> int:
    t_main = _mono()
    from textual.binding import Binding

    from capview.tui.app import CapviewApp, OperationChanged
    from capview.tui.backend import EngineBackend
    from capview.tui.screens.deploy_dialog import DeployRequest

    rec: dict[str, Any] = {"mode": mode, "t_main": t_main, "t_imported": _mono()}
    flood = mode.startswith("flood")
    assert config is not None
    if mode.endswith("local"):  # the dashboard tests' world: the real engine over LocalTransport
        sys.path.insert(0, str(TESTS))
        import tui_world

        root = Path(config)
        backend: Any = EngineBackend(config_path=root / "deploy.yaml", transport=tui_world.WorldTransport(root),
                                     operator="bench@tui").load()
    elif config.endswith(".pickle"):
        backend = EngineBackend(config=pickle.loads(Path(config).read_bytes()), operator="bench@tui")
    else:
        backend = EngineBackend(config).load()
    env = backend.environments()[0]
    request = DeployRequest(env.name, version, host=env.hosts[0].name)
    expect = sum(len(e.hosts) for e in backend.environments())
    if os.environ.get("CVB_YIELDING_READS"):
        # what-if for capview/remote/ssh.py: asyncssh's read() returns at once while data is
        # buffered, so the transport's line pump drains a whole flood's backlog without giving
        # the event loop a turn; this makes every read yield once (await asyncio.sleep(0))
        import asyncssh

        orig_read = asyncssh.SSHReader.read

        async def read(self: Any, n: int = -1) -> Any:
            data = await orig_read(self, n)
            await asyncio.sleep(0)
            return data

        asyncssh.SSHReader.read = read  # type: ignore[method-assign]
    if os.environ.get("CVB_TRACE"):  # time the UI's big steps and GC pauses (the flood rows)
        rec["trace"] = _trace_ui()
    profile = None
    if os.environ.get("CVB_PROFILE"):  # cProfile the operation (diagnosis only; slows it down)
        import cProfile

        profile = cProfile.Profile()

    class BenchApp(CapviewApp):
        BINDINGS = CapviewApp.BINDINGS + [Binding("x", "probe", show=False, priority=True)]

        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            self.handled: list[float] = []
            self.op: Any = None

        def on_ready(self) -> None:
            rec["t_ready"] = _mono()
            super().on_ready()  # gc.freeze(), as run_app does (unless CVB_NO_GC_FREEZE)
            rec["cpu_ready"] = _cpu()

        def set_status(self, status: dict) -> None:
            super().set_status(status)
            if "t_status" not in rec and len(status) >= expect:
                rec["t_status"] = _mono()
                rec["reachable"] = sum(1 for s in status.values() if s.reachable)
                rec["hosts"] = len(status)
                self.call_after_refresh(self._shown)

        def _shown(self) -> None:
            rec["t_shown"] = _mono()
            rec["cpu_shown"] = _cpu()
            if flood:
                rec["t_op_start"] = _mono()
                if profile is not None:
                    profile.enable()
                self.op = self.start_release(request)
                signal_path.write_text("go")
            else:
                self.set_timer(0.2, self._done)

        def on_operation_changed(self, message: OperationChanged) -> None:
            super().on_operation_changed(message)
            op = message.op
            if op is self.op and not op.running and "t_op_end" not in rec:
                rec["t_op_end"] = _mono()
                if os.environ.get("CVB_GC_TYPES"):  # what the heap holds (diagnosis only)
                    import collections
                    import gc

                    objs = gc.get_objects()
                    rec["gc_objects"] = len(objs)
                    rec["gc_types"] = collections.Counter(type(o).__name__ for o in objs).most_common(12)
                    del objs
                if profile is not None:
                    profile.disable()
                    profile.dump_stats(os.environ["CVB_PROFILE"])
                rec["op_state"] = op.state
                rec["log_total"] = op.hosts[request.host].log.total if request.host in op.hosts else None
                Path(str(signal_path) + ".end").write_text("end")
                self.set_timer(0.5, self._done)

        def action_probe(self) -> None:
            self.handled.append(_mono())

        def _done(self) -> None:
            self.exit(0)

    app = BenchApp(backend, freeze_gc=not os.environ.get("CVB_NO_GC_FREEZE"))
    driver_seen: list[float] = []
    if os.environ.get("CVB_KEYTRACE"):  # when Textual's input thread parsed each key
        from textual import events as _events
        from textual.driver import Driver

        orig_send = Driver.send_message

        def send_message(self: Any, message: Any) -> None:
            if isinstance(message, _events.Key) and message.key == "x":
                driver_seen.append(_mono())
            orig_send(self, message)

        Driver.send_message = send_message  # type: ignore[method-assign]
    rec["t_run"] = _mono()
    try:
        app.run()
    finally:
        rec["handled"] = app.handled
        rec["driver_seen"] = driver_seen
        rec["vmhwm_mb"] = vm_kb("VmHWM") / 1024
        rec["vmrss_mb"] = vm_kb("VmRSS") / 1024
        if app.op is not None:
            from capview.tui.widgets.log_pane import LogPane

            rec["pane"] = None
            try:
                pane = app.screen.query_one(LogPane)
                rec["pane"] = {"lines": len(pane.lines), "flushes": pane.flushes, "written": pane.lines_written}
            except Exception:
                pass
        out.write_text(json.dumps(rec))
    return 0


def _trace_ui() -> list:
    """Wrap the dashboard's and Textual's expensive steps with timers: (name, start, seconds)."""
    import functools

    from textual._compositor import Compositor
    from textual.screen import Screen

    from capview.tui.widgets.log_pane import LogPane
    from capview.tui.widgets.phase_table import PhaseTable

    spans: list = []

    def wrap(cls: Any, name: str, label: str) -> None:
        orig = getattr(cls, name)

        @functools.wraps(orig)
        def timed(*a: Any, **kw: Any) -> Any:
            t, c = _mono(), time.thread_time()
            try:
                return orig(*a, **kw)
            finally:
                d = _mono() - t
                if d > 0.002:
                    spans.append((label, t, d, time.thread_time() - c))

        setattr(cls, name, timed)

    import gc

    gc_start: list[float] = [0.0, 0.0]

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            gc_start[:] = [_mono(), time.thread_time()]
        else:
            d = _mono() - gc_start[0]
            if d > 0.002:
                spans.append((f"gc gen{info['generation']}", gc_start[0], d, time.thread_time() - gc_start[1]))

    gc.callbacks.append(on_gc)
    wrap(LogPane, "flush", "LogPane.flush")
    wrap(PhaseTable, "update_from", "PhaseTable.update_from")
    wrap(Screen, "_refresh_layout", "Screen._refresh_layout")
    wrap(Compositor, "render_update", "Compositor.render_update")
    return spans


# =========================================================================== the parent's pty driver


# what the main screen's frames contain: its layout (the hosts pane's border title), and the
# footer, which Textual fills in on a later frame
MARKERS = {"frame": "\u2500 hosts ".encode(), "footer": b"q Quit"}
_CSI = re.compile(rb"\x1b\[[0-9;?<>=$]*[ -/]*[@-~]")


def run_in_pty(args: list[str], *, timeout: float, signal_path: Path | None = None,
               env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``python -m benchmarks.tui_bench --child ...`` in a pty of COLS x ROWS; read all its
    output; note when each of MARKERS first shows; press ``x`` every KEY_INTERVAL while
    ``signal_path`` exists (and its ``.end`` does not)."""
    argv = [sys.executable, "-m", "benchmarks.tui_bench", "--child", *args]
    env = dict(os.environ, TERM="xterm-256color", COLORTERM="truecolor", **(env or {}))
    env.pop("TEXTUAL", None)
    t_spawn = _mono()
    pid, fd = pty.fork()
    if pid == 0:  # the child: size the terminal before anything reads it, then exec
        try:
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
            if NICE[0]:
                os.nice(NICE[0])
            os.chdir(REPO)
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    res: dict[str, Any] = {"t_spawn": t_spawn, "sent": [], "bytes": 0, "status": None}
    seen: dict[str, float] = {}
    res["markers"] = seen
    tail = b""
    deadline = t_spawn + timeout
    next_key = 0.0
    end_path = Path(str(signal_path) + ".end") if signal_path else None
    sending = False
    try:
        while _mono() < deadline:
            r, _, _ = select.select([fd], [], [], 0.005)
            if r:
                try:
                    data = os.read(fd, 1 << 16)
                except OSError:
                    data = b""
                if not data:
                    break
                res["bytes"] += len(data)
                if len(seen) < len(MARKERS):  # match on the text, escape sequences removed
                    tail = (tail + data)[-8192:]
                    text = _CSI.sub(b"", tail)
                    for name, marker in MARKERS.items():
                        if name not in seen and marker in text:
                            seen[name] = _mono()
            if signal_path is not None:
                now = _mono()
                if not sending and signal_path.exists():
                    sending = True
                if sending and end_path is not None and end_path.exists():
                    sending = False
                    signal_path = None
                if sending and now >= next_key:
                    os.write(fd, b"x")
                    res["sent"].append(_mono())
                    next_key = now + KEY_INTERVAL
        for _ in range(200):  # reap (bounded: 20 s)
            wpid, status = os.waitpid(pid, os.WNOHANG)
            if wpid:
                res["status"] = os.waitstatus_to_exitcode(status)
                break
            try:  # keep draining so the child never blocks on a full pty
                r, _, _ = select.select([fd], [], [], 0.1)
                if r:
                    os.read(fd, 1 << 16)
            except OSError:
                time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            res["status"] = "killed"
    finally:
        os.close(fd)
    res["t_exit"] = _mono()
    return res


def med(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def pct(xs: list[float], p: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    k = min(len(s) - 1, max(0, int(round(p / 100 * (len(s) - 1)))))
    return s[k]


def fmt_s(x: float | None, unit: str = "s") -> str:
    if x is None:
        return "—"
    return f"{x * 1000:.0f} ms" if unit == "ms" else f"{x:.2f} s"


# =========================================================================== 1. first paint


def paint_runs(mode: str, runs: int, config: str | None, work: Path) -> list[dict[str, Any]]:
    out = []
    for i in range(runs):
        js = work / f"paint-{mode}-{i}.json"
        args = [mode, "--json", str(js), "--signal", str(work / f"sig-{mode}-{i}")]
        if config:
            args += ["--config", config]
        res = run_in_pty(args, timeout=60)
        if res["status"] != 0 or not js.exists():
            raise RuntimeError(f"paint child {mode} failed: exit {res['status']}")
        rec = json.loads(js.read_text())
        out.append({
            "spawn_to_frame": res["markers"]["frame"] - res["t_spawn"] if "frame" in res["markers"] else None,
            "spawn_to_footer": res["markers"]["footer"] - res["t_spawn"] if "footer" in res["markers"] else None,
            "spawn_to_main": rec["t_main"] - res["t_spawn"],
            "imports": rec["t_imported"] - rec["t_main"],
            "run_to_ready": rec["t_ready"] - rec["t_run"],
            "run_to_frame": res["markers"]["frame"] - rec["t_run"] if "frame" in res["markers"] else None,
            "run_to_status": rec["t_shown"] - rec["t_run"],
            "spawn_to_status": rec["t_shown"] - res["t_spawn"],
            "cpu_ready": rec["cpu_ready"], "cpu_shown": rec["cpu_shown"],
            "reachable": f"{rec.get('reachable')}/{rec.get('hosts')}",
        })
    return out


class DemoHost:
    """The ``capview demo`` sandbox: seeded once (``--headless``), then only its embedded SSH
    host is served, from a thread of this process, for the children to connect to."""

    def __init__(self, work: Path) -> None:
        self.dir = work / "demo"
        self.loop: asyncio.AbstractEventLoop | None = None
        self.server: Any = None
        self.sandbox: Any = None
        self.thread: Any = None

    def __enter__(self) -> "DemoHost":
        import threading

        self.dir.mkdir(parents=True, exist_ok=True)
        cp = subprocess.run([sys.executable, "-m", "capview.demo", "--dir", str(self.dir), "--headless"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
        if cp.returncode != 0:
            raise RuntimeError(f"capview demo --headless failed:\n{cp.stdout}\n{cp.stderr}")
        from capview.demo.sandbox import prepare
        from capview.demo.server import start_server

        self.sandbox = prepare(self.dir, fresh=False)
        self.loop = asyncio.new_event_loop()
        started = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(self.loop)

            async def start() -> None:
                self.server = await start_server(self.sandbox.dir, self.sandbox.ssh_port)
                started.set()

            self.loop.run_until_complete(start())
            self.loop.run_forever()

        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()
        if not started.wait(30):
            raise RuntimeError("the demo SSH host did not start")
        return self

    @property
    def config(self) -> str:
        return str(self.sandbox.config_path)

    def __exit__(self, *exc: object) -> None:
        if self.loop is not None and self.server is not None:
            fut = asyncio.run_coroutine_threadsafe(self.server.close(), self.loop)
            try:
                fut.result(15)
            except Exception:
                pass
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
        if self.sandbox is not None:
            self.sandbox.stop_apps()
            self.sandbox.close()


def local_world(work: Path, name: str, lines: int | None = None) -> str:
    """A copy of the dashboard tests' seeded world (tests/tui_world.py); with ``lines``, the
    next release's build prints that many lines at full speed."""
    sys.path.insert(0, str(TESTS))
    import tui_world

    world = tui_world.copy_world(work, work / name)
    if lines:
        build = world.root / "src" / "next" / "build.sh"
        build.write_text(f"seq -f 'build: compiling module %g/{lines}' 1 {lines}\n")
    return str(world.root)


def bench_paint(runs: int, work: Path, report: dict[str, Any]) -> None:
    rows = []
    local = paint_runs("paint-local", runs, local_world(work, "paint-world"), work)
    rows.append(("EngineBackend, LocalTransport (the tests' world: 3 hosts)", local))
    try:
        with DemoHost(work) as demo:
            eng = paint_runs("paint-engine", runs, demo.config, work)
        rows.append(("EngineBackend, SSH to the demo sandbox (3 hosts)", eng))
    except Exception as exc:  # reported, not fatal
        report["errors"].append(f"paint with the demo sandbox: {exc}")
    lines = [
        "### First paint (real terminal: a pty, 140x40)",
        "",
        f"Median of {runs} runs (max in brackets). Target: first paint < 0.5 s.",
        "",
        "| backend | process start → main screen's first frame on the terminal | … with its footer "
        "| of which: interpreter start | imports (textual, capview.tui) | App.run → first frame on the terminal "
        "| App.run → hosts' status on screen | process start → status on screen "
        "| process CPU time (user+sys) until the first frame / status on screen | hosts reachable |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, rs in rows:
        def cell(key: str) -> str:
            xs = [r[key] for r in rs if r[key] is not None]
            return f"{fmt_s(med(xs))} ({fmt_s(max(xs))})" if xs else "—"

        lines.append(f"| {name} | {cell('spawn_to_frame')} | {cell('spawn_to_footer')} | {cell('spawn_to_main')} | "
                     f"{cell('imports')} | {cell('run_to_frame')} | "
                     f"{cell('run_to_status')} | {cell('spawn_to_status')} | "
                     f"{fmt_s(med([r['cpu_ready'] for r in rs]))} / {fmt_s(med([r['cpu_shown'] for r in rs]))} | "
                     f"{rs[0]['reachable']} |")
    lines += ["", f"Load average at the end of this section: {_load()}."]
    report["paint"] = {name: rs for name, rs in rows}
    report["tables"].append("\n".join(lines))


# =========================================================================== 2. the fleet


def _release_files(i: int) -> dict[str, str]:
    files = {f"templates/page{k}.html": f"<h1>page {k}</h1>\n" * 20 for k in range(12)}
    files.update({f"static/s{k}.css": f".c{k} {{ color: red; }}\n" * 30 for k in range(6)})
    files["app.py"] = f"print('release {i}')\n"
    files["VERSION"] = f"v1.{i}.0\n"
    return files


def build_fleet(th: Any, n_hosts: int, n_rel: int) -> list[str]:
    """n_hosts deploy_paths under the host's base, each with n_rel releases (on-host format)."""
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    from fakehost import FakeHost

    base = Path(th.base) / "fleet"
    paths = []
    for i in range(1, n_hosts + 1):
        fh = FakeHost(base / f"h{i:02d}")
        prev = None
        for j in range(1, n_rel + 1):
            v = f"v1.{j}.0"
            fh.release(v, _release_files(j), link_from=prev, deployed_at=1_000_000.0 + 3600 * j)
            fh.history_release(v, prev=prev)
            prev = v
        fh.set_current(prev)
        paths.append(str(fh.dp))
    subprocess.run(["chown", "-R", f"{th.uid}:{th.pw.pw_gid}", str(base)], check=True)
    return paths


class FleetProxy:
    """One latency-proxy process, ``n`` listeners all forwarding to one sshd port."""

    def __init__(self, sshd_port: int, n: int, one_way_ms: float) -> None:
        self.sshd_port, self.n, self.one_way_ms = sshd_port, n, one_way_ms
        self.proc: subprocess.Popen | None = None
        self.ports: list[int] = []

    def __enter__(self) -> "FleetProxy":
        argv = [sys.executable, "-m", "benchmarks.latency_proxy", "--delay-ms", str(self.one_way_ms)]
        for _ in range(self.n):
            argv += ["--target", f"127.0.0.1:{self.sshd_port}"]
        self.proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        for _ in range(self.n):
            line = self.proc.stdout.readline()
            if not line.startswith("LISTEN "):
                self.__exit__()
                raise RuntimeError(f"latency proxy did not start: {line!r}")
            self.ports.append(int(line.split()[1]))
        if self.proc.stdout.readline().strip() != "READY":
            self.__exit__()
            raise RuntimeError("latency proxy did not report READY")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def fleet_config(th: Any, paths: list[str], ports: list[int], work: Path, max_parallel: int) -> Any:
    from capview.config import Config, Environment, HostConfig, Settings, SshOptions

    pub = (Path(th.dir) / "host_ed25519.pub").read_text().split()
    kh = work / "fleet_known_hosts"
    kh.write_text("".join(f"[127.0.0.1]:{p} {pub[0]} {pub[1]}\n" for p in ports))
    ssh = SshOptions(known_hosts=str(kh), identity_file=str(th.identity_file), connect_timeout=60)
    hosts = []
    for i, (dp, port) in enumerate(zip(paths, ports), 1):
        s = Settings(app="fleet", deploy_path=dp, source=work, ssh=ssh)
        hosts.append(HostConfig(name=f"web-{i:02d}", host="127.0.0.1", port=port, user=th.user, settings=s,
                                env="fleet"))
    env = Environment(name="fleet", hosts=tuple(hosts), settings=hosts[0].settings, max_parallel=max_parallel)
    return Config(path=work / "fleet.yaml", environments=(env,))


async def fleet_engine(config: Any, warm_runs: int, connects: int | None = None) -> dict[str, Any]:
    from capview.engine.context import Context
    from capview.engine.status import status
    from capview.remote.ssh import SshTransport

    env = config.environments[0]
    n = len(env.hosts)
    t = SshTransport() if connects is None else SshTransport(max_concurrent_connects=connects)
    try:
        ctx = Context(transport=t, operator="bench@tui")
        t0 = time.perf_counter()
        st = await status(ctx, env)
        cold = time.perf_counter() - t0
        ok = sum(1 for s in st if s.reachable and len(s.releases) >= 1)
        rels = sum(len(s.releases) for s in st)
        rt_cold = t.round_trips
        warm, cpu = [], []
        for _ in range(warm_runs):
            before = t.round_trips
            c0 = _cpu()
            t0 = time.perf_counter()
            st = await status(ctx, env)
            warm.append(time.perf_counter() - t0)
            cpu.append(_cpu() - c0)
            rt_warm = (t.round_trips - before) / n
        one = []  # one host alone, warm: the RTT plus the script, nothing shared
        for _ in range(warm_runs):
            t0 = time.perf_counter()
            await status(ctx, env, host=env.hosts[0].name)
            one.append(time.perf_counter() - t0)
        return {"cold": cold, "warm": warm, "warm_cpu": cpu, "one_host_warm": one,
                "rt_cold_per_host": rt_cold / n, "rt_warm_per_host": rt_warm,
                "connects": t.connects, "reachable": ok, "releases": rels,
                "errors": sorted({s.error for s in st if not s.reachable})[:3]}
    finally:
        await t.close()


async def fleet_local(config: Any, runs: int) -> dict[str, Any]:
    """The same status scripts on the same deploy_paths, run by this machine's sh (no SSH, no
    proxy), all at once: the floor set by 50 "hosts" sharing this box's cores."""
    import resource

    from capview.engine.context import Context
    from capview.engine.status import status
    from capview.remote.local import LocalTransport

    env = dataclasses.replace(config.environments[0], max_parallel=len(config.environments[0].hosts))
    ctx = Context(transport=LocalTransport(), operator="bench@tui")
    wall, child_cpu = [], []
    for _ in range(runs):
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        st = await status(ctx, env)
        wall.append(time.perf_counter() - t0)
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        child_cpu.append(ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime)
        assert all(s.reachable for s in st), [s.error for s in st if not s.reachable][:2]
    return {"wall": wall, "scripts_cpu": child_cpu}


async def fleet_ui(config: Any, n_rel: int, refreshes: int) -> dict[str, Any]:
    from capview.remote.ssh import SshTransport
    from capview.tui.app import CapviewApp
    from capview.tui.backend import EngineBackend
    from capview.tui.widgets.host_list import HostList
    from capview.tui.widgets.releases_table import ReleasesTable

    env = config.environments[0]
    n = len(env.hosts)
    transport = SshTransport()
    backend = EngineBackend(config=config, transport=transport, operator="bench@tui")
    app = CapviewApp(backend, refresh_interval=3600, animations=False)
    res: dict[str, Any] = {}

    def listed() -> bool:
        if len(app.status) < n or not all(s.reachable and len(s.releases) == n_rel for s in app.status.values()):
            return False
        table = app.main_screen.query_one(ReleasesTable)
        hosts = app.main_screen.query_one(HostList)
        labels_done = all("…" not in node.label.plain for t, node in hosts._target_nodes.items() if t.host)
        return table.row_count == n_rel and labels_done

    async def wait(pilot: Any, cond: Any, timeout: float) -> bool:
        deadline = time.perf_counter() + timeout
        while not cond():
            if time.perf_counter() > deadline:
                return False
            await pilot.pause(0.005)
        return True

    t0 = time.perf_counter()
    async with app.run_test(size=(COLS, ROWS)) as pilot:
        res["first_frame"] = time.perf_counter() - t0
        ok = await wait(pilot, listed, 120)
        res["listed"] = time.perf_counter() - t0 if ok else None
        res["rt_first_per_host"] = transport.round_trips / n
        res["connects"] = transport.connects
        res["refresh"] = []
        for _ in range(refreshes):
            before = transport.round_trips
            app.status = {}  # so "listed" waits for the new answers
            t1 = time.perf_counter()
            await pilot.press("R")
            ok = await wait(pilot, listed, 60)
            res["refresh"].append(time.perf_counter() - t1 if ok else None)
            res["rt_refresh_per_host"] = (transport.round_trips - before) / n
        await pilot.press("q")
    return res


def bench_fleet(n_hosts: int, n_rel: int, rtt_ms: float, runs: int, work: Path, report: dict[str, Any]) -> None:
    from benchmarks.hosts import BenchTestbed

    tb = BenchTestbed(run_up=True)
    try:
        th = tb.start_host("bench-tui-fleet")
        t0 = time.perf_counter()
        paths = build_fleet(th, n_hosts, n_rel)
        build_s = time.perf_counter() - t0
        results: dict[str, Any] = {"build_s": build_s}
        with FleetProxy(th.port, n_hosts, rtt_ms / 2) as proxy:
            for key, mp, cc in (("mp10", 10, None), ("mpN", n_hosts, None), ("mpN_ccN", n_hosts, n_hosts)):
                cfg = fleet_config(th, paths, proxy.ports, work, mp)
                results[f"engine_{key}"] = [asyncio.run(fleet_engine(cfg, 3, cc)) for _ in range(runs)]
            cfg = fleet_config(th, paths, proxy.ports, work, 10)
            results["ui"] = [asyncio.run(fleet_ui(cfg, n_rel, 3)) for _ in range(runs)]
            results["local"] = asyncio.run(fleet_local(cfg, 3))
    finally:
        tb.close()
    report["fleet"] = results

    def cold_warm(rs: list[dict[str, Any]]) -> str:
        cold = [r["cold"] for r in rs]
        warm = [w for r in rs for w in r["warm"]]
        cpu = [c for r in rs for c in r["warm_cpu"]]
        one = [c for r in rs for c in r["one_host_warm"]]
        return (f"{fmt_s(med(cold))} ({fmt_s(max(cold))}) | {fmt_s(med(warm))} ({fmt_s(max(warm))}) | "
                f"{fmt_s(med(cpu))} | {fmt_s(med(one))} | "
                f"{rs[0]['rt_cold_per_host']:.2f} / {rs[0]['rt_warm_per_host']:.2f} | {rs[0]['connects']} | "
                f"{rs[0]['reachable']}/{n_hosts}, {rs[0]['releases']} releases")

    ui = results["ui"]
    listed = [r["listed"] for r in ui if r["listed"] is not None]
    first = [r["first_frame"] for r in ui]
    refresh = [x for r in ui for x in r["refresh"] if x is not None]
    lines = [
        f"### {n_hosts} hosts x {n_rel} releases behind {rtt_ms:.0f} ms RTT",
        "",
        f"One sshd behind the latency proxy ({n_hosts} listeners, so {n_hosts} separate SSH connections). "
        f"Median of {runs} runs (max in brackets); warm = connections already open (3 per run).",
        "",
        "| what | cold (connect + status) | warm | client CPU per warm status | one host alone, warm "
        "| round trips per host (cold / warm) | SSH connects | listed |",
        "|---|---|---|---|---|---|---|---|",
        f"| `status()`, env max_parallel=10 (the default; what the dashboard did before) | "
        f"{cold_warm(results['engine_mp10'])} |",
        f"| `status()`, max_parallel={n_hosts} (what EngineBackend.status now asks for) | "
        f"{cold_warm(results['engine_mpN'])} |",
        f"| `status()`, max_parallel={n_hosts} and SshTransport(max_concurrent_connects={n_hosts}) | "
        f"{cold_warm(results['engine_mpN_ccN'])} |",
        "",
        "| dashboard (EngineBackend with a default SshTransport, env max_parallel=10, headless Pilot) "
        "| median | max |",
        "|---|---|---|",
        f"| App start → first frame | {fmt_s(med(first))} | {fmt_s(max(first))} |",
        f"| App start → all {n_hosts} hosts and {n_rel} releases listed | {fmt_s(med(listed))} | "
        f"{fmt_s(max(listed) if listed else None)} |",
        f"| `R` → every host refreshed (warm) | {fmt_s(med(refresh))} | {fmt_s(max(refresh) if refresh else None)} |",
        f"| round trips per host: first listing / each refresh | {ui[0]['rt_first_per_host']:.2f} / "
        f"{ui[0].get('rt_refresh_per_host', float('nan')):.2f} | |",
        "",
        f"Floor on this box: the same {n_hosts} status scripts run at once by the local `sh` (no SSH, no "
        f"proxy) take {fmt_s(med(results['local']['wall']))} wall and "
        f"{fmt_s(med(results['local']['scripts_cpu']))} of CPU in the scripts themselves; on {n_hosts} real "
        "hosts each runs on its own machine. Load average at the end of this section: "
        f"{_load()}.",
    ]
    report["tables"].append("\n".join(lines))


# =========================================================================== 3. the flood


def flood_engine_config(th: Any, work: Path, lines: int) -> Path:
    from capview.config import BuildConfig, Config, Environment, HostConfig, Settings, SshOptions

    src = work / "flood-src"
    src.mkdir(exist_ok=True)
    (src / "app.py").write_text("print('flood')\n")
    dp = f"{th.base}/flood"
    th.run_as_user(f"mkdir -p {dp}/shared/data && touch {dp}/shared/.env && chmod 600 {dp}/shared/.env")
    s = Settings(app="flood", deploy_path=dp, source=src, keep_releases=2,
                 build=BuildConfig(command=f"seq -f 'build: compiling module %g/{lines}' 1 {lines}"),
                 ssh=SshOptions(known_hosts=str(th.known_hosts), identity_file=str(th.identity_file)))
    h = HostConfig(name="flood-1", host="127.0.0.1", port=th.port, user=th.user, settings=s, env="flood")
    cfg = Config(path=work / "flood.yaml", environments=(Environment("flood", (h,), s),))
    path = work / "flood-config.pickle"
    path.write_bytes(pickle.dumps(cfg))
    return path


def flood_runs(mode: str, runs: int, lines: int, config: str | None, work: Path, *,
               freeze: bool = True, extra_env: dict[str, str] | None = None,
               tag: str = "") -> list[dict[str, Any]]:
    out = []
    for i in range(runs):
        js = work / f"{mode}-{int(freeze)}{tag}-{i}.json"
        sig = work / f"sig-{mode}-{int(freeze)}{tag}-{i}"
        args = [mode, "--json", str(js), "--signal", str(sig), "--lines", str(lines),
                "--version", f"v9.{os.getpid() % 1000}.{i}{int(freeze)}{tag}"]
        if config:
            args += ["--config", config]
        env = {"CVB_TRACE": "1", "CVB_KEYTRACE": "1", **(extra_env or {})}
        if not freeze:
            env["CVB_NO_GC_FREEZE"] = "1"
        res = run_in_pty(args, timeout=300, signal_path=sig, env=env)
        if res["status"] != 0 or not js.exists():
            raise RuntimeError(f"flood child {mode} failed: exit {res['status']}")
        rec = json.loads(js.read_text())
        t0, t1 = rec.get("t_op_start"), rec.get("t_op_end")
        pairs = [(s, h - s) for s, h in zip(res["sent"], rec["handled"]) if t0 and t1 and t0 <= s <= t1]
        seen = rec.get("driver_seen") or []
        in_loop = [h - d for s, d, h in zip(res["sent"], seen, rec["handled"])
                   if t0 and t1 and t0 <= s <= t1] if len(seen) == len(rec["handled"]) else []
        spans = [x for x in rec.get("trace", []) if t0 and t1 and t0 <= x[1] <= t1]
        ui = [x for x in spans if not x[0].startswith("gc")]
        gcs = [x for x in spans if x[0].startswith("gc")]
        out.append({
            "op_state": rec.get("op_state"), "log_total": rec.get("log_total"),
            "duration": (t1 - t0) if t0 and t1 else None, "keys_sent": len(res["sent"]),
            "keys_handled": len(rec["handled"]),
            "latencies": [lat for _, lat in pairs],
            # the first 0.2 s: the progress screen is being mounted and painted
            "latencies_after_open": [lat for s, lat in pairs if s - t0 >= 0.2],
            "in_loop": in_loop,
            "ui_step_max_cpu": max((x[3] for x in ui), default=None),
            "ui_step_max_wall": max((x[2] for x in ui), default=None),
            "gc_max_cpu": max((x[3] for x in gcs), default=0.0),
            "vmhwm_mb": rec["vmhwm_mb"], "vmrss_mb": rec["vmrss_mb"], "pane": rec.get("pane"),
            "load": _load(),
        })
    return out


def bench_flood(runs: int, lines: int, engine: bool, work: Path, report: dict[str, Any]) -> None:
    world = local_world(work, "flood-world", lines)
    rows = [
        ("EngineBackend, a real build over LocalTransport (local sh)", flood_runs("flood-local", runs, lines,
                                                                                 world, work)),
        ("EngineBackend over LocalTransport, gc.freeze off", flood_runs("flood-local", runs, lines, world, work,
                                                                        freeze=False)),
    ]
    if engine:
        try:
            from benchmarks.hosts import BenchTestbed

            tb = BenchTestbed(run_up=True)
            try:
                th = tb.start_host("bench-tui-flood")
                cfg = flood_engine_config(th, work, lines)
                rows.append(("EngineBackend, a real build over SSH (testbed host)",
                             flood_runs("flood-engine", runs, lines, str(cfg), work)))
                rows.append(("EngineBackend over SSH, gc.freeze off",
                             flood_runs("flood-engine", runs, lines, str(cfg), work, freeze=False)))
                rows.append(("EngineBackend over SSH, what-if: the transport's reads yield to the loop "
                             "(not in capview yet)",
                             flood_runs("flood-engine", runs, lines, str(cfg), work,
                                        extra_env={"CVB_YIELDING_READS": "1"}, tag="y")))
            finally:
                tb.close()
        except Exception as exc:
            report["errors"].append(f"flood over SSH: {exc}")
    report["flood"] = {name: rs for name, rs in rows}
    loads = [r["load"] for rs in report["flood"].values() for r in rs]
    md = [
        f"### A build printing {lines:,} log lines at full speed, keys pressed meanwhile (real terminal)",
        "",
        f"`x` written to the pty every {KEY_INTERVAL * 1000:.0f} ms while the operation runs; latency = the "
        f"App's action ran - the byte was written (same clock). {runs} run(s) per row, latencies pooled. "
        "\"after open\": keys pressed 0.2 s or more after the deploy started (the progress screen is mounted "
        "and painted by then). \"Longest UI step\": the longest single layout / render / log flush, and the "
        "longest garbage-collector pause, in CPU time (wall time is inflated on a busy machine). \"Queued in "
        "the event loop\": from Textual's input thread parsing the key to the action running. "
        "Targets: a key answered within 100 ms, RSS < 200 MB.",
        "",
        "| source | lines logged | operation took | keys | latency median | p95 | max | max after open "
        "| of which queued in the event loop: median / max | longest UI step (CPU) | longest GC pause (CPU) "
        "| peak RSS (VmHWM) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, rs in rows:
        lat = [x for r in rs for x in r["latencies"]]
        later = [x for r in rs for x in r["latencies_after_open"]]
        loop = [x for r in rs for x in r["in_loop"]]
        dur = [r["duration"] for r in rs if r["duration"]]
        step = max((r["ui_step_max_cpu"] for r in rs if r["ui_step_max_cpu"] is not None), default=None)
        md.append(
            f"| {name} | {rs[0]['log_total']:,} ({rs[0]['op_state']}) | {fmt_s(med(dur))} | {len(lat)} | "
            f"{fmt_s(med(lat), 'ms')} | {fmt_s(pct(lat, 95), 'ms')} | {fmt_s(max(lat) if lat else None, 'ms')} | "
            f"{fmt_s(max(later) if later else None, 'ms')} | "
            f"{fmt_s(med(loop), 'ms')} / {fmt_s(max(loop) if loop else None, 'ms')} | {fmt_s(step, 'ms')} | "
            f"{fmt_s(max(r['gc_max_cpu'] for r in rs), 'ms')} | {max(r['vmhwm_mb'] for r in rs):.0f} MB |")
    md += ["", f"Load average after each run: {', '.join(loads)}."]
    report["tables"].append("\n".join(md))


# =========================================================================== main


def machine() -> dict[str, Any]:
    try:
        from benchmarks.run import machine_info

        return machine_info()
    except Exception as exc:  # pragma: no cover - informational only
        return {"error": str(exc)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.tui_bench")
    p.add_argument("--child", nargs="?", help=argparse.SUPPRESS)
    p.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--signal", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    p.add_argument("--version", default="v2.0.0", help=argparse.SUPPRESS)
    p.add_argument("--only", default="paint,flood,fleet")  # the fleet loads the box most: last
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--hosts", type=int, default=50)
    p.add_argument("--releases", type=int, default=10)
    p.add_argument("--rtt", type=float, default=100.0, help="ms")
    p.add_argument("--lines", type=int, default=100_000)
    p.add_argument("--no-engine-flood", action="store_true", help="the local flood only (no SSH testbed)")
    p.add_argument("--out", type=Path, default=RESULTS / "tui.md")
    args = p.parse_args(argv)
    if args.child:
        return child_main(args.child, args.json, args.config, args.signal, args.lines, args.version)

    only = set(args.only.split(","))
    report: dict[str, Any] = {"tables": [], "errors": [], "machine": machine()}
    t_start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="capview-tui-bench-"))
    try:
        from tests.testbed import testbed_unavailable_reason  # type: ignore
    except Exception:
        sys.path.insert(0, str(TESTS))
        from testbed import testbed_unavailable_reason  # type: ignore
    no_testbed = testbed_unavailable_reason()
    try:
        if "paint" in only:
            print("first paint ...", file=sys.stderr)
            bench_paint(args.runs, work, report)
        if "flood" in only:
            print(f"flood: {args.lines:,} lines ...", file=sys.stderr)
            bench_flood(args.runs, args.lines, not args.no_engine_flood and not no_testbed, work, report)
        if "fleet" in only:
            if no_testbed:
                report["errors"].append(f"fleet skipped: {no_testbed}")
            else:
                print(f"fleet: {args.hosts} hosts x {args.releases} releases at {args.rtt:.0f} ms RTT ...",
                      file=sys.stderr)
                bench_fleet(args.hosts, args.releases, args.rtt, args.runs, work, report)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    m = report["machine"]
    head = [
        "## Dashboard performance (issue 6)",
        "",
        f"Machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores, {m.get('memory', '?')} RAM, "
        f"{m.get('os', '?')}, Python {m.get('python', '?')}, textual {_textual_version()}; commit "
        f"{m.get('commit', '?')}; {m.get('date', '')}; load at start {m.get('load_at_start', '?')}. "
        "Other test sessions may share the machine: each section gives its load average, and the "
        "CPU-time columns are less affected by that than wall times.",
        "",
    ]
    text = "\n".join(head) + "\n" + "\n\n".join(report["tables"])
    if report["errors"]:
        text += "\n\nErrors:\n" + "\n".join(f"* {e}" for e in report["errors"])
    text += f"\n\n_total benchmark time: {time.perf_counter() - t_start:.0f} s_\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    slim = json.loads(json.dumps({k: v for k, v in report.items() if k != "tables"}, default=str))
    args.out.with_suffix(".json").write_text(json.dumps(slim, indent=1))
    print(f"wrote {args.out} and {args.out.with_suffix('.json')}", file=sys.stderr)
    return 1 if report["errors"] else 0


def _textual_version() -> str:
    try:
        from importlib.metadata import version

        return version("textual")
    except Exception:
        return "?"


if __name__ == "__main__":
    raise SystemExit(main())
