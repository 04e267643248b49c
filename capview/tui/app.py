"""The capview dashboard: the App (the engine's backend injected, harlequin style).

Operations (release, rollback, prune, migrate) run in App-level workers: their events
fold into an :class:`Operation`, which screens read; leaving a screen never cancels an
operation. Any worker error reaches one handler, :meth:`CapviewApp.on_worker_state_changed`,
which opens the error modal. The main screen is in screens/main.py.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Awaitable, Callable

from rich.text import Text
from textual.app import App
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from capview.config import Environment
from capview.engine.events import Emit, Event
from capview.engine.model import HostStatus
from capview.errors import CapviewError
from capview.tui.backend import Backend
from capview.tui.commands import CapviewCommands
from capview.tui.operations import LogStream, Operation
from capview.tui.screens.confirm import ConfirmScreen
from capview.tui.screens.deploy_dialog import DeployRequest
from capview.tui.screens.error import ErrorScreen
from capview.tui.screens.main import MainScreen
from capview.tui.text import clean_line
from capview.tui.widgets.host_list import Target

Clock = Callable[[], float]
DEFAULT_REFRESH = 5.0


class OperationChanged(Message):
    """An operation's state changed. Bursts collapse: only the newest pending one is handled."""

    def __init__(self, op: Operation) -> None:
        super().__init__()
        self.op = op

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, OperationChanged) and message.op is self.op


def _stdin_is_tty() -> bool:
    try:
        return os.isatty(sys.__stdin__.fileno())
    except (AttributeError, OSError, ValueError):
        return False


