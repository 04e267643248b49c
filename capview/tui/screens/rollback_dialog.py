"""The rollback dialog when the hosts keep SQLite snapshots (issue 18): code and data.

The body says what the rollback does (dialogs.py builds it); below it, the data plan the
engine reads before anything changes (engine/data.py ``plan_data``: one read-only trip
per host), in the words the CLI prints (``data_words``). ``d`` toggles restoring the
target's snapshot: the plan then lists what the restore loses, the dialog turns red and
the version must be typed, as ``capview rollback --restore-data`` asks for a confirmation.
It is offered only when every host has a snapshot of the target.
"""

from __future__ import annotations

from typing import Awaitable, Callable

from rich.text import Text
from textual.binding import Binding

from capview.engine.data import DataPlan, data_words
from capview.tui.screens.confirm import ConfirmScreen


class RollbackScreen(ConfirmScreen):
    BINDINGS = [Binding("d", "toggle_data", "Restore data", id="rollback.restore_data")]
    extra_hint = " · d: restore data"

    def __init__(self, title: str, body: Text, *, version: str, danger: bool, type_to_confirm: str | None,
                 plan: Callable[[], Awaitable[list[DataPlan]]], clock: Callable[[], float]) -> None:
        super().__init__(title, body, confirm_label="Roll back", danger=danger,
                         type_to_confirm=type_to_confirm, id="rollback-confirm")
        self.base_body = body
        self.version = version
        self.base_danger, self.base_typing = danger, type_to_confirm
        self.plan = plan
        self.clock = clock
        self.plans: list[DataPlan] | None = None  # None: still reading
        self.plan_error = ""
        self.restore_data = False

    def on_mount(self) -> None:
        super().on_mount()
        self._render_body()
        self.run_worker(self._load, name="plan the rollback's data", group="rollback-data", exit_on_error=False)

    async def _load(self) -> None:
        try:
            self.plans = await self.plan()
        except Exception as exc:  # the rollback itself stays possible: it reports its own errors
            self.plans, self.plan_error = [], f"{type(exc).__name__}: {exc}"
        if self.is_attached:
            self._render_body()
            self.refresh_bindings()

    @property
    def restorable(self) -> bool:
        return bool(self.plans) and all(p.restorable for p in self.plans)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "toggle_data":
            return self.restorable
        return super().check_action(action, parameters)

    def action_toggle_data(self) -> None:
        if not self.restorable:
            return
        self.restore_data = not self.restore_data
        self.set_danger(self.restore_data or self.base_danger)
        self.require_typing(self.version if self.restore_data else self.base_typing)
        self._render_body()

    def _render_body(self) -> None:
        body = self.base_body.copy()
        body.append("\n\nData    ", style="dim")
        if self.plans is None:
            body.append("reading the data snapshots…", style="dim")
        elif self.plan_error:
            body.append(f"could not read the snapshots ({self.plan_error})", style="yellow")
        else:
            if self.restore_data:
                body.append("RESTORE the target's snapshot (d: keep the data as it is)", style="bold red")
            elif self.restorable:
                body.append("kept as it is now (d: restore the target's snapshot instead)", style="bold")
            else:
                body.append("kept as it is now (no snapshot of the target to restore)", style="bold")
            for line in data_words(self.plans, restore=self.restore_data, how="press d", now=self.clock()):
                body.append("\n" + line, style="red" if self.restore_data else "yellow")
        self.query_one("#dialog-body").update(body)

