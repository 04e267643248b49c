"""The main screen: hosts by environment, the selected target's releases, activity.

Data flows one way: a refresh worker asks the backend for every environment's
``HostStatus`` (hosts concurrently) and the recent history; the host list, the
releases table and the side panel update in place. The next refresh is scheduled when
the previous one has finished (dolphie's WorkerManager idea), never on a fixed beat, and
waits while another screen is on top. Actions open dialogs (screens/dialogs.py) and
start operations on the App, so leaving this screen never cancels one.
"""

from __future__ import annotations

import asyncio
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Header, Input, Static

from capview.engine.model import HostStatus
from capview.engine.split import Split, env_split
from capview.tui.screens import dialogs
from capview.tui.text import ago, clean_line, duration, plural, size, stamp, word
from capview.tui.widgets.footer import CapviewFooter, sync_bindings
from capview.tui.widgets.host_list import HostList, Target
from capview.tui.widgets.log_pane import LogPane
from capview.tui.widgets.phase_table import SPINNER
from capview.tui.widgets.releases_table import ReleaseRow, ReleasesTable, rows_for

ACTIVITY_BACKLOG = 12  # history records shown in the activity pane when the dashboard opens
SWITCHING_OPS = ("release", "rollback", "migrate")


def history_line(rec: dict, now: float) -> str:
    """One activity line for a history record (host text made inert by the pane)."""
    at = rec.get("at")
    when = stamp(at) if isinstance(at, (int, float)) and now - at < 86_400 else (
        f"{ago(now - at)}" if isinstance(at, (int, float)) else "?")
    parts = [when, str(rec.get("host", "?")), str(rec.get("op", "?"))]
    version = rec.get("to") if rec.get("op") == "rollback" else rec.get("version")
    if version:
        parts.append(str(version))
    parts.append(word(str(rec.get("outcome", ""))) or "?")
    if rec.get("operator"):
        parts.append(f"by {rec['operator']}")
    if isinstance(rec.get("downtime"), (int, float)):
        parts.append(f"downtime {duration(rec['downtime'])}")
    if isinstance(rec.get("freed"), int):
        parts.append(f"freed {size(rec['freed'])}")
    if rec.get("error"):
        parts.append(f"({rec['error']})")
    return " ".join(parts)


def last_switch(records: list[dict]) -> dict | None:
    """The host's last record that changed what is live (release, rollback, migrate)."""
    return next((r for r in reversed(records) if r.get("op") in SWITCHING_OPS
                 and r.get("outcome") in ("ok", "rolled_back")), None)