class CapviewApp(App[int]):
    CSS_PATH = Path(__file__).parent / "app.tcss"  # absolute: subclasses live elsewhere
    TITLE = "capview"
    COMMANDS = App.COMMANDS | {CapviewCommands}
    BINDINGS = [
        Binding("ctrl+q", "quit_safely", "Quit", show=False, priority=True, id="capview.quit_now"),
    ]
    # -narrow/-short screens get tighter panes (app.tcss): every screen must work at 80x24
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-tiny"), (20, "-short"), (32, "-tall")]

    def __init__(
        self,
        backend: Backend,
        *,
        clock: Clock | None = None,
        refresh_interval: float = DEFAULT_REFRESH,
        log_flush_interval: float = 0.1,
        max_log_lines: int = 5000,
        animations: bool = True,
        freeze_gc: bool = False,
    ) -> None:
        super().__init__()
        self.backend = backend
        # gc.freeze() once the first frame is up: the objects alive then (modules, classes,
        # widgets, styles: most of the heap) leave the collector's view, so a full collection
        # during a log flood scans only what was made since. Measured (benchmarks/tui_bench.py):
        # the gen-2 pause inside a frame went from ~50-60 ms to ~15-25 ms CPU. Off by default:
        # a test process runs many apps, and frozen garbage is never freed (unfrozen on unmount).
        self.freeze_gc = freeze_gc
        self._gc_frozen = False
        self.clock: Clock = clock or time.time
        self.refresh_interval = refresh_interval
        self.log_flush_interval = log_flush_interval
        self.max_log_lines = max_log_lines
        if not animations:
            self.animation_level = "none"
        self.envs: tuple[Environment, ...] = tuple(backend.environments())
        self.status: dict[str, HostStatus] = {}
        self.history: dict[str, list[dict]] = {}  # host -> its recent history records (oldest first)
        self.activity = LogStream(max_log_lines)
        self.operations: list[Operation] = []
        self.main_screen = MainScreen()

    # -- plumbing

    def get_default_screen(self) -> Screen:
        return self.main_screen

    def env(self, name: str) -> Environment:
        return next(e for e in self.envs if e.name == name)

    def env_info(self, name: str) -> Environment | None:
        return next((e for e in self.envs if e.name == name), None)

    def hosts_of(self, target: Target) -> tuple[str, ...]:
        return (target.host,) if target.host else tuple(h.name for h in self.env(target.env).hosts)

    def default_version(self) -> str:
        try:
            return self.backend.default_version()
        except Exception as exc:  # a failing `git` must not stop the dialog opening
            self.log_activity(f"default version unavailable: {exc}")
            return ""

    def log_activity(self, line: str) -> None:
        self.activity.append(f"{time.strftime('%H:%M:%S', time.localtime(self.clock()))} {line}")

    def set_status(self, status: dict[str, HostStatus]) -> None:
        self.status = status
        self.main_screen.status_updated()

    def refresh_status(self) -> None:
        self.main_screen.action_refresh()

    def on_ready(self) -> None:
        if self.freeze_gc and not self._gc_frozen:
            gc.freeze()
            self._gc_frozen = True
        # A closed terminal (ssh dropped, tmux pane killed, `su` without a controlling tty)
        # sends no SIGHUP in every setup, and Textual's input thread then spins on EOF.
        # Watch for it and exit, so nothing is left burning CPU with the demo's apps running.
        if not self.is_headless and _stdin_is_tty():
            self.set_interval(1.0, self._exit_if_terminal_gone, name="terminal-watch")

    def _exit_if_terminal_gone(self) -> None:
        if not _stdin_is_tty():
            self.exit(1, return_code=1)  # result 1 for run_app; return_code for the process

    async def on_unmount(self) -> None:
        if self._gc_frozen:
            gc.unfreeze()
            self._gc_frozen = False
        try:
            await self.backend.close()
        except Exception:
            pass

    @property
    def last_operation(self) -> Operation | None:
        return self.operations[-1] if self.operations else None

    @property
    def running_operations(self) -> list[Operation]:
        return [op for op in self.operations if op.running]

    # -- one handler for every worker's end (harlequin style)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        op = next((o for o in self.operations if o.worker is worker), None)
        if event.state == WorkerState.CANCELLED and op is not None:
            op.cancelled()
            self.log_activity(op.summary())
            self.notify(op.summary(), title="Cancelled", severity="warning", markup=False)
            self.post_message(OperationChanged(op))
            self.refresh_status()
        elif event.state == WorkerState.ERROR:
            error = worker.error
            if op is not None:
                op.fail(error)  # type: ignore[arg-type]
                self.post_message(OperationChanged(op))
                self.refresh_status()
            if worker.group == "refresh":
                return  # a refresh that failed marks the hosts unreachable; no modal every few seconds
            self.show_error(worker.name or "background task", error)

    def show_error(self, what: str, error: BaseException | None) -> None:
        if isinstance(error, CapviewError):
            title, message, hint, details = f"{what} failed", error.message, error.hint, None
        else:
            title = f"{what} failed"
            message = f"{type(error).__name__}: {error}" if error else "unknown error"
            hint = "This is a bug in capview or a lost connection; the details are below."
            details = "".join(traceback.format_exception(error)) if error else None
        self.log_activity(f"error: {what}: {message}")
        self.push_screen(ErrorScreen(title, message, hint=hint, details=details))

    # -- operations

    def start_operation(
        self,
        kind: str,
        env: str,
        hosts: tuple[str, ...],
        runner: Callable[[Emit], Awaitable[Any]],
        *,
        title: str,
        version: str | None = None,
        dry_run: bool = False,
        show: bool = True,
        skip: dict[str, set[str]] | None = None,
    ) -> Operation:
        op = Operation(kind, env, hosts, version=version, dry_run=dry_run, title=title,
                       max_lines=self.max_log_lines, skip=skip)
        op.mirror = self.activity  # the main screen's pane shows every host's lines too
        self.operations.append(op)
        owner = threading.get_ident()

        def emit(ev: Event) -> None:
            if threading.get_ident() != owner:  # an engine thread: hop onto the loop
                self.call_from_thread(emit, ev)
                return
            if op.apply(ev):
                self.post_message(OperationChanged(op))

        async def run() -> Any:
            # paint the progress screen first: a fast operation must not compete with its mount
            try:
                await asyncio.wait_for(op.ready.wait(), 2.0)
            except asyncio.TimeoutError:
                pass
            result = await runner(emit)
            op.finish(result)
            self.log_activity(op.summary())
            self.notify(op.summary(), title="Finished" if op.state == "ok" else "Failed",
                        severity="information" if op.state == "ok" else "error", timeout=10, markup=False)
            self.post_message(OperationChanged(op))
            self.refresh_status()
            return result

        self.log_activity(f"started: {title}")
        op.ready = asyncio.Event()
        op.worker = self.run_worker(run(), name=title, group=f"op-{kind}", exclusive=False, exit_on_error=False)
        if show:
            from capview.tui.screens.deploy_progress import ProgressScreen

            self.push_screen(ProgressScreen(op))  # it sets op.ready once painted
        else:
            op.ready.set()
        return op

    def on_operation_changed(self, message: OperationChanged) -> None:
        for screen in self.screen_stack:
            handler = getattr(screen, "operation_changed", None)
            if handler is not None:
                handler(message.op)

    def _no_build(self, env: str, hosts: tuple[str, ...]) -> dict[str, set[str]]:
        """Hosts with no build configured: their progress shows no build phase."""
        e = self.env(env)
        return {h.name: {"build"} for h in e.hosts if h.name in hosts and h.settings.build is None}

    def start_release(self, req: DeployRequest) -> Operation:
        target = Target(req.env, req.host)
        hosts = self.hosts_of(target)
        title = f"release {req.version} → {target.label}" + (f" ({req.strategy})" if not req.host else "")
        return self.start_operation(
            "release", req.env, hosts,
            lambda emit: self.backend.release(req.env, req.version, host=req.host, dry_run=req.dry_run,
                                              strategy=req.strategy, emit=emit),
            title=title, version=req.version, dry_run=req.dry_run, skip=self._no_build(req.env, hosts),
        )

    def start_rollback(self, target: Target, to: str, *, force: bool = False,
                       restore_data: bool = False) -> Operation:
        return self.start_operation(
            "rollback", target.env, self.hosts_of(target),
            lambda emit: self.backend.rollback(target.env, to=to, host=target.host, force=force,
                                               restore_data=restore_data, emit=emit),
            title=f"rollback {target.label} → {to}" + (" with its data" if restore_data else ""), version=to,
        )

    def start_restart(self, target: Target) -> Operation:
        return self.start_operation(
            "restart", target.env, self.hosts_of(target),
            lambda emit: self.backend.restart(target.env, host=target.host, emit=emit),
            title=f"restart {target.label}",
        )

    def start_prune(self, target: Target, keep: int | None) -> Operation:
        return self.start_operation(
            "prune", target.env, self.hosts_of(target),
            lambda emit: self.backend.prune(target.env, keep=keep, host=target.host, emit=emit),
            title=f"prune {target.label}" + (f" (keep {keep})" if keep is not None else ""),
        )

    def start_migrate(self, target: Target, *, dry_run: bool, rewrite_unit: bool = False,
                      show: bool = False) -> Operation:
        return self.start_operation(
            "migrate", target.env, self.hosts_of(target),
            lambda emit: self.backend.migrate(target.env, host=target.host, dry_run=dry_run,
                                              rewrite_unit=rewrite_unit, emit=emit),
            title=f"migrate {target.label}" + (" (dry run)" if dry_run else ""), dry_run=dry_run, show=show,
        )

    def cancel_operation(self, op: Operation) -> bool:
        """Cancel ``op`` if no host has begun its switch; otherwise say why not. Returns True if cancelled."""
        if not op.running:
            self.notify(f"{op.title} has already finished ({op.state}).", markup=False)
            return False
        if op.switched:
            hosts = ", ".join(op.switched_hosts()) or "a host"
            why = (f"{hosts} has already begun switching to {op.version or 'the new release'}. Stopping now "
                   "could leave a service stopped or hosts on different releases; capview lets the switch "
                   "and health check finish (an unhealthy release is switched back automatically). "
                   "Roll back with r afterwards if you need to.")
            self.log_activity(f"cancel refused: {why}")
            self.notify(why, title="Cancel refused: past the switch", severity="warning", timeout=10, markup=False)
            return False
        if op.worker is not None:
            self.log_activity(f"cancelling: {op.title}")
            op.worker.cancel()
        return True

    async def unlock(self, target: Target, *, force: bool = False) -> None:
        result = await self.backend.unlock(target.env, host=target.host, force=force)
        for h in result.hosts:
            self.log_activity(f"{h.host}: {h.message}")
        self.notify(f"Unlocked {target.label}." if not force else f"Lock on {target.label} removed (forced).",
                    markup=False)
        self.refresh_status()

    # -- app actions

    def action_help(self) -> None:
        from capview.tui.screens.help import help_screen

        self.push_screen(help_screen(self))

    async def action_quit_safely(self) -> None:
        running = self.running_operations
        if not running:
            self.exit(0)
            return
        switched = [op for op in running if op.switched]
        if switched:
            self.notify(f"{switched[0].title} is past its switch; wait for it to finish before quitting.",
                        title="Not now", severity="warning", markup=False)
            return

        def done(ok: bool | None) -> None:
            if ok:
                for op in running:
                    self.cancel_operation(op)
                self.exit(0)

        self.push_screen(ConfirmScreen(
            "Quit while an operation runs?",
            Text(f"{clean_line(running[0].title)} is still running (before its switch). Quitting cancels it; "
                 "nothing will have changed on the hosts."),
            confirm_label="Cancel it and quit", danger=True,
        ), done)


