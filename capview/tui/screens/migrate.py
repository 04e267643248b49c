"""Migrate: per host the detected layout and the engine's plan as numbered steps; ``n`` runs
a dry run (nothing changes; ``s`` shows the script it would run), ``enter`` the real
migration after a confirm (Cancel focused), then the steps are ticked with the outcome
and the verification lines the host reported.

``w`` (rewrite the systemd unit) is offered only for a ``systemd-user`` service whose
unit names the old paths: a ``command`` service has no unit to rewrite.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Header, Static

from capview.engine.migrate import MigrationPlan
from capview.tui.operations import Operation
from capview.tui.screens.confirm import ConfirmScreen
from capview.tui.text import clean_block, clean_line, plural, size, word
from capview.tui.widgets.footer import CapviewFooter, sync_bindings
from capview.tui.widgets.host_list import Target
from capview.tui.widgets.log_pane import LogPane
from capview.tui.widgets.phase_table import PhaseTable

LAYOUT_STYLE = {"legacy": "bold magenta", "mixed": "bold red", "releases": "green", "empty": "dim"}
STEP_MARK = {"pending": ("·", "dim"), "ok": ("✓", "green"), "failed": ("✗", "bold red"), "dry": ("○", "cyan")}
VERIFY_WORDS = ("verify", "verified", "integrity", "files:", "bytes:")


def plan_text(plan: MigrationPlan, progress: str | None = None) -> Text:
    """A host's plan as numbered steps; ``progress`` (pending/ok/failed/dry) marks them after a run."""
    t = Text()
    t.append(clean_line(plan.host), style="bold")
    t.append("  layout ")
    t.append(clean_line(plan.layout), style=LAYOUT_STYLE.get(plan.layout, ""))
    if plan.error or not plan.reachable:
        t.append("\n  " + clean_line(plan.error or "unreachable"), style="red")
        return t
    if not plan.needed:
        t.append("\n  " + (clean_line(plan.message) if plan.message else "nothing to migrate"),
                 style="green" if plan.layout == "releases" else "dim")
        for b in plan.blockers:
            t.append("\n  blocked: " + clean_line(b), style="bold red")
        return t
    t.append("  →  releases/")
    t.append(clean_line(plan.version), style="bold cyan")
    if plan.data_files is not None:
        t.append(f"\n  data: {plural(plan.data_files, 'file')}, {size(plan.data_bytes)} "
                 "(moved by rename, never copied)", style="dim")
    mark, style = STEP_MARK.get(progress or "", ("", ""))
    for n, step in enumerate(plan.steps, 1):
        t.append(f"\n  {mark or ' '}" if mark else "\n  ", style=style)
        t.append(f"{n:>2}. ", style="dim")
        t.append(clean_line(step))
    if plan.unit_lines:
        t.append(f"\n  {clean_line(plan.unit_path or 'the unit')} still names the old paths:", style="yellow")
        for line in plan.unit_lines:
            t.append("\n    " + clean_line(line), style="yellow")
    for b in plan.blockers:
        t.append("\n  blocked: " + clean_line(b), style="bold red")
    return t