class MainScreen(Screen[None]):
    BINDINGS = [
        Binding("d", "deploy", "Deploy", id="capview.deploy"),
        Binding("r", "rollback", "Rollback", id="capview.rollback"),
        Binding("i", "inspect", "Inspect", id="capview.inspect"),
        Binding("h", "history", "History", id="capview.history"),
        Binding("t", "pin", "Pin", id="capview.pin"),
        Binding("t", "unpin", "Unpin", id="capview.unpin"),
        Binding("p", "prune", "Prune", id="capview.prune"),
        Binding("m", "migrate", "Migrate", id="capview.migrate"),
        Binding("u", "unlock", "Unlock", id="capview.unlock"),
        Binding("s", "restart", "Restart", id="capview.restart"),
        Binding("c", "converge", "Converge", id="capview.converge"),
        Binding("l", "logs", "Logs", id="capview.logs"),
        Binding("slash", "filter", "Filter", id="capview.filter"),
        Binding("R", "refresh", "Refresh", id="capview.refresh", key_display="R"),
        Binding("o", "operation", "Progress", id="capview.progress"),
        Binding("tab", "app.focus_next", show=False),
        Binding("question_mark", "app.help", "Help", id="capview.help"),
        Binding("q", "app.quit_safely", "Quit", id="capview.quit"),
        Binding("escape", "clear_filter", "Clear filter", show=False, id="capview.clear_filter"),
    ]
    FOOTER_KEEP = ["deploy", "rollback", "converge", "inspect", "history", "pin", "unpin", "unlock", "migrate", "filter", "prune",
                   "logs", "restart", "refresh", "operation"]
    COMMAND_HELP = {
        "deploy": "Release a version to an environment or one host",
        "rollback": "Switch the selected host(s) to the highlighted release",
        "inspect": "Files, manifest, build.log, health.log, compare with a diff (also enter)",
        "history": "Who deployed what, when, how long, downtime, with a plot",
        "pin": "Pin the highlighted release: prune never deletes it",
        "unpin": "Unpin the highlighted release",
        "prune": "Delete old releases beyond keep_releases; pin/unpin",
        "migrate": "Move a legacy in-place layout to releases/ + shared/",
        "unlock": "Remove a stale deploy lock",
        "restart": "Restart the live release: stop, start, health check",
        "converge": "The hosts run different versions: roll every host to the newest one they all keep",
        "logs": "The service's own log (capview logs): follow, pause",
        "filter": "Filter the focused list (or host: / version: prefixes)",
        "refresh": "Fetch every host's status now",
        "operation": "Show the last operation's progress",
    }

    def __init__(self) -> None:
        super().__init__(id="main")
        self.target: Target | None = None
        self._next: Any = None  # the timer of the next refresh
        self._spinner: Any = None
        self._due = False  # a refresh came due while another screen was on top
        self._errors: dict[str, str] = {}  # host -> last error shown (notify once per change)
        self._loaded = False
        self._seen: set[tuple] = set()  # history records already in the activity pane
        self.refreshing = False
        self.updated_at: float | None = None
        self.filter_scope = "hosts"  # the list `/` filters: the one focused when it was pressed

    @property
    def capp(self) -> Any:
        return self.app

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="main-panes"):
            with Vertical(id="left"):
                yield HostList(list(self.capp.envs), id="hosts")
                yield Static(id="host-detail")
            with Vertical(id="right"):
                yield Static(id="releases-title")
                yield ReleasesTable(id="releases")
        with Horizontal(id="filter-bar"):
            yield Input(placeholder="filter (host: / version: prefix; enter keeps, esc clears)", id="filter")
            yield Static(id="filter-count")
        yield LogPane(id="activity", stream=self.capp.activity, max_lines=self.capp.max_log_lines,
                      flush_interval=self.capp.log_flush_interval)
        yield CapviewFooter()

    def on_mount(self) -> None:
        self.sub_title = self.capp.backend.label
        self.query_one("#left").border_title = "hosts"
        self.query_one("#right").border_title = "releases"
        self.query_one("#activity").border_title = "activity"
        self.query_one("#filter-bar").display = False
        self.query_one("#releases-title", Static).update(Text("loading…", style="dim"))
        self.query_one("#host-detail", Static).update(Text("fetching status…", style="dim"))
        self.query_one(HostList).focus()
        self.action_refresh()

    # -- refresh: the next one is scheduled when this one ends; none while covered

    def on_screen_suspend(self) -> None:
        self._stop_timer()

    def on_screen_resume(self) -> None:
        if self._due:
            self._due = False
            self.action_refresh()
        elif not self.refreshing and self._loaded:
            self._schedule()

    def _stop_timer(self) -> None:
        if self._next is not None:
            self._next.stop()
            self._next = None

    def _schedule(self) -> None:
        self._stop_timer()
        self._next = self.set_timer(self.capp.refresh_interval, self._tick, name="refresh")

    def _tick(self) -> None:
        self._next = None
        if self.app.screen is self:
            self.action_refresh()
        else:
            self._due = True

    def action_refresh(self) -> None:
        self._stop_timer()
        self._set_refreshing(True)
        self.capp.run_worker(self._fetch, name="refresh", group="refresh", exclusive=True, exit_on_error=False)

    def _set_refreshing(self, on: bool) -> None:
        self.refreshing = on
        if on and self._spinner is None:
            self._spinner = self.set_interval(0.1, self._show_freshness, name="refresh-spinner")
        elif not on and self._spinner is not None:
            self._spinner.stop()
            self._spinner = None
        self._show_freshness()

    def _show_freshness(self) -> None:
        left = self.query_one("#left")
        if self.refreshing:
            frame = SPINNER[int(self.capp.clock() * 10) % len(SPINNER)]
            left.border_subtitle = f"{frame} refreshing"
        elif self.updated_at is not None:
            left.border_subtitle = f"updated {stamp(self.updated_at)}"

    async def _fetch(self) -> None:
        app = self.capp
        try:
            envs = list(app.envs)
            results = await asyncio.gather(*(app.backend.status(e.name) for e in envs), return_exceptions=True)
            status: dict[str, HostStatus] = {}
            for env, result in zip(envs, results):
                if isinstance(result, asyncio.CancelledError):
                    raise result
                if isinstance(result, BaseException):
                    msg = clean_line(str(result) or type(result).__name__)
                    for h in env.hosts:
                        status[h.name] = HostStatus(host=h.name, env=env.name, reachable=False, error=msg)
                    continue
                for st in result:
                    status[st.host] = st
            self.updated_at = app.clock()
            app.set_status(status)
            self._take_history(envs, status)
        finally:
            self._set_refreshing(False)
            if self.is_attached:
                self._schedule()

    def _take_history(self, envs: list, status: dict[str, HostStatus]) -> None:
        """The recent records of every reachable host, which came with its listing
        (HostStatus.recent: no round trip of their own): the activity pane shows deploys
        made from other terminals, and the side panel explains a rollback."""
        app = self.capp
        fresh: list[dict] = []
        for host in [h.name for e in envs for h in e.hosts if status.get(h.name) and status[h.name].reachable]:
            records = list(status[host].recent[-ACTIVITY_BACKLOG:])
            app.history[host] = records
            for rec in records:
                key = (host, rec.get("at"), rec.get("op"), rec.get("version"), rec.get("outcome"))
                if key not in self._seen:
                    self._seen.add(key)
                    fresh.append(rec)
        fresh.sort(key=lambda r: r.get("at") if isinstance(r.get("at"), (int, float)) else 0)
        now = app.clock()
        for rec in fresh[-ACTIVITY_BACKLOG:]:
            app.activity.append(history_line(rec, now))
        if self.is_attached:
            self._show_target(reset=False)

    def status_updated(self) -> None:
        """Called by the App after every refresh: update everything in place."""
        app = self.capp
        hosts = self.query_one(HostList)
        hosts.update_status(app.status)
        for name, st in app.status.items():
            err = None if st.reachable else (st.error or "unreachable")
            if err and self._errors.get(name) != err:
                app.log_activity(f"{name}: unreachable: {err}")
                if self._loaded:
                    app.notify(f"{name}: {err}", title="Host unreachable", severity="warning", markup=False)
            if err is None and self._errors.get(name):
                app.log_activity(f"{name}: reachable again")
            self._errors[name] = err or ""
        if not self._loaded:
            self._loaded = True
            if hosts.target is None:
                hosts.select_target(None)
        self._show_target(reset=False)
        self._show_freshness()

    # -- selection

    @on(HostList.Selected)
    def _host_selected(self, event: HostList.Selected) -> None:
        changed = event.target != self.target
        self.target = event.target
        self._show_target(reset=changed)

    @on(DataTable.RowHighlighted, "#releases")
    def _row_moved(self) -> None:
        sync_bindings(self)

    def statuses(self, target: Target | None = None) -> list[HostStatus]:
        target = target or self.target
        if target is None:
            return []
        names = [target.host] if target.host else [h.name for h in self.capp.env(target.env).hosts]
        return [self.capp.status[n] for n in names if n in self.capp.status]

    def _show_target(self, *, reset: bool) -> None:
        target = self.target
        if target is None:
            return
        statuses = self.statuses(target)
        now = self.capp.clock()
        self.query_one(ReleasesTable).show(rows_for(statuses), now, reset=reset)
        self.query_one("#releases-title", Static).update(self._title(target, statuses))
        self.query_one("#host-detail", Static).update(self._detail(target, statuses, now))
        self._show_filter_count()
        sync_bindings(self)

    def _title(self, target: Target, statuses: list[HostStatus]) -> Text:
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(clean_line(target.label), style="bold")
        if target.host is None:
            reachable = sum(1 for s in statuses if s.reachable)
            t.append(f"  {reachable}/{len(self.capp.env(target.env).hosts)} reachable · actions apply to all",
                     style="dim")
            split = env_split(target.env, statuses)
            if split.split:  # issue 17
                fix = f"c converges to {clean_line(split.converge_to)}" if split.converge_to else "no common version"
                t.append(f" · SPLIT: {fix}", style="bold red")
        else:
            st = self.capp.status.get(target.host)
            if st is not None and st.reachable:
                t.append(f"  {plural(len(st.releases), 'release')} · layout {clean_line(st.layout)}", style="dim")
                if st.service.condition != "unknown":  # issue 16
                    t.append(f" · service {clean_line(st.service.summary)}",
                             style="bold red" if st.service.down else "dim")
        return t

    def _detail(self, target: Target, statuses: list[HostStatus], now: float) -> Text:
        """The side panel. A new HostStatus fact (service state, split environment, verify
        result) is one more line here and one more flag in widgets/host_list.host_flags."""
        t = Text()
        if target.host is None:
            env = self.capp.env(target.env)
            t.append(clean_line(env.name), style="bold")
            t.append(f"  {env.strategy}, keep {env.settings.keep_releases}", style="dim")
            for st in statuses:
                t.append("\n")
                t.append("✗ " if not st.reachable else "● ", style="red" if not st.reachable else "green")
                t.append(clean_line(st.host))
                t.append("  " + (clean_line(st.current) if st.current else "—") if st.reachable else "  unreachable",
                         style="cyan" if st.reachable else "red")
            return t
        st = self.capp.status.get(target.host)
        if st is None:
            return Text("fetching status…", style="dim")
        t.append(clean_line(st.host), style="bold")
        t.append(f"  ({clean_line(st.env)})", style="dim")
        if not st.reachable:
            t.append("\nunreachable: ", style="bold red")
            t.append(clean_line(st.error or "unknown error"), style="red")
            return t
        t.append("\ncurrent  ", style="dim")
        t.append(clean_line(st.current) if st.current else "none", style="cyan")
        last = last_switch(self.capp.history.get(st.host, []))
        t.append("\nprevious ", style="dim")
        if st.previous:
            t.append(clean_line(st.previous))
            t.append(" ◦ r's default", style="dim")
        else:
            t.append("none recorded", style="dim")
        if last is not None and last.get("op") == "rollback" and last.get("from"):
            t.append(f"\nrolled back from {clean_line(last['from'])}", style="yellow")
            t.append(f"\n  {ago(now - float(last.get('at') or now))}; undo: r on {clean_line(last['from'])}",
                     style="dim")
        if st.free_bytes is not None:
            t.append("\nfree     ", style="dim")
            t.append(size(st.free_bytes))
        if st.lock is not None:
            lk = st.lock
            t.append("\nlocked by ", style="bold yellow")
            t.append(clean_line(lk.operator), style="yellow")
            t.append(f"\n  {clean_line(lk.operation)}" + (f" {clean_line(lk.version)}" if lk.version else "")
                     + f", heartbeat {ago(now - lk.heartbeat)}", style="yellow")
        if st.needs_migration:
            t.append("\nlayout ", style="dim")
            t.append(f"{clean_line(st.layout)}: needs migration (m)", style="magenta")
        return t

    @property
    def highlighted(self) -> ReleaseRow | None:
        return self.query_one(ReleasesTable).highlighted

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if isinstance(event.data_table, ReleasesTable):
            event.stop()
            self.action_inspect()

    # -- context-sensitive keys: a key shows in the footer only where it applies

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        reachable = [s for s in self.statuses() if s.reachable]
        row = self.highlighted if self.is_mounted else None
        if action in ("rollback", "prune"):
            return any(s.layout == "releases" for s in reachable)
        if action == "inspect":
            return row is not None
        if action == "pin":
            return row is not None and not row.info.pinned
        if action == "unpin":
            return row is not None and row.info.pinned
        if action == "migrate":
            return any(s.needs_migration for s in reachable)
        if action == "unlock":
            return any(s.lock is not None for s in reachable)
        if action == "converge":  # issue 17: only offered while the environment is split
            return self.target is not None and self.split(self.target).split
        if action in ("restart", "logs"):
            return any(s.current for s in reachable)
        if action == "operation":
            return self.capp.last_operation is not None
        if action == "clear_filter":
            return self.query_one("#filter-bar").display if self.is_mounted else False
        return True

    # -- filter: the focused list, or the one a prefix names

    def action_filter(self) -> None:
        bar = self.query_one("#filter-bar")
        self.filter_scope = "releases" if isinstance(self.focused, ReleasesTable) else "hosts"
        box = self.query_one("#filter", Input)
        box.placeholder = (f"filter {self.filter_scope} (host: / version: prefix; enter keeps, esc clears)")
        bar.display = True
        box.focus()
        sync_bindings(self)

    def _scope_and_text(self, value: str) -> tuple[str, str]:
        text = value.strip()
        for prefix, scope in (("host:", "hosts"), ("version:", "releases"), ("release:", "releases")):
            if text.lower().startswith(prefix):
                return scope, text[len(prefix):].strip()
        return self.filter_scope, text

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        scope, text = self._scope_and_text(event.value)
        hosts, table = self.query_one(HostList), self.query_one(ReleasesTable)
        hosts.set_filter(text if scope == "hosts" else "", keep=self.target)
        table.set_filter(text if scope == "releases" else "", self.capp.clock())
        self._show_filter_count()

    def _show_filter_count(self) -> None:
        box = self.query_one("#filter", Input)
        if not self.query_one("#filter-bar").display:
            return
        scope, text = self._scope_and_text(box.value)
        shown, total = (self.query_one(HostList) if scope == "hosts" else self.query_one(ReleasesTable)).match_count()
        self.query_one("#filter-count", Static).update(
            Text(f"{shown}/{total} {'hosts' if scope == 'hosts' else 'releases'} match" if text else ""))

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        scope, _ = self._scope_and_text(self.query_one("#filter", Input).value)
        if not self.query_one("#filter", Input).value:
            self.query_one("#filter-bar").display = False
        (self.query_one(HostList) if scope == "hosts" else self.query_one(ReleasesTable)).focus()
        sync_bindings(self)

    def action_clear_filter(self) -> None:
        bar = self.query_one("#filter-bar")
        if not bar.display:
            return
        keep = self.target
        scope, _ = self._scope_and_text(self.query_one("#filter", Input).value)
        self.query_one("#filter", Input).value = ""
        bar.display = False
        hosts = self.query_one(HostList)
        hosts.set_filter("", keep=keep)
        self.query_one(ReleasesTable).set_filter("", self.capp.clock())
        (hosts if scope == "hosts" else self.query_one(ReleasesTable)).focus()
        sync_bindings(self)

    # -- actions (the dialogs live in screens/dialogs.py)

    def _need_target(self) -> Target | None:
        if self.target is None:
            self.app.notify("Select an environment or a host first.", severity="warning")
        return self.target

    def action_deploy(self) -> None:
        target = self.target or Target(self.capp.envs[0].name)
        dialogs.deploy(self, target)

    def action_rollback(self) -> None:
        target = self._need_target()
        if target is not None:
            dialogs.rollback(self, target, self.highlighted)

    def action_pin(self) -> None:
        self._pin(True)

    def action_unpin(self) -> None:
        self._pin(False)

    def _pin(self, pin: bool) -> None:
        target, row = self._need_target(), self.highlighted
        if target is not None and row is not None:
            dialogs.pin(self, target, row.version, pin)

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

    def action_history(self) -> None:
        from capview.tui.screens.history import HistoryScreen

        self.app.push_screen(HistoryScreen(self.target or Target(self.capp.envs[0].name)))

    def action_inspect(self) -> None:
        target, row = self._need_target(), self.highlighted
        if target is None:
            return
        if row is None:
            self.app.notify("Highlight a release to inspect.", severity="warning")
            return
        statuses = [s for s in self.statuses(target) if s.reachable]
        st = next((s for s in statuses if any(r.version == row.version for r in s.releases)), None)
        if st is None:
            self.app.notify(f"{clean_line(row.version)}: not on any reachable host.", severity="warning", markup=False)
            return
        from capview.tui.screens.inspect import InspectScreen

        info = next(r for r in st.releases if r.version == row.version)
        versions = [r.version for r in rows_for([st])]  # newest first
        self.app.push_screen(InspectScreen(st.env, st.host, info, versions))

    def action_unlock(self) -> None:
        target = self._need_target()
        if target is not None:
            dialogs.unlock(self, target)

    def split(self, target: Target) -> Split:
        """Which version each host of the target's environment runs (engine.split)."""
        return env_split(target.env, self.statuses(Target(target.env)))

    def action_converge(self) -> None:
        """A split environment: the rollback dialog for every host, to the version they can all run."""
        target = self._need_target()
        if target is None:
            return
        split = self.split(target)
        if not split.split:
            self.app.notify(f"{target.env} is not split: every host runs the same version.", markup=False)
            return
        env_target = Target(target.env)
        row = next((r for r in rows_for(self.statuses(env_target)) if r.version == split.converge_to), None)
        if row is None:
            self.app.notify(clean_line(split.line()), severity="warning", markup=False)
            return
        dialogs.rollback(self, env_target, row)

    def action_restart(self) -> None:
        target = self._need_target()
        if target is not None:
            dialogs.restart(self, target)

    def action_logs(self) -> None:
        target = self._need_target()
        if target is None:
            return
        from capview.tui.screens.logs import LogsScreen

        self.app.push_screen(LogsScreen(target))

    def show_release(self, host: str, version: str) -> bool:
        """Select ``host`` and highlight ``version`` (the history screen's enter)."""
        st = self.capp.status.get(host)
        if st is None:
            return False
        self.query_one(HostList).select_target(Target(st.env, host))
        self.target = Target(st.env, host)
        self._show_target(reset=True)
        table = self.query_one(ReleasesTable)
        table.focus()
        return table.select_version(version)

    def action_operation(self) -> None:
        op = self.capp.last_operation
        if op is None:
            self.app.notify("No operation has run yet.")
            return
        from capview.tui.screens.deploy_progress import ProgressScreen

        self.app.push_screen(ProgressScreen(op))

    def operation_changed(self, op: Any) -> None:
        sync_bindings(self)
