"""The capview dashboard: the App (backend injected, harlequin style) and the main screen.

Data flows one way: a refresh worker asks the backend for every environment's
``HostStatus`` (hosts fetched concurrently), then the host list and the releases
table update in place. Operations (release, rollback, prune, migrate) run in
App-level workers: their events fold into an :class:`Operation`, which screens
read; leaving a screen never cancels an operation. Any worker error reaches one
handler, :meth:`CapviewApp.on_worker_state_changed`, which opens the error modal.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import os
import sys
import time
import traceback
from functools import partial
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable

from rich.text import Text
from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Header, Input, Static
from textual.worker import Worker, WorkerState

from capview.engine.events import Emit, Event
from capview.engine.model import HostStatus
from capview.errors import CapviewError, LockHeld
from capview.tui.backend import Backend, EnvInfo
from capview.tui.operations import LogStream, Operation
from capview.tui.screens.confirm import ConfirmScreen
from capview.tui.screens.deploy_dialog import DeployDialog, DeployRequest
from capview.tui.screens.deploy_progress import ProgressScreen
from capview.tui.screens.error import ErrorScreen
from capview.tui.screens.help import HelpScreen
from capview.tui.text import clean_line, human_age, human_bytes
from capview.tui.widgets.host_list import HostList, Target
from capview.tui.widgets.log_pane import LogPane
from capview.tui.widgets.releases_table import ReleaseRow, ReleasesTable, rows_for

Clock = Callable[[], float]


class OperationChanged(Message):
    """An operation's state changed. Bursts collapse: only the newest pending one is handled."""

    def __init__(self, op: Operation) -> None:
        super().__init__()
        self.op = op

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, OperationChanged) and message.op is self.op


# --------------------------------------------------------------------------- command palette


class CapviewCommands(Provider):
    """Every action of the screen the palette was opened on, plus the App's own."""

    def _commands(self) -> list[tuple[str, str, Callable[[], Any]]]:
        screen = self.screen
        out: list[tuple[str, str, Callable[[], Any]]] = []
        seen: set[str] = set()
        sources: list[tuple[Any, Iterable[Any]]] = [(screen, getattr(screen, "BINDINGS", ())),
                                                     (self.app, getattr(self.app, "BINDINGS", ()))]
        for target, bindings in sources:
            for b in bindings:
                if not isinstance(b, Binding) or not b.description or b.action in seen:
                    continue
                seen.add(b.action)
                key = self.app.get_key_display(b)
                help_text = getattr(target, "COMMAND_HELP", {}).get(b.action, "")
                out.append((f"{b.description}  [{key}]", help_text, partial(target.run_action, b.action)))
        return out

    async def discover(self) -> Hits:
        for title, help_text, callback in self._commands():
            yield DiscoveryHit(Text(title), callback, text=title, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, callback in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, text=title, help=help_text)


# --------------------------------------------------------------------------- main screen


