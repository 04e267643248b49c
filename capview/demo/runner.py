"""``capview demo``: prepare the sandbox, start the embedded SSH host, seed a
history through the real engine, then open the dashboard (or, ``--headless``,
print the releases) and on the way out stop everything that was started.

The seed goes through exactly what a real host gets: ``load_config`` on the
sandbox's deploy.yaml, ``SshTransport`` over SSH to the embedded server, and
``engine.deploy.release`` (three releases to prod; the third fails its health
check and is rolled back automatically).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request
from pathlib import Path
from typing import Awaitable, Callable, TextIO

from capview import inert, units
from capview.demo.config_text import serve_command
from capview.demo.sandbox import SEED, DemoError, Sandbox, prepare
from capview.errors import CapviewError, EXIT_FAILED, EXIT_OK

OPERATOR = "demo@capview"
STOP_TIMEOUT = 15.0
SETTLE_TIMEOUT = 12.0

ReadyHook = Callable[[Sandbox], "Awaitable[None] | None"]


def _say(out: TextIO, text: str = "") -> None:
    out.write(text + "\n")
    try:
        out.flush()
    except Exception:
        pass


def releases_table(statuses) -> list[str]:
    """Plain text: one row per release (host, version, current marker, state, size, unique)."""
    rows: list[tuple[str, ...]] = [("HOST", "VERSION", "", "STATE", "SIZE", "UNIQUE")]
    notes: list[str] = []
    for st in statuses:
        if not st.reachable:
            notes.append(f"{st.host}: unreachable: {inert.clip(st.error, 400)}")
            continue
        if st.needs_migration:
            notes.append(f"{st.host}: {st.layout} layout (files directly in deploy_path): needs `capview migrate-data`")
        for r in reversed(st.releases):  # newest first, as `capview releases` and the dashboard
            mark = "*" if r.current else ("<" if r.previous else "")
            rows.append((st.host, inert.clip(r.version, 64), mark, inert.clip(r.state, 16),
                         units.size(r.size_bytes), units.size(r.unique_disk_bytes)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.append("(* current, < previous)")
    return lines + notes


def _http_get(url: str, timeout: float = 3.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as e:
        return 0, str(getattr(e, "reason", e))


async def health_report(sandbox: Sandbox, statuses) -> tuple[list[str], bool]:
    """GET each prod app's /health; True when every one answers 200 with its current version."""
    current = {st.host: st.current for st in statuses}
    lines, ok = [], True
    for h in sandbox.env_hosts("prod"):
        code, body = await asyncio.to_thread(_http_get, h.health_url)
        want = current.get(h.name)
        good = code == 200 and body.strip() == want
        ok &= good
        lines.append(f"{h.name}  {h.health_url} -> {code or 'no answer'} {body.strip()[:60]}"
                     + ("" if good else f"  (expected 200 {want})"))
    return lines, ok


def _stop_commands(config, sandbox: Sandbox) -> list[tuple[str, str, str]]:
    """(host name, deploy_path, stop command) for every host of the sandbox config."""
    cmds = []
    if config is not None:
        for env in config.environments:
            for h in env.hosts:
                svc = h.settings.service
                if svc.manager == "command" and svc.stop:
                    cmds.append((h.name, h.settings.deploy_path, svc.stop))
    return cmds


def stop_everything(config, sandbox: Sandbox) -> list[str]:
    """Run each host's stop command (as the engine would: in its deploy_path), then
    stop anything a pid file still names. Synchronous so a second Ctrl-C cannot cut it short."""
    problems = []
    for name, dp, cmd in _stop_commands(config, sandbox):
        if not os.path.isdir(dp):
            continue
        try:
            res = subprocess.run(["sh", "-c", cmd], cwd=dp, capture_output=True, text=True, timeout=STOP_TIMEOUT)
            if res.returncode != 0:
                problems.append(f"{name}: stop failed: {(res.stderr or res.stdout).strip()[:200]}")
        except (OSError, subprocess.TimeoutExpired) as e:
            problems.append(f"{name}: stop failed: {e}")
    sandbox.stop_apps()
    return problems