class MigrateScreen(Screen[None]):
    BINDINGS = [
        Binding("enter", "run", "Migrate…", id="migrate.run", priority=True),
        Binding("n", "dry_run", "Dry run", id="migrate.dry_run"),
        Binding("s", "scripts", "Script", id="migrate.scripts"),
        Binding("w", "rewrite_unit", "Rewrite unit", id="migrate.rewrite_unit"),
        Binding("R", "replan", "Re-detect", id="migrate.replan", key_display="R"),
        Binding("escape,b", "back", "Back", id="migrate.back"),
        Binding("question_mark", "app.help", "Help", id="migrate.help"),
        Binding("q", "app.quit_safely", "Quit", id="migrate.quit"),
    ]
    FOOTER_KEEP = ["run", "dry_run", "scripts", "rewrite_unit", "replan"]
    COMMAND_HELP = {"dry_run": "Show what the migration would do, changing nothing",
                    "run": "Migrate the legacy layout, then verify the data"}

    def __init__(self, target: Target) -> None:
        super().__init__()
        self.target = target
        self.plans: list[MigrationPlan] = []
        self.ran: list[MigrationPlan] = []  # the plans the last operation carried out
        self.op: Operation | None = None
        self.planning = True
        self.rewrite_unit = False

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="migrate"):
            yield Static(id="migrate-title", classes="screen-title")
            with Horizontal(id="migrate-panes"):
                with VerticalScroll(id="migrate-plans"):
                    yield Static(id="migrate-plan")
                with Vertical(id="migrate-right"):
                    yield PhaseTable(id="migrate-phases")
                    yield Static(id="migrate-result")
                    yield LogPane(id="migrate-log", max_lines=self.app.max_log_lines,  # type: ignore[attr-defined]
                                  flush_interval=self.app.log_flush_interval)  # type: ignore[attr-defined]
        yield CapviewFooter()

    def on_mount(self) -> None:
        self.sub_title = f"migrate {self.target.label}"
        self.query_one("#migrate-phases").display = False
        self.query_one(LogPane).can_focus = False  # keys (enter) always reach the screen
        self.query_one(LogPane).push("n: dry run (changes nothing) · enter: migrate (asks first)")
        self.action_replan()

    def _unit_rewritable(self) -> bool:
        env = self.app.env_info(self.target.env)  # type: ignore[attr-defined]
        systemd = {h.name for h in env.hosts if h.settings.service.manager == "systemd-user"} if env else set()
        return any(p.unit_lines and p.host in systemd for p in self.plans)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "rewrite_unit":
            return self._unit_rewritable()
        if action in ("run", "dry_run"):
            return not self.planning and any(p.needed for p in self.plans) and not (self.op and self.op.running)
        if action == "scripts":
            return self.op is not None and any(hp.scripts for hp in self.op.hosts.values())
        return True

    def _title(self) -> Text:
        t = Text()
        t.append(f"Migrate {clean_line(self.target.label)} to releases/ + shared/", style="bold")
        if self.rewrite_unit:
            t.append(" · will rewrite the systemd unit (backup kept)", style="cyan")
        if self.planning:
            t.append(" · detecting…", style="yellow")
        elif self.op is not None:
            t.append(f" · {clean_line(self.op.title)}: {word(self.op.state)}",
                     style="yellow" if self.op.running else ("green" if self.op.state == "ok" else "red"))
        return t

    def action_replan(self) -> None:
        self.planning = True
        self.query_one("#migrate-title", Static).update(self._title())
        self.app.run_worker(self._load, name=f"plan migration {self.target.label}", group="migrate-plan",
                            exclusive=True, exit_on_error=False)

    async def _load(self) -> None:
        plans = await self.app.backend.plan_migration(self.target.env, host=self.target.host)  # type: ignore[attr-defined]
        if self.is_attached:
            self.show_plans(plans)

    def _progress(self, host: str) -> str | None:
        op = self.op
        if op is None or not any(p.host == host for p in self.ran):
            return None
        hp = op.hosts.get(host)
        if op.dry_run:
            return "dry" if hp and hp.outcome == "ok" else "pending"
        if hp is None or hp.outcome is None:
            return "pending"
        return "ok" if hp.outcome == "ok" else "failed"

    def show_plans(self, plans: list[MigrationPlan]) -> None:
        self.plans = plans
        self.planning = False
        t = Text()
        shown = {p.host: p for p in plans}
        for p in self.ran:  # what just ran stays on screen, ticked, above the fresh detection
            if self._progress(p.host) in ("ok", "failed", "pending"):
                shown[p.host] = p
        for i, p in enumerate(shown.values()):
            if i:
                t.append("\n\n")
            t.append_text(plan_text(p, self._progress(p.host)))
        self.query_one("#migrate-plan", Static).update(t if plans else Text("no hosts", style="dim"))
        self.query_one("#migrate-title", Static).update(self._title())
        sync_bindings(self)

    def _busy(self) -> bool:
        if self.op is not None and self.op.running:
            self.app.notify("A migration is already running.", severity="warning")
            return True
        return self.planning

    def action_rewrite_unit(self) -> None:
        self.rewrite_unit = not self.rewrite_unit
        self.query_one("#migrate-title", Static).update(self._title())

    def action_dry_run(self) -> None:
        if not self._busy():
            self._start(dry_run=True)

    def action_run(self) -> None:
        if self._busy():
            return
        needed = [p for p in self.plans if p.needed and not p.error]
        if not needed:
            self.app.notify("Nothing to migrate: " + ", ".join(
                f"{p.host} {p.message or p.error or p.layout}" for p in self.plans), markup=False)
            return
        blocked = [p for p in needed if p.blockers]
        body = Text()
        for p in needed:
            body.append(f"{clean_line(p.host)}: {plural(len(p.steps), 'step')}; the service is stopped during "
                        "the moves\n")
        body.append("\nData is moved by rename (never copied) and verified: file count, bytes, SQLite "
                    "integrity. A failure before the final switch restores the original layout.", style="dim")
        if blocked:
            body.append("\n\nBlocked hosts will refuse: " + ", ".join(clean_line(p.host) for p in blocked),
                        style="red")

        def done(ok: bool | None) -> None:
            if ok:
                self._start(dry_run=False)

        self.app.push_screen(ConfirmScreen(f"Migrate {self.target.label}?", body, confirm_label="Migrate",
                                           danger=True, id="migrate-confirm"), done)

    def _start(self, *, dry_run: bool) -> None:
        self.ran = [p for p in self.plans if p.needed]
        op = self.app.start_migrate(self.target, dry_run=dry_run, rewrite_unit=self.rewrite_unit,  # type: ignore[attr-defined]
                                    show=False)
        self.op = op
        pane = self.query_one(LogPane)
        pane.push(f"--- {op.title} ---")
        pane.attach(op.log, replay=True)
        self.operation_changed(op)

    def operation_changed(self, op: Operation) -> None:
        if op is not self.op or not self.is_attached:
            return
        phases = self.query_one("#migrate-phases", PhaseTable)
        phases.display = True
        phases.update_from(op, self.app.clock())  # type: ignore[attr-defined]
        self.query_one("#migrate-title", Static).update(self._title())
        result = Text()
        for host, hp in op.hosts.items():
            if hp.outcome is None:
                continue
            style = "green" if hp.outcome in ("ok", "skipped") else "bold red"
            result.append(f"{clean_line(host)}: {word(hp.outcome)}", style=style)
            if hp.message:
                result.append(": " + clean_line(hp.message))
            result.append("\n")
            for line in hp.log.lines:  # the verification results, up front
                if line.lower().lstrip("= ").startswith(VERIFY_WORDS):
                    result.append("  ✓ " if hp.outcome == "ok" else "  · ", style=style)
                    result.append(clean_line(line) + "\n")
            if op.dry_run and hp.outcome == "ok":
                result.append("  dry run: nothing changed; the steps on the left are what enter does "
                              "(s shows the script)\n", style="cyan")
        self.query_one("#migrate-result", Static).update(result)
        sync_bindings(self)
        if not op.running:
            self.action_replan()

    def action_scripts(self) -> None:
        from capview.tui.screens.viewer import TextScreen

        op = self.op
        if op is None:
            return
        body = Text()
        for host, hp in op.hosts.items():
            for phase, script in hp.scripts.items():
                body.append(f"# --- {clean_line(host)}: the migrate script (dry run) ---\n", style="bold cyan")
                body.append(clean_block(script) + "\n")
        self.app.push_screen(TextScreen(f"the script of {op.title}", body, subtitle=op.title))

    def action_back(self) -> None:
        self.app.pop_screen()
