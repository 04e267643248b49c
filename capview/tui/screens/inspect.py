"""Inspect one release: manifest, a lazily loaded file tree with a text viewer,
build.log and health.log, and a compare-with-another-release view."""

from __future__ import annotations

import json
import time

from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Log, Select, Static, TabbedContent, TabPane, Tree
from textual.widgets.tree import TreeNode

from capview.engine.model import ReleaseInfo
from capview.errors import CapviewError
from capview.tui.backend import DirEntry
from capview.tui.text import clean_block, clean_line, human_bytes

CHANGE_STYLE = {"added": "green", "removed": "red", "changed": "yellow"}


class FileTree(Tree[DirEntry]):
    """A release's files, loaded one directory at a time as nodes are expanded."""

    DEFAULT_CSS = """
    FileTree { width: 40; }
    """

    def __init__(self, version: str, *, id: str | None = None) -> None:
        super().__init__(Text(f"releases/{clean_line(version)}/"), data=DirEntry("", "", "dir"), id=id)
        self.loaded: set[str] = set()
        self.guide_depth = 3

    @staticmethod
    def label_for(entry: DirEntry) -> Text:
        if entry.kind == "dir":
            return Text(clean_line(entry.name) + "/", style="bold")
        if entry.kind == "link":
            t = Text(clean_line(entry.name), style="cyan")
            t.append(" → " + clean_line(entry.target or "?"), style="dim")
            return t
        t = Text(clean_line(entry.name))
        t.append(f"  {human_bytes(entry.size)}", style="dim")
        return t

    def add_entries(self, node: TreeNode[DirEntry], entries: list[DirEntry]) -> None:
        node.remove_children()
        for e in entries:
            if e.kind == "dir":
                node.add(self.label_for(e), data=e, allow_expand=True)
            else:
                node.add_leaf(self.label_for(e), data=e)
        if node.data is not None:
            self.loaded.add(node.data.path)