async def _start_current(ctx, config, sandbox: Sandbox, out: TextIO) -> None:
    """A reused sandbox: start each host's app on its current release, over SSH with the
    engine's own service-start script (a legacy host not yet migrated stays stopped)."""
    from capview.engine.scripts.service import service_start

    hosts = [h for env in config.environments for h in env.hosts
             if (Path(h.settings.deploy_path) / "current").exists()]

    async def start(h) -> None:
        res = await ctx.transport.run(h, service_start(h.settings), timeout=30)
        if not res.ok:
            _say(out, f"  {h.name}: could not start the app: {(res.stderr or res.stdout).strip()[:200]}")

    await asyncio.gather(*(start(h) for h in hosts))


async def seed(ctx, config, sandbox: Sandbox, out: TextIO) -> bool:
    """Deploy the seeded history to prod. True when it came out as designed."""
    from capview.engine.deploy import release

    prod = config.env("prod")
    as_designed = True
    for version, tree in SEED:
        t0 = time.monotonic()
        _say(out, f"  release {version} -> prod ({', '.join(h.name for h in prod.hosts)}) from src/{tree} ...")
        result = await release(ctx, prod, version, source=sandbox.source(tree))
        expect_ok = not tree.endswith("-broken")
        for hf in result.hosts:
            _say(out, f"    {hf.host}: {hf.outcome}: {hf.message}")
        _say(out, f"    {'ok' if result.ok else 'failed'} in {time.monotonic() - t0:.1f}s"
                  + ("" if result.ok == expect_ok else "  (NOT what the demo expected)"))
        as_designed &= result.ok == expect_ok
        if expect_ok and not result.ok:
            break
    return as_designed


def _preload_dashboard() -> None:
    try:
        import capview.tui.app  # noqa: F401
    except Exception:  # reported properly when the dashboard opens
        pass


def _check_terminal() -> None:
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise DemoError("the dashboard needs a terminal (stdin and stdout are not a TTY); use: capview demo --headless")


async def _open_dashboard(config_path: Path, out: TextIO) -> int:
    """Open the dashboard on the sandbox while this loop keeps serving SSH.

    In-process (``App.run_async`` in this event loop) when the TUI offers the
    pieces; otherwise (a sync ``run_app`` owns its own event loop, which cannot
    nest in this one) as a child ``python -m capview -c deploy.yaml ui`` on the
    same terminal.
    """
    try:
        import capview.tui.app as tui_app
    except ImportError as e:
        raise DemoError(
            f"the dashboard is not available in this build ({e}); "
            f"try `capview demo --headless`, or the CLI: capview -c {config_path} releases prod"
        ) from None
    run_async = getattr(tui_app, "run_app_async", None)
    if run_async is not None:
        return int(await run_async(config_path) or 0)
    run_app = getattr(tui_app, "run_app", None)
    if run_app is not None and inspect.iscoroutinefunction(run_app):
        return int(await run_app(config_path) or 0)
    app_cls = getattr(tui_app, "CapviewApp", None)
    try:
        from capview.tui.backend import EngineBackend
    except ImportError:
        EngineBackend = None  # noqa: N806
    if app_cls is not None and EngineBackend is not None:
        backend = EngineBackend(config_path).load()
        return int(await app_cls(backend).run_async() or 0)
    if run_app is None:
        raise DemoError("the dashboard is not available in this build (capview.tui.app has no run_app)")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "capview", "-c", str(config_path), "ui")
    try:
        return await proc.wait()
    except asyncio.CancelledError:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except asyncio.TimeoutError:
                proc.kill()
        raise


async def run_demo(
    demo_dir: Path | None,
    *,
    headless: bool,
    out: TextIO,
    err: TextIO | None = None,
    port: int | None = None,
    on_ready: ReadyHook | None = None,
    serve: bool = False,
) -> int:
    """Run ``capview demo``; returns the exit code. Never raises for a sandbox problem.

    ``demo_dir`` None: a temp dir, deleted afterwards. Otherwise the sandbox is kept
    there and reused next time. ``port``: fixed SSH port (error if taken).
    ``on_ready(sandbox)``: called (and awaited) once the history is seeded and the
    apps are up, before the table/dashboard; tests use it to probe the live apps.
    """
    err = err or sys.stderr
    got: list[int] = []
    served: list[bool] = []
    # --serve runs until stopped: Ctrl-C is its normal end, so it is handled here too
    restore = _cancel_on_signals(got, (signal.SIGINT,) if serve else ())
    try:
        return await _run_demo(demo_dir, headless=headless, out=out, err=err, port=port, on_ready=on_ready,
                               serve=serve, served=served)
    except asyncio.CancelledError:
        if not got:
            raise  # Ctrl-C (asyncio.run turns it into KeyboardInterrupt) or a caller's cancel
        if served:
            _say(out, f"capview demo: stopped ({signal.Signals(got[0]).name}); the hosts and apps are down")
            return EXIT_OK
        _say(err, f"capview demo: stopped by {signal.Signals(got[0]).name}; everything it started was stopped")
        return 128 + got[0]
    finally:
        restore()