class MainScreen(Screen[None]):
    BINDINGS = [
        Binding("d", "deploy", "Deploy", id="capview.deploy"),
        Binding("r", "rollback", "Rollback", id="capview.rollback"),
        Binding("p", "prune", "Prune", id="capview.prune"),
        Binding("m", "migrate", "Migrate", id="capview.migrate"),
        Binding("i", "inspect", "Inspect", id="capview.inspect", key_display="i/enter"),
        Binding("u", "unlock", "Unlock", id="capview.unlock"),
        Binding("slash", "filter", "Filter", id="capview.filter"),
        Binding("R", "refresh", "Refresh", id="capview.refresh", key_display="R"),
        Binding("o", "operation", "Progress", id="capview.progress", show=False),
        Binding("question_mark", "app.help", "Help", id="capview.help"),
        Binding("q", "app.quit_safely", "Quit", id="capview.quit"),
        Binding("escape", "clear_filter", "Clear filter", show=False, id="capview.clear_filter"),
    ]
    COMMAND_HELP = {
        "deploy": "Release a version to an environment or one host",
        "rollback": "Switch the selected host(s) to the highlighted release",
        "prune": "Delete old releases beyond keep_releases; pin/unpin",
        "migrate": "Move a legacy in-place layout to releases/ + shared/",
        "inspect": "Manifest, files, build.log, health.log, compare",
        "unlock": "Remove a stale deploy lock",
        "filter": "Filter hosts and releases",
        "refresh": "Fetch every host's status now",
        "operation": "Show the last operation's progress",
    }

    def __init__(self) -> None:
        super().__init__(id="main")
        self.target: Target | None = None
        self._timer: Any = None
        self._errors: dict[str, str] = {}  # host/env -> last error shown (notify once per change)
        self._loaded = False

    @property
    def capp(self) -> "CapviewApp":
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="main-panes"):
            with Vertical(id="left"):
                yield HostList(list(self.capp.envs), id="hosts")
                yield Static(id="host-detail")
            with Vertical(id="right"):
                yield Static(id="releases-title")
                yield ReleasesTable(id="releases")
        yield Input(placeholder="filter hosts and releases (enter keeps, escape clears)", id="filter")
        yield LogPane(id="activity", stream=self.capp.activity, max_lines=self.capp.max_log_lines,
                      flush_interval=self.capp.log_flush_interval)
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = self.capp.backend.label
        self.query_one("#left").border_title = "hosts"
        self.query_one("#right").border_title = "releases"
        self.query_one("#activity").border_title = "activity"
        self.query_one("#filter", Input).display = False
        self.query_one("#releases-title", Static).update(Text("loading…", style="dim"))
        self.query_one("#host-detail", Static).update(Text("fetching status…", style="dim"))
        hosts = self.query_one(HostList)
        hosts.focus()
        self._timer = self.set_interval(self.capp.refresh_interval, self._tick, name="refresh")
        self.action_refresh()

    # -- refresh loop (paused while another screen or a modal is on top)

    def on_screen_suspend(self) -> None:
        if self._timer is not None:
            self._timer.pause()

    def on_screen_resume(self) -> None:
        if self._timer is not None:
            self._timer.resume()
            if self._loaded:
                self.action_refresh()

    def _tick(self) -> None:
        if self.app.screen is self:
            self.action_refresh()

    def action_refresh(self) -> None:
        self.capp.run_worker(self._fetch, name="refresh", group="refresh", exclusive=True, exit_on_error=False)

    async def _fetch(self) -> None:
        app = self.capp
        envs = list(app.envs)
        results = await asyncio.gather(*(app.backend.status(e.name) for e in envs), return_exceptions=True)
        status: dict[str, HostStatus] = {}
        for env, result in zip(envs, results):
            if isinstance(result, asyncio.CancelledError):
                raise result
            if isinstance(result, BaseException):
                msg = clean_line(str(result) or type(result).__name__)
                for h in env.hosts:
                    status[h] = HostStatus(host=h, env=env.name, reachable=False, error=msg)
                continue
            for st in result:
                status[st.host] = st
        app.set_status(status)

    def status_updated(self) -> None:
        """Called by the App after every refresh: update everything in place."""
        app = self.capp
        hosts = self.query_one(HostList)
        hosts.update_status(app.status)
        for name, st in app.status.items():
            key, err = name, (None if st.reachable else (st.error or "unreachable"))
            if err and self._errors.get(key) != err:
                app.log_activity(f"{name}: unreachable: {err}")
                if self._loaded:
                    app.notify(f"{name}: {err}", title="Host unreachable", severity="warning", markup=False)
            if err is None and self._errors.get(key):
                app.log_activity(f"{name}: reachable again")
            self._errors[key] = err or ""
        if not self._loaded:
            self._loaded = True
            if hosts.target is None:
                hosts.select_target(None)
        self._show_target(reset=False)

    # -- selection

    @on(HostList.Selected)
    def _host_selected(self, event: HostList.Selected) -> None:
        changed = event.target != self.target
        self.target = event.target
        self._show_target(reset=changed)

    def _statuses(self, target: Target | None) -> list[HostStatus]:
        if target is None:
            return []
        env = self.capp.env_info(target.env)
        names = [target.host] if target.host else list(env.hosts if env else ())
        return [self.capp.status[n] for n in names if n in self.capp.status]

    def _show_target(self, *, reset: bool) -> None:
        target = self.target
        table = self.query_one(ReleasesTable)
        title = self.query_one("#releases-title", Static)
        detail = self.query_one("#host-detail", Static)
        if target is None:
            return
        statuses = self._statuses(target)
        now = self.capp.clock()
        table.show(rows_for(statuses), now, reset=reset)
        t = Text()
        t.append(target.label, style="bold")
        if target.host is None:
            reachable = sum(1 for s in statuses if s.reachable)
            t.append(f"  ·  {reachable}/{len(statuses) or len(self._env_hosts(target))} hosts reachable"
                     f"  ·  actions apply to every host", style="dim")
        else:
            st = self.capp.status.get(target.host)
            if st is not None and st.reachable:
                t.append(f"  ·  {len(st.releases)} releases  ·  layout {st.layout}", style="dim")
                if st.service.condition != "unknown":  # issue 16
                    t.append(f"  ·  service {clean_line(st.service.summary)}",
                             style="bold red" if st.service.down else "dim")
        title.update(t)
        detail.update(self._detail(target, statuses, now))

    def _env_hosts(self, target: Target) -> tuple[str, ...]:
        env = self.capp.env_info(target.env)
        return env.hosts if env else ()

    def _detail(self, target: Target, statuses: list[HostStatus], now: float) -> Text:
        t = Text()
        if target.host is None:
            env = self.capp.env_info(target.env)
            if env is not None:
                t.append(f"{env.name}", style="bold")
                t.append(f"  strategy {env.strategy}, keep {env.keep_releases}\n", style="dim")
            for st in statuses:
                t.append_text(self._host_line(st))
            return t
        st = self.capp.status.get(target.host)
        if st is None:
            return Text("fetching status…", style="dim")
        t.append(clean_line(st.host), style="bold")
        t.append(f"  ({clean_line(st.env)})\n", style="dim")
        if not st.reachable:
            t.append("unreachable: ", style="bold red")
            t.append(clean_line(st.error or "unknown error"), style="red")
            return t
        t.append("current  ", style="dim")
        t.append(clean_line(st.current) if st.current else "none", style="cyan")
        t.append("\nprevious ", style="dim")
        t.append(clean_line(st.previous) if st.previous else "none")
        if st.free_bytes is not None:
            t.append("\nfree     ", style="dim")
            t.append(human_bytes(st.free_bytes))
        if st.lock is not None:
            lk = st.lock
            t.append("\nlocked by ", style="bold yellow")
            t.append(clean_line(lk.operator), style="yellow")
            t.append(f"\n  {clean_line(lk.operation)}"
                     + (f" {clean_line(lk.version)}" if lk.version else "")
                     + f", pid {lk.pid}, since {human_age(now - lk.started)}"
                     + f"\n  heartbeat {human_age(now - lk.heartbeat)}", style="yellow")
        if st.needs_migration:
            t.append("\nlayout ", style="dim")
            t.append(f"{st.layout}: needs migration (m)", style="magenta")
        return t

    def _host_line(self, st: HostStatus) -> Text:
        t = Text()
        if not st.reachable:
            t.append("✗ ", style="red")
            t.append(clean_line(st.host), style="red")
            t.append(": " + clean_line(st.error or "unreachable") + "\n", style="dim red")
        else:
            t.append("● ", style="green")
            t.append(clean_line(st.host))
            t.append("  " + (clean_line(st.current) if st.current else "no current") + "\n", style="cyan")
        return t

    @property
    def highlighted(self) -> ReleaseRow | None:
        return self.query_one(ReleasesTable).highlighted

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if isinstance(event.data_table, ReleasesTable):
            event.stop()
            self.action_inspect()

    # -- filter

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.query_one(HostList).set_filter(event.value.strip())
        self.query_one(ReleasesTable).set_filter(event.value.strip(), self.capp.clock())

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        box = self.query_one("#filter", Input)
        if not box.value:
            box.display = False
        self.query_one(ReleasesTable).focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        if box.display:
            box.value = ""
            box.display = False
            self.query_one(HostList).focus()

    # -- actions

    def _need_target(self) -> Target | None:
        if self.target is None:
            self.app.notify("Select an environment or a host first.", severity="warning")
        return self.target

    def action_deploy(self) -> None:
        target = self.target or Target(self.capp.envs[0].name)

        def done(req: DeployRequest | None) -> None:
            if req is not None:
                self.capp.start_release(req)

        self.app.push_screen(
            DeployDialog(list(self.capp.envs), env=target.env, host=target.host,
                         version=self.capp.default_version()),
            done,
        )

    def action_rollback(self) -> None:
        target = self._need_target()
        row = self.highlighted
        if target is None:
            return
        if row is None:
            self.app.notify("Highlight the release to roll back to.", severity="warning")
            return
        to = row.version
        statuses = [s for s in self._statuses(target) if s.reachable]
        if not statuses:
            self.app.notify(f"{target.label}: no reachable host.", severity="error")
            return
        if all(s.current == to for s in statuses):
            self.app.notify(f"{to} is already current on {target.label}.", markup=False)
            return
        env = self.capp.env_info(target.env)
        image = env.image if env else None
        failed = row.info.state == "failed"
        body = Text()
        hosts_all = [target.host] if target.host else list(env.hosts if env else ())
        body.append("Hosts   ", style="dim")
        body.append(", ".join(clean_line(h) for h in hosts_all), style="bold")
        unreachable = [h for h in hosts_all if h not in {s.host for s in statuses}]
        for st in statuses:
            body.append(f"\n{clean_line(st.host):<8}", style="dim")
            body.append(clean_line(st.current) if st.current else "none", style="bold")
            body.append("  →  ")
            body.append(clean_line(to), style="bold green")
            if not any(r.version == to for r in st.releases):
                body.append("  (not on this host: it will fail there)", style="red")
        body.append("\nImage   ", style="dim")
        body.append(f"{clean_line(image)}:{clean_line(to)}" if image else "no image configured", style="cyan")
        body.append(" → retagged :current" if image else "")
        if unreachable:
            body.append(f"\n\n{', '.join(unreachable)} unreachable: it will fail there.", style="yellow")
        if failed:
            body.append(f"\n\n{to} failed its health check"
                        + (f" ({clean_line(row.info.error)})" if row.info.error else "")
                        + ". Rolling back to it forces it.", style="bold red")
        body.append("\n\nNothing is copied: stop, atomic symlink switch, retag, start, health check.", style="dim")

        def done(ok: bool | None) -> None:
            if ok:
                self.capp.start_rollback(target, to, force=failed)

        self.app.push_screen(
            ConfirmScreen(f"Roll back {target.label} to {to}?", body,
                          confirm_label="Roll back", danger=failed, id="rollback-confirm"),
            done,
        )

    def action_prune(self) -> None:
        target = self._need_target()
        if target is None:
            return
        from capview.tui.screens.prune import PruneScreen

        self.app.push_screen(PruneScreen(target))

    def action_migrate(self) -> None:
        target = self._need_target()
        if target is None:
            return
        from capview.tui.screens.migrate import MigrateScreen

        self.app.push_screen(MigrateScreen(target))

    def action_inspect(self) -> None:
        target = self._need_target()
        row = self.highlighted
        if target is None:
            return
        if row is None:
            self.app.notify("Highlight a release to inspect.", severity="warning")
            return
        statuses = [s for s in self._statuses(target) if s.reachable]
        st = next((s for s in statuses if any(r.version == row.version for r in s.releases)), None)
        if st is None:
            self.app.notify(f"{row.version}: not on any reachable host.", severity="warning", markup=False)
            return
        from capview.tui.screens.inspect import InspectScreen

        versions = [r.version for r in rows_for([st])]  # newest first
        self.app.push_screen(InspectScreen(st.env, st.host, row.info, versions))

    def action_unlock(self) -> None:
        target = self._need_target()
        if target is None:
            return
        locked = [s for s in self._statuses(target) if s.reachable and s.lock is not None]
        if not locked:
            self.app.notify(f"{target.label}: no lock is held.")
            return
        now = self.capp.clock()
        body = Text()
        for st in locked:
            lk = st.lock
            assert lk is not None
            body.append(f"{clean_line(st.host)}: ", style="bold")
            body.append(clean_line(lk.operator), style="yellow")
            body.append(f"  {clean_line(lk.operation)}" + (f" {clean_line(lk.version)}" if lk.version else ""))
            body.append(f"\n  pid {lk.pid}, started {human_age(now - lk.started)}, "
                        f"heartbeat {human_age(now - lk.heartbeat)}\n", style="dim")
        body.append("\nA lock is removed only when its heartbeat is stale and its process is gone;"
                    " otherwise you will be asked again before forcing.", style="dim")

        def done(ok: bool | None) -> None:
            if ok:
                self.capp.run_worker(self.capp.unlock(target), name=f"unlock {target.label}", group="ops",
                                     exit_on_error=False)

        self.app.push_screen(ConfirmScreen(f"Unlock {target.label}?", body, confirm_label="Unlock"), done)

    def action_operation(self) -> None:
        op = self.capp.last_operation
        if op is None:
            self.app.notify("No operation has run yet.")
            return
        self.app.push_screen(ProgressScreen(op))

    def operation_changed(self, op: Operation) -> None:
        pass