def parse_interval(text: str | float | None) -> float:
    """``5s``, ``500ms``, ``2m``, ``10`` (seconds) -> seconds; at least 0.5 s. A one-line UsageError otherwise."""
    from capview.errors import UsageError

    if text is None:
        return DEFAULT_REFRESH
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        s = text.strip().lower()
        factor = 1.0
        for suffix, f in (("ms", 0.001), ("s", 1.0), ("m", 60.0)):
            if s.endswith(suffix):
                s, factor = s[: -len(suffix)], f
                break
        try:
            value = float(s) * factor
        except ValueError:
            raise UsageError(f"--refresh {text!r}: expected a duration like 5s, 500ms or 2m") from None
    if not value >= 0.5:
        raise UsageError(f"--refresh {text!r}: the interval must be at least 0.5s (every refresh runs one "
                         "script per host)")
    return value


def _make_app(config_path: Path, backend: Backend | None, clock: Clock | None,
              refresh: float | str | None) -> "CapviewApp | int":
    if backend is None:
        from capview.tui.backend import EngineBackend

        try:
            backend = EngineBackend(config_path, clock=clock).load()
        except CapviewError as exc:
            print(f"capview: {exc}", file=sys.stderr)
            return exc.exit_code
    try:
        interval = parse_interval(refresh)
    except CapviewError as exc:
        print(f"capview: {exc}", file=sys.stderr)
        return exc.exit_code
    return CapviewApp(backend, clock=clock, freeze_gc=True, refresh_interval=interval)


def run_app(config_path: Path, *, backend: Backend | None = None, clock: Clock | None = None,
            refresh: float | str | None = None) -> int:
    """Open the dashboard (blocking). Config errors are reported before the UI starts."""
    app = _make_app(config_path, backend, clock, refresh)
    if isinstance(app, int):
        return app
    return int(app.run() or 0)


async def run_app_async(config_path: Path, *, backend: Backend | None = None, clock: Clock | None = None,
                        refresh: float | str | None = None) -> int:
    """The same, inside a running event loop (``capview demo`` keeps serving SSH on it)."""
    app = _make_app(config_path, backend, clock, refresh)
    if isinstance(app, int):
        return app
    return int(await app.run_async() or 0)