def _cancel_on_signals(got: list[int], extra: tuple[int, ...] = ()) -> Callable[[], None]:
    """SIGTERM / SIGHUP (and ``extra``) cancel the demo like Ctrl-C does, so the teardown still runs."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    installed = []

    def handler(sig: int) -> None:
        got.append(sig)
        if task is not None:
            task.cancel()

    if task is not None:
        for sig in (signal.SIGTERM, signal.SIGHUP, *extra):
            try:
                loop.add_signal_handler(sig, handler, sig)
                installed.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):
                pass

    def restore() -> None:
        for sig in installed:
            try:
                loop.remove_signal_handler(sig)
            except (NotImplementedError, RuntimeError, ValueError):
                pass

    return restore


async def serve_forever(sandbox: Sandbox, server, out: TextIO, served: list[bool]) -> None:
    """``--serve``: say how to use the sandbox, then keep its SSH host and apps up until cancelled."""
    from capview.demo.config_text import cli_hints

    _say(out)
    _say(out, f"capview demo: serving until Ctrl-C: SSH host 127.0.0.1:{server.port}, apps "
              + ", ".join(f"{h.name} {h.url}" for h in sandbox.hosts if h.env == "prod"))
    _say(out, "  use it from another terminal, e.g.:")
    for line in cli_hints(sandbox):
        _say(out, f"    {line}")
    served.append(True)  # from here a signal is the normal, clean stop
    await asyncio.Event().wait()


async def _run_demo(demo_dir, *, headless, out, err, port, on_ready, serve=False, served=None) -> int:
    temp = demo_dir is None
    if temp:
        try:
            demo_dir = Path(tempfile.mkdtemp(prefix="capview-demo-"))
        except OSError as e:
            _say(err, f"capview demo: error: cannot create a temporary directory: {e.strerror or e}")
            return EXIT_FAILED
    assert demo_dir is not None
    sandbox: Sandbox | None = None
    server = None
    transport = None
    config = None
    t_start = time.monotonic()
    try:
        from capview.config import load_config
        from capview.demo.server import start_server
        from capview.engine.context import Context
        from capview.engine.status import status
        from capview.remote.ssh import SshTransport

        if not headless and not serve:
            _check_terminal()
        sandbox = prepare(demo_dir, fresh=temp, ssh_port=port)
        for note in sandbox.notes:
            _say(out, f"capview demo: {note}")
        server = await start_server(sandbox.dir, sandbox.ssh_port)
        config = load_config(sandbox.config_path)
        _say(out, f"capview demo: sandbox {sandbox.dir}, SSH host 127.0.0.1:{server.port} (key pinned in known_hosts)")
        transport = SshTransport()
        ctx = Context(transport=transport, clock=time.time, operator=OPERATOR)

        preload = None
        if not headless and not serve:  # import Textual and the dashboard while the seed deploys run
            preload = asyncio.ensure_future(asyncio.to_thread(_preload_dashboard))
        t_seed = time.monotonic()
        if sandbox.seeded():
            _say(out, "capview demo: reusing the seeded sandbox; starting the apps")
            await _start_current(ctx, config, sandbox, out)
            _say(out, f"capview demo: apps started in {time.monotonic() - t_seed:.1f}s "
                      f"(ready {time.monotonic() - t_start:.1f}s after start)")
        else:
            if sandbox.partly_seeded():
                _say(out, "capview demo: the sandbox was only partly seeded; resetting the prod hosts")
                sandbox.reset_prod_hosts()
            _say(out, "capview demo: seeding the release history through the engine over SSH")
            if not await seed(ctx, config, sandbox, out):
                _say(err, "capview demo: error: seeding did not go as designed (see above)")
                return EXIT_FAILED
            sandbox.mark_seeded()
            _say(out, f"capview demo: seeded in {time.monotonic() - t_seed:.1f}s "
                      f"(ready {time.monotonic() - t_start:.1f}s after start)")

        statuses = []
        for env in config.environments:
            statuses += await status(ctx, env)

        if on_ready is not None:
            maybe = on_ready(sandbox)
            if inspect.isawaitable(maybe):
                await maybe

        if serve:
            for line in releases_table(statuses):
                _say(out, line)
            await transport.close()  # users connect with their own CLI
            transport = None
            await serve_forever(sandbox, server, out, served if served is not None else [])
        if headless:
            _say(out)
            for line in releases_table(statuses):
                _say(out, line)
            _say(out)
            lines, ok = await health_report(sandbox, statuses)
            for line in lines:
                _say(out, line)
            _say(out)
            if temp:
                _say(out, "(a temporary sandbox, deleted on exit; `capview demo --dir DIR` keeps it)")
            else:
                _say(out, f"sandbox kept in {sandbox.dir} (config: {sandbox.config_path}); "
                          "the next `capview demo --dir` reuses it")
                _say(out, f"to use it from the CLI, keep its hosts up with: {serve_command(sandbox)}")
            return EXIT_OK if ok else EXIT_FAILED

        if preload is not None:
            await preload
        await transport.close()  # the dashboard opens its own connections
        transport = None
        return await _open_dashboard(sandbox.config_path, out)
    except CapviewError as e:
        _say(err, f"capview demo: error: {e}")
        return e.exit_code
    except Exception as e:  # a bug: still one line (CAPVIEW_DEBUG=1 shows the traceback)
        if os.environ.get("CAPVIEW_DEBUG"):
            traceback.print_exc(file=err)
        _say(err, f"capview demo: error: unexpected {type(e).__name__}: {e} (CAPVIEW_DEBUG=1 shows the traceback)")
        return EXIT_FAILED
    finally:
        await _teardown(sandbox, server, transport, config, temp, demo_dir, err)


def _engine_tasks() -> list[asyncio.Task]:
    """Tasks running engine code (a deploy's shielded switch/health keeps going after Ctrl-C)."""
    me = asyncio.current_task()
    found = []
    for t in asyncio.all_tasks():
        if t is me or t.done():
            continue
        code = getattr(t.get_coro(), "cr_code", None)
        if code is not None and f"capview{os.sep}engine{os.sep}" in code.co_filename:
            found.append(t)
    return found


async def _settle_engine_tasks(err: TextIO) -> None:
    """Let an interrupted deploy finish its switch (or revert) over the still-open SSH host,
    so no host is left half-switched and no app is started after the teardown stopped it."""
    pending = _engine_tasks()
    if not pending:
        return
    _say(err, f"capview demo: letting the switch in progress finish (up to {SETTLE_TIMEOUT:.0f}s) ...")
    try:
        await asyncio.wait(pending, timeout=SETTLE_TIMEOUT)
    except BaseException:  # noqa: BLE001 -- a second Ctrl-C: abandon the wait, keep tearing down
        pass
    for t in pending:
        if t.done() and not t.cancelled():
            t.exception()  # retrieved: no "exception was never retrieved" noise


async def _teardown(sandbox, server, transport, config, temp: bool, demo_dir: Path, err: TextIO) -> None:
    """Stop every app and the SSH host; delete a temp sandbox. Runs on every exit path."""
    await _settle_engine_tasks(err)
    if sandbox is not None:
        for problem in stop_everything(config, sandbox):
            _say(err, f"capview demo: warning: {problem}")
    for closer in (transport, server):
        if closer is not None:
            try:
                await asyncio.wait_for(asyncio.shield(closer.close()), 10)
            except BaseException:  # noqa: BLE001 -- cleanup must go on (a second Ctrl-C included)
                pass
    if sandbox is not None:
        sandbox.stop_apps()  # anything a session started while the host was closing
        sandbox.close()
    if temp:
        shutil.rmtree(demo_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """``python -m capview.demo [--dir DIR] [--headless] [--port N]`` (the CLI's `demo` does the same)."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m capview.demo")
    p.add_argument("--dir", type=Path)
    p.add_argument("--headless", action="store_true")
    p.add_argument("--serve", action="store_true")
    p.add_argument("--port", type=int)
    args = p.parse_args(argv)
    try:
        return asyncio.run(run_demo(args.dir, headless=args.headless, out=sys.stdout, port=args.port,
                                    serve=args.serve))
    except KeyboardInterrupt:
        print("capview demo: interrupted; everything it started was stopped", file=sys.stderr)
        return 130