# --------------------------------------------------------------------------- the app


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

    def __init__(
        self,
        backend: Backend,
        *,
        clock: Clock | None = None,
        refresh_interval: float = 5.0,
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
        self.envs: tuple[EnvInfo, ...] = tuple(backend.environments())
        self.status: dict[str, HostStatus] = {}
        self.activity = LogStream(max_log_lines)
        self.operations: list[Operation] = []
        self.main_screen = MainScreen()

    # -- plumbing

    def get_default_screen(self) -> Screen:
        return self.main_screen

    def env_info(self, name: str) -> EnvInfo | None:
        return next((e for e in self.envs if e.name == name), None)

    def default_version(self) -> str:
        try:
            return self.backend.default_version()
        except Exception as exc:  # a failing `git` must not stop the dialog opening
            self.log_activity(f"default version unavailable: {exc}")
            return ""

    def log_activity(self, line: str) -> None:
        stamp = time.strftime("%H:%M:%S", time.gmtime(self.clock()))  # UTC: same on every machine
        self.activity.append(f"{stamp} {line}")

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
    ) -> Operation:
        op = Operation(kind, env, hosts, version=version, dry_run=dry_run, title=title,
                       max_lines=self.max_log_lines)
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
            self.push_screen(ProgressScreen(op))  # it sets op.ready once painted
        else:
            op.ready.set()
        return op

    def on_operation_changed(self, message: OperationChanged) -> None:
        for screen in self.screen_stack:
            handler = getattr(screen, "operation_changed", None)
            if handler is not None:
                handler(message.op)

    def start_release(self, req: DeployRequest) -> Operation:
        env = self.env_info(req.env)
        hosts = (req.host,) if req.host else (env.hosts if env else ())
        where = req.host or req.env
        title = f"release {req.version} → {where}" + (f" ({req.strategy})" if not req.host else "")
        return self.start_operation(
            "release", req.env, hosts,
            lambda emit: self.backend.release(req.env, req.version, host=req.host, dry_run=req.dry_run,
                                              strategy=req.strategy, emit=emit),
            title=title, version=req.version, dry_run=req.dry_run,
        )

    def start_rollback(self, target: Target, to: str, *, force: bool = False) -> Operation:
        env = self.env_info(target.env)
        hosts = (target.host,) if target.host else (env.hosts if env else ())
        return self.start_operation(
            "rollback", target.env, hosts,
            lambda emit: self.backend.rollback(target.env, to=to, host=target.host, force=force, emit=emit),
            title=f"rollback {target.label} → {to}", version=to,
        )

    def start_prune(self, target: Target, keep: int | None) -> Operation:
        env = self.env_info(target.env)
        hosts = (target.host,) if target.host else (env.hosts if env else ())
        return self.start_operation(
            "prune", target.env, hosts,
            lambda emit: self.backend.prune(target.env, keep=keep, host=target.host, emit=emit),
            title=f"prune {target.label}" + (f" (keep {keep})" if keep is not None else ""),
        )

    def start_migrate(self, target: Target, *, dry_run: bool, rewrite_unit: bool = False,
                      show: bool = False) -> Operation:
        env = self.env_info(target.env)
        hosts = (target.host,) if target.host else (env.hosts if env else ())
        return self.start_operation(
            "migrate", target.env, hosts,
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

    async def unlock(self, target: Target) -> None:
        try:
            await self.backend.unlock(target.env, host=target.host)
        except LockHeld as exc:
            if await self.push_screen_wait(ConfirmScreen(
                "The lock is live", Text(f"{exc.message}\n\nForce removal anyway? Only do this if you know "
                                         "that operation is dead.", style=""),
                confirm_label="Force unlock", danger=True,
            )):
                await self.backend.unlock(target.env, host=target.host, force=True)
            else:
                return
        self.log_activity(f"unlocked {target.label}")
        self.notify(f"Unlocked {target.label}.", markup=False)
        self.refresh_status()

    # -- app actions

    def action_help(self) -> None:
        from capview.tui.screens.inspect import InspectScreen
        from capview.tui.screens.migrate import MigrateScreen
        from capview.tui.screens.prune import PruneScreen

        sections = [
            ("Main screen", MainScreen.BINDINGS),
            ("Deploy / rollback progress", ProgressScreen.BINDINGS),
            ("Prune", PruneScreen.BINDINGS),
            ("Migrate", MigrateScreen.BINDINGS),
            ("Inspect", InspectScreen.BINDINGS),
            ("Dialogs", ConfirmScreen.BINDINGS),
        ]
        self.push_screen(HelpScreen(sections, self.get_key_display))

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
            Text(f"{running[0].title} is still running (before its switch). Quitting cancels it; "
                 "nothing will have changed on the hosts."),
            confirm_label="Cancel it and quit", danger=True,
        ), done)


def _make_app(config_path: Path, backend: Backend | None, clock: Clock | None) -> "CapviewApp | int":
    import sys

    if backend is None:
        from capview.tui.backend import EngineBackend

        try:
            backend = EngineBackend(config_path, clock=clock).load()
        except CapviewError as exc:
            print(f"capview: {exc}", file=sys.stderr)
            return exc.exit_code
    return CapviewApp(backend, clock=clock, freeze_gc=True)


def run_app(config_path: Path, *, backend: Backend | None = None, clock: Clock | None = None) -> int:
    """Open the dashboard (blocking). Config errors are reported before the UI starts."""
    app = _make_app(config_path, backend, clock)
    if isinstance(app, int):
        return app
    return int(app.run() or 0)


async def run_app_async(config_path: Path, *, backend: Backend | None = None, clock: Clock | None = None) -> int:
    """The same, inside a running event loop (``capview demo`` keeps serving SSH on it)."""
    app = _make_app(config_path, backend, clock)
    if isinstance(app, int):
        return app
    return int(await app.run_async() or 0)
