"""Migrate: per host the detected layout and the exact plan of moves; ``n`` runs a dry
run, ``enter`` the real migration (after a confirm) with its verification results."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from capview.tui.backend import MigrationPlan
from capview.tui.operations import Operation
from capview.tui.screens.confirm import ConfirmScreen
from capview.tui.text import clean_line, human_bytes
from capview.tui.widgets.host_list import Target
from capview.tui.widgets.log_pane import LogPane
from capview.tui.widgets.phase_table import PhaseTable

LAYOUT_STYLE = {"legacy": "bold magenta", "mixed": "bold red", "releases": "green", "empty": "dim"}


def plan_text(plan: MigrationPlan) -> Text:
    t = Text()
    t.append(clean_line(plan.host), style="bold")
    t.append("  layout ")
    t.append(clean_line(plan.layout), style=LAYOUT_STYLE.get(plan.layout, ""))
    if plan.error:
        t.append("\n  " + clean_line(plan.error), style="red")
        return t
    if not plan.needed:
        t.append("\n  already migrated: nothing to do" if plan.layout == "releases"
                 else "\n  " + (clean_line(plan.message) if plan.message else "nothing to migrate"), style="green")
        return t
    if plan.version:
        t.append("  →  releases/")
        t.append(clean_line(plan.version), style="bold cyan")
    if plan.data_files is not None:
        t.append(f"\n  data: {plan.data_files:,} files, {human_bytes(plan.data_bytes)} (moved by rename, never copied)",
                 style="dim")
    t.append("\n  plan:")
    for n, step in enumerate(plan.steps, 1):
        t.append(f"\n  {n:>2}. ", style="dim")
        t.append(clean_line(step))
    if plan.junk:
        t.append("\n  leftovers to .capview/legacy-junk/: ", style="dim")
        t.append(", ".join(clean_line(j) for j in plan.junk))
    if plan.unit_lines:
        t.append("\n  systemd unit lines still pointing at the old paths (w: rewrite them, backup kept):",
                 style="yellow")
        for line in plan.unit_lines:
            t.append("\n    " + clean_line(line), style="yellow")
    for b in plan.blockers:
        t.append("\n  blocked: " + clean_line(b), style="bold red")
    return t


class MigrateScreen(Screen[None]):
    BINDINGS = [
        Binding("n", "dry_run", "Dry run", id="migrate.dry_run"),
        Binding("w", "rewrite_unit", "Rewrite unit", id="migrate.rewrite_unit"),
        Binding("enter", "run", "Migrate…", id="migrate.run"),
        Binding("R", "replan", "Re-detect", id="migrate.replan"),
        Binding("escape,b", "back", "Back", id="migrate.back"),
        Binding("question_mark", "app.help", "Help", id="migrate.help"),
        Binding("q", "app.quit_safely", show=False, id="migrate.quit"),  # q quits here too, as on the main screen
    ]
    COMMAND_HELP = {"dry_run": "Show what the migration would do, changing nothing",
                    "run": "Migrate the legacy layout, then verify the data"}

    def __init__(self, target: Target) -> None:
        super().__init__()
        self.target = target
        self.plans: list[MigrationPlan] = []
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
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"migrate {self.target.label}"
        self.query_one("#migrate-phases").display = False
        self.query_one(LogPane).push("n: dry run · enter: migrate (asks first)")
        self.action_replan()

    def _title(self) -> Text:
        t = Text()
        t.append(f"Migrate {self.target.label} to releases/ + shared/", style="bold")
        if self.rewrite_unit:
            t.append("  ·  will rewrite the systemd unit (backup kept)", style="cyan")
        if self.planning:
            t.append("  ·  detecting…", style="yellow")
        elif self.op is not None:
            t.append(f"  ·  {self.op.title}: {self.op.state}", style="yellow" if self.op.running else
                     ("green" if self.op.state == "ok" else "red"))
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

    def show_plans(self, plans: list[MigrationPlan]) -> None:
        self.plans = plans
        self.planning = False
        t = Text()
        for i, p in enumerate(plans):
            if i:
                t.append("\n\n")
            t.append_text(plan_text(p))
        self.query_one("#migrate-plan", Static).update(t if plans else Text("no hosts", style="dim"))
        self.query_one("#migrate-title", Static).update(self._title())

    def _busy(self) -> bool:
        if self.op is not None and self.op.running:
            self.app.notify("A migration is already running.", severity="warning")
            return True
        return self.planning

    def action_rewrite_unit(self) -> None:
        if not any(p.unit_lines for p in self.plans):
            self.app.notify("No systemd unit line references the old paths.")
            return
        self.rewrite_unit = not self.rewrite_unit
        self.query_one("#migrate-title", Static).update(self._title())

    def action_dry_run(self) -> None:
        if self._busy():
            return
        self._start(dry_run=True)

    def action_run(self) -> None:
        if self._busy():
            return
        needed = [p for p in self.plans if p.needed and not p.error]
        if not needed:
            self.app.notify("Nothing to migrate: " + ", ".join(
                f"{p.host} {'already migrated' if p.layout == 'releases' else p.error or p.layout}"
                for p in self.plans), markup=False)
            return
        blocked = [p for p in needed if p.blockers]
        body = Text()
        for p in needed:
            body.append(f"{clean_line(p.host)}: {len(p.steps)} steps, the service is stopped during the moves\n")
        body.append("\nData is moved by rename (never copied) and verified: file count, bytes, SQLite "
                    "integrity. A failure before the final switch restores the original layout.", style="dim")
        if blocked:
            body.append("\n\nBlocked hosts will refuse: " + ", ".join(p.host for p in blocked), style="red")

        def done(ok: bool | None) -> None:
            if ok:
                self._start(dry_run=False)

        self.app.push_screen(ConfirmScreen(f"Migrate {self.target.label}?", body, confirm_label="Migrate",
                                           danger=True), done)

    def _start(self, *, dry_run: bool) -> None:
        op = self.app.start_migrate(self.target, dry_run=dry_run, rewrite_unit=self.rewrite_unit,  # type: ignore[attr-defined]
                                    show=False)
        self.op = op
        pane = self.query_one(LogPane)
        pane.push(f"--- {op.title} ---")
        self._follow(op)
        self.operation_changed(op)

    def _follow(self, op: Operation) -> None:
        self.query_one(LogPane).attach(op.log, replay=True)

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
            result.append(f"{clean_line(host)}: {hp.outcome}", style=style)
            if hp.message:
                result.append(" — " + clean_line(hp.message))
            result.append("\n")
            for line in hp.log.lines:  # the verification results, up front
                if line.lower().startswith(("verify", "verified", "integrity")):
                    result.append("  ✓ " if " ok" in line or " = " in line else "  · ", style=style)
                    result.append(clean_line(line) + "\n")
        self.query_one("#migrate-result", Static).update(result)
        if not op.running:
            self.action_replan()

    def action_back(self) -> None:
        self.app.pop_screen()


