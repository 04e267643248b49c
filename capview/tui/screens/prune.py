"""Prune: every release with keep / delete / protected (and why), what each deletion frees
and the total; pin/unpin toggles; confirm (Cancel focused); then the progress screen.

The numbers are the engine's ``PrunePlan``: ``frees`` per release is its
``unique_disk_bytes`` (what deleting it alone frees, the releases table's "unique"),
and the total is ``PrunePlan.total``, which counts a file shared by two deleted
releases once, so it can be more than the sum of the rows. Prune then reports what
the host actually freed (``du`` before and after).
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Header, Static

from capview.engine.prune import PrunePlan
from capview.tui.screens.confirm import ConfirmScreen
from capview.tui.text import clean_line, plural, size
from capview.tui.widgets.footer import CapviewFooter, sync_bindings
from capview.tui.widgets.host_list import Target
from capview.tui.widgets.nav import NavTable

ACTION_STYLE = {"keep": "green", "delete": "bold red", "protected": "cyan"}


class PruneScreen(Screen[None]):
    BINDINGS = [
        Binding("enter,y", "confirm", "Prune…", id="prune.confirm"),
        Binding("t,space", "toggle_pin", "Pin/unpin", id="prune.pin"),
        Binding("plus,equals_sign", "keep(1)", "Keep +1", id="prune.keep_more"),
        Binding("minus", "keep(-1)", "Keep -1", id="prune.keep_less"),
        Binding("escape,b", "back", "Back", id="prune.back"),
        Binding("question_mark", "app.help", "Help", id="prune.help"),
        Binding("q", "app.quit_safely", "Quit", id="prune.quit"),
    ]
    FOOTER_KEEP = ["confirm", "toggle_pin", "keep(1)", "keep(-1)"]
    COMMAND_HELP = {"toggle_pin": "Pin or unpin the highlighted release (pinned releases are never pruned)",
                    "confirm": "Delete the releases marked delete"}

    def __init__(self, target: Target) -> None:
        super().__init__()
        self.target = target
        self.keep: int | None = None
        self.plans: list[PrunePlan] = []
        self.planning = True

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="prune"):
            yield Static(id="prune-title", classes="screen-title")
            yield NavTable(id="prune-table", cursor_type="row")
            yield Static(id="prune-total", classes="screen-total")
        yield CapviewFooter()

    def on_mount(self) -> None:
        env = self.app.env_info(self.target.env)  # type: ignore[attr-defined]
        self.keep = env.settings.keep_releases if env else None
        table = self.query_one(NavTable)
        for key, label in (("host", "host"), ("version", "version"), ("action", "action"),
                           ("reason", "why"), ("frees", "frees")):
            table.add_column(label, key=key)
        self.sub_title = f"prune {self.target.label}"
        self._render_title()
        self.reload()
        table.focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "confirm":
            return not self.planning and bool(self._deletions())
        if action == "toggle_pin":
            return self._highlighted() is not None
        return True

    def _render_title(self) -> None:
        t = Text()
        t.append(f"Prune {clean_line(self.target.label)}", style="bold")
        t.append(f" · keep the {self.keep} newest successful" if self.keep is not None else "")
        t.append(" · never current, previous or pinned", style="dim")
        if self.planning:
            t.append(" · planning…", style="yellow")
        self.query_one("#prune-title", Static).update(t)

    def reload(self) -> None:
        self.planning = True
        self._render_title()
        self.app.run_worker(self._load, name=f"plan prune {self.target.label}", group="prune-plan",
                            exclusive=True, exit_on_error=False)

    async def _load(self) -> None:
        plans = await self.app.backend.plan_prune(  # type: ignore[attr-defined]
            self.target.env, keep=self.keep, host=self.target.host)
        if self.is_attached:
            self.show_plans(plans)

    def _pinned(self, host: str, version: str) -> bool:
        st = self.app.status.get(host)  # type: ignore[attr-defined]
        return bool(st and any(r.version == version and r.pinned for r in st.releases))

    def show_plans(self, plans: list[PrunePlan]) -> None:
        self.plans = plans
        self.planning = False
        self._render_title()
        table = self.query_one(NavTable)
        keep_key = None
        if table.row_count:
            try:
                keep_key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
            except Exception:
                keep_key = None
        table.clear()
        for plan in plans:
            if plan.error or not plan.reachable:
                table.add_row(Text(clean_line(plan.host), style="bold"), Text("—"), Text("skipped", style="yellow"),
                              Text(clean_line(plan.error or "unreachable"), style="yellow"), Text(""),
                              key=f"{plan.host}\0")
                continue
            for item in plan.items:
                reason = Text(clean_line(item.reason))
                if self._pinned(plan.host, item.version) and item.reason != "pinned":
                    reason.append(", pinned ⚑", style="cyan")
                elif item.reason == "pinned":
                    reason.append(" ⚑", style="cyan")
                table.add_row(
                    Text(clean_line(plan.host), style="bold"),
                    Text(clean_line(item.version)),
                    Text(item.action, style=ACTION_STYLE.get(item.action, "")),
                    reason,
                    Text(size(item.frees_bytes) if item.action == "delete" else "", justify="right"),
                    key=f"{plan.host}\0{item.version}",
                )
        if keep_key is not None:
            try:
                table.move_cursor(row=table.get_row_index(keep_key))
            except Exception:
                pass
        self.query_one("#prune-total", Static).update(self._total())
        sync_bindings(self)

    def _deletions(self) -> list[tuple[str, str, int]]:
        return [(p.host, i.version, i.frees_bytes) for p in self.plans for i in p.items if i.action == "delete"]

    def total(self) -> int:
        """What the whole prune frees: the engine's per-host totals (shared links counted once)."""
        return sum(p.total for p in self.plans if p.deletions)

    def _total(self) -> Text:
        dels = self._deletions()
        hosts = {h for h, _, _ in dels}
        t = Text()
        if not dels:
            t.append("Nothing to delete.", style="green")
            return t
        t.append(f"{plural(len(dels), 'release')} on {plural(len(hosts), 'host')} will be deleted, freeing ")
        t.append(size(self.total()), style="bold")
        t.append("\nfrees: what deleting that release alone frees (its unique disk space); the total counts "
                 "files shared by deleted releases once.", style="dim")
        return t

    def _highlighted(self) -> tuple[str, str] | None:
        table = self.query_one(NavTable)
        if not table.row_count:
            return None
        key = str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        host, _, version = key.partition("\0")
        return (host, version) if version else None

    def _item(self, host: str, version: str):
        for p in self.plans:
            if p.host == host:
                return next((i for i in p.items if i.version == version), None)
        return None

    def action_toggle_pin(self) -> None:
        sel = self._highlighted()
        if sel is None or self._item(*sel) is None:
            return
        host, version = sel
        pinned = self._pinned(host, version)
        backend = self.app.backend  # type: ignore[attr-defined]

        async def toggle() -> None:
            if pinned:
                await backend.unpin(self.target.env, version, host=host)
            else:
                await backend.pin(self.target.env, version, host=host)
            self.app.notify(f"{'Unpinned' if pinned else 'Pinned'} {version} on {host}.", markup=False)
            # the pin flag comes from the host's status: read it again, then re-plan
            [st] = await backend.status(self.target.env, host=host)
            self.app.status[host] = st  # type: ignore[attr-defined]
            self.app.refresh_status()  # type: ignore[attr-defined]
            if self.is_attached:
                await self._load()

        self.app.run_worker(toggle(), name=f"{'unpin' if pinned else 'pin'} {version}", group="prune-pin",
                            exit_on_error=False)

    def action_keep(self, delta: int) -> None:
        if self.keep is None:
            return
        self.keep = max(1, self.keep + delta)
        self.reload()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()  # enter on the table = confirm
        self.action_confirm()

    def action_confirm(self) -> None:
        if self.planning:
            return
        dels = self._deletions()
        if not dels:
            self.app.notify("Nothing to delete.")
            return
        body = Text()
        for host, version, freed in dels:
            body.append(f"{clean_line(host):<10}", style="dim")
            body.append(clean_line(version), style="bold red")
            body.append(f"  {size(freed)}\n")
        body.append(f"\nTotal freed: {size(self.total())}. Releases and their images are removed; shared/ is "
                    "never touched.")

        def done(ok: bool | None) -> None:
            if ok:
                self.app.pop_screen()
                self.app.start_prune(self.target, self.keep)  # type: ignore[attr-defined]

        self.app.push_screen(ConfirmScreen(f"Delete {plural(len(dels), 'release')}?", body, confirm_label="Delete",
                                           danger=True, id="prune-confirm"), done)

    def action_back(self) -> None:
        self.app.pop_screen()