class InspectScreen(Screen[None]):
    BINDINGS = [
        Binding("1", "tab('tab-manifest')", "Manifest", id="inspect.manifest"),
        Binding("2", "tab('tab-files')", "Files", id="inspect.files"),
        Binding("3", "tab('tab-build')", "build.log", id="inspect.build"),
        Binding("4", "tab('tab-health')", "health.log", id="inspect.health"),
        Binding("5", "tab('tab-compare')", "Compare", id="inspect.compare"),
        Binding("escape,b", "back", "Back", id="inspect.back"),
        Binding("question_mark", "app.help", "Help", id="inspect.help"),
        Binding("q", "app.quit_safely", show=False, id="inspect.quit"),  # q quits here too, as on the main screen
    ]

    def __init__(self, env: str, host: str, release: ReleaseInfo, versions: list[str]) -> None:
        super().__init__()
        self.env = env
        self.host = host
        self.release = release
        self.version = release.version
        self.all_versions = list(versions)
        self.others = [v for v in versions if v != release.version]
        self.viewing: str | None = None

    @property
    def backend(self):
        return self.app.backend  # type: ignore[attr-defined]

    def compose(self) -> ComposeResult:
        r = self.release
        yield Header()
        with Vertical(id="inspect"):
            title = Text()
            title.append(f"{clean_line(self.host)} · ", style="dim")
            title.append(clean_line(r.version), style="bold")
            title.append(f"  {clean_line(r.state)}", style="green" if r.state == "live" else
                         ("red" if r.state == "failed" else ""))
            if r.image:
                title.append("  image ", style="dim")
                title.append(clean_line(r.image), style="cyan")
            yield Static(title, id="inspect-title", classes="screen-title")
            with TabbedContent(id="inspect-tabs"):
                with TabPane("Manifest", id="tab-manifest"):
                    with VerticalScroll():
                        yield Static(Text("loading…", style="dim"), id="manifest")
                with TabPane("Files", id="tab-files"):
                    with Horizontal():
                        yield FileTree(self.version, id="files")
                        with VerticalScroll(id="viewer-scroll"):
                            yield Static(Text("select a file", style="dim"), id="viewer-title")
                            yield Static("", id="viewer")
                with TabPane("build.log", id="tab-build"):
                    yield Log(id="build-log", max_lines=self.app.max_log_lines)  # type: ignore[attr-defined]
                with TabPane("health.log", id="tab-health"):
                    yield Log(id="health-log", max_lines=self.app.max_log_lines)  # type: ignore[attr-defined]
                with TabPane("Compare", id="tab-compare"):
                    with Vertical():
                        with Horizontal(id="compare-bar"):
                            yield Static(Text(f"{clean_line(self.version)} compared with "), id="compare-label")
                            yield Select([(Text(clean_line(v)), v) for v in self.others], prompt="another release",
                                         id="compare-with", value=self._default_other())
                        yield Static(id="compare-summary")
                        yield DataTable(id="compare-table", cursor_type="row")
        yield Footer()

    def _default_other(self):
        """The release deployed just before this one (versions come newest first)."""
        if not self.others:
            return Select.BLANK
        older = self.all_versions[self.all_versions.index(self.version) + 1:] if self.version in self.all_versions else []
        return older[0] if older else self.others[0]

    def on_mount(self) -> None:
        self.sub_title = f"inspect {self.host} {self.version}"
        tree = self.query_one(FileTree)
        tree.root.expand()
        self._run(self._load_manifest(), "manifest")
        self._run(self._load_dir(tree.root), "list files")
        self._run(self._load_logs(), "release logs")
        table = self.query_one("#compare-table", DataTable)
        for key, label in (("change", "change"), ("path", "path"), ("a", "other"), ("b", self.version),
                           ("delta", "delta")):
            table.add_column(Text(clean_line(label)), key=key)
        other = self.query_one("#compare-with", Select).value
        if other is not Select.BLANK:
            self._run(self._compare(str(other)), "compare")

    def _run(self, coro, what: str) -> None:
        self.app.run_worker(coro, name=f"{what} {self.host} {self.version}", group="inspect", exit_on_error=False)

    def action_tab(self, tab: str) -> None:
        tabs = self.query_one(TabbedContent)
        # A focused widget in the old pane makes Textual re-activate that pane when focus
        # moves on: drop focus first, then focus the first focusable widget of the new pane.
        self.set_focus(None)
        tabs.active = tab
        pane = tabs.get_pane(tab)
        target = next((w for w in pane.query("*") if w.focusable), None)
        if target is not None:
            self.call_after_refresh(target.focus)

    def action_back(self) -> None:
        self.app.pop_screen()

    # -- manifest

    async def _load_manifest(self) -> None:
        try:
            data = await self.backend.manifest(self.env, self.host, self.version)
        except CapviewError as exc:
            data = None
            err = exc
        if not self.is_attached:
            return
        target = self.query_one("#manifest", Static)
        if data is None:
            target.update(Text(f"manifest unavailable: {clean_line(err)}", style="red"))
            return
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold cyan", no_wrap=True)
        table.add_column()
        for key, value in data.items():
            if isinstance(value, (dict, list)):
                shown = json.dumps(value, sort_keys=True, default=str)
            elif isinstance(value, (int, float)) and key.endswith("_at") and value:
                shown = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(value))
            elif isinstance(value, int) and ("bytes" in key) and value:
                shown = f"{value:,}  ({human_bytes(value)})"
            else:
                shown = "—" if value is None else str(value)
            table.add_row(Text(clean_line(key)), Text(clean_line(shown)))
        target.update(table)

    # -- files

    @on(Tree.NodeExpanded)
    def _expanded(self, event: Tree.NodeExpanded[DirEntry]) -> None:
        node = event.node
        tree = self.query_one(FileTree)
        if node.data is not None and node.data.kind == "dir" and node.data.path not in tree.loaded:
            self._run(self._load_dir(node), "list files")

    async def _load_dir(self, node: TreeNode[DirEntry]) -> None:
        path = node.data.path if node.data else ""
        try:
            entries = await self.backend.list_dir(self.env, self.host, self.version, path)
        except CapviewError as exc:
            entries = None
            err = exc
        if not self.is_attached:
            return
        tree = self.query_one(FileTree)
        if entries is None:
            node.remove_children()
            node.add_leaf(Text(f"error: {clean_line(err)}", style="red"))
            return
        tree.add_entries(node, entries)

    @on(Tree.NodeSelected)
    def _selected(self, event: Tree.NodeSelected[DirEntry]) -> None:
        entry = event.node.data
        if entry is None or entry.kind != "file":
            return
        self.viewing = entry.path
        self.query_one("#viewer-title", Static).update(Text(clean_line(entry.path) + "  …", style="bold"))
        self._run(self._view(entry), "read file")

    async def _view(self, entry: DirEntry) -> None:
        try:
            text = await self.backend.read_text(self.env, self.host, self.version, entry.path)
            body = Text(clean_block(text))
        except CapviewError as exc:
            body = Text(clean_line(exc), style="yellow")
        if not self.is_attached or self.viewing != entry.path:
            return
        title = Text(clean_line(entry.path), style="bold")
        title.append(f"  {human_bytes(entry.size)}", style="dim")
        self.query_one("#viewer-title", Static).update(title)
        self.query_one("#viewer", Static).update(body)

    # -- logs

    async def _load_logs(self) -> None:
        try:
            logs = await self.backend.release_logs(self.env, self.host, self.version)
        except CapviewError as exc:
            logs = {"build.log": f"unavailable: {exc}", "health.log": f"unavailable: {exc}"}
        if not self.is_attached:
            return
        for name, widget_id in (("build.log", "#build-log"), ("health.log", "#health-log")):
            log = self.query_one(widget_id, Log)
            text = logs.get(name) or f"(no {name})"
            log.clear()
            log.write_lines([clean_line(line) for line in text.splitlines()], scroll_end=False)

    # -- compare

    @on(Select.Changed, "#compare-with")
    def _compare_changed(self, event: Select.Changed) -> None:
        if event.value is not Select.BLANK:
            self._run(self._compare(str(event.value)), "compare")

    async def _compare(self, other: str) -> None:
        try:
            # what changed from the other release to this one
            result = await self.backend.compare(self.env, self.host, other, self.version)
        except CapviewError as exc:
            result = None
            err = exc
        if not self.is_attached:
            return
        summary = self.query_one("#compare-summary", Static)
        table = self.query_one("#compare-table", DataTable)
        table.clear()
        if result is None:
            summary.update(Text(f"compare failed: {clean_line(err)}", style="red"))
            return
        # column a is labelled with the other release
        table.columns[list(table.columns)[2]].label = Text(clean_line(other))
        for c in result.changes:
            delta = ((c.size_b or 0) - (c.size_a or 0))
            table.add_row(
                Text(c.change, style=CHANGE_STYLE.get(c.change, "")),
                Text(clean_line(c.path)),
                Text(human_bytes(c.size_a) if c.size_a is not None else "—", justify="right"),
                Text(human_bytes(c.size_b) if c.size_b is not None else "—", justify="right"),
                Text(("+" if delta > 0 else "-" if delta < 0 else "") + (human_bytes(abs(delta)) if delta else "0"),
                     justify="right", style="green" if delta < 0 else ("red" if delta > 0 else "dim")),
            )
        s = Text()
        s.append(f"{result.count('added')} added", style="green")
        s.append(" · ")
        s.append(f"{result.count('removed')} removed", style="red")
        s.append(" · ")
        s.append(f"{result.count('changed')} changed", style="yellow")
        s.append(f"   from {clean_line(other)} to {clean_line(self.version)}", style="dim")
        summary.update(s)
