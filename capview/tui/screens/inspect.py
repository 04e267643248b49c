"""Inspect one release: its files (a lazily loaded tree and a text viewer), its manifest
(the file list of ``.capview/manifest.tsv``), its metadata (release.json with phases as a
table and a unit on every number), build.log, health.log (opened at its end, where a
failure is), a compare view where enter on a changed file shows its diff, and ``v``:
``capview verify`` of this release (every file re-hashed on the host against its
manifest: changed, missing, extra).

New release facts from later issues (schema-change warnings) are one more row group in
:func:`metadata_table` or one more tab in ``TABS``.
"""

from __future__ import annotations

import json

from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Header, Select, Static, TabbedContent, TabPane, Tree
from textual.widgets.tree import TreeNode

from capview.engine.events import PHASES
from capview.engine.inspect import DirEntry
from capview.engine.model import ReleaseInfo
from capview.errors import CapviewError
from capview.tui.text import ago, clean_block, clean_line, clip, duration, plural, size, when
from capview.tui.widgets.footer import CapviewFooter
from capview.tui.widgets.log_pane import LINE_LIMIT
from capview.tui.widgets.nav import NavLog, NavTable, NavTree

CHANGE_STYLE = {"added": "green", "removed": "red", "changed": "yellow"}
TYPE_WORD = {"f": "file", "d": "dir", "l": "link"}
TABS = ("tab-files", "tab-manifest", "tab-meta", "tab-build", "tab-health", "tab-compare", "tab-verify")
KIND_STYLE = {"changed": "yellow", "missing": "red", "extra": "magenta"}
KIND_WHY = {"changed": "differs from what was deployed", "missing": "deployed, now gone",
            "extra": "nobody deployed it (written at run time, or tampering)"}
ROOT = DirEntry("", "dir", 0, 0o755)
META_ORDER = ("version", "state", "health", "error", "operator", "commit", "image", "started_at", "deployed_at",
              "finished_at", "downtime", "unavailable", "files", "bytes", "bytes_sent", "previous")


def metadata_table(data: dict, now: float) -> Table:
    """release.json as rows: times as dates and ages, sizes and durations with units, phases as a table."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column()
    rank = {k: i for i, k in enumerate(META_ORDER)}
    for key, value in sorted(data.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])):
        if key == "phases" and isinstance(value, dict):
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool) and key.endswith("_at"):
            shown = f"{when(value, now)}  ({ago(now - value)})"
        elif isinstance(value, int) and not isinstance(value, bool) and ("bytes" in key):
            shown = f"{size(value)}  ({value:,} bytes)"
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and key in ("downtime", "unavailable"):
            shown = duration(value)
        elif isinstance(value, (dict, list)):
            shown = json.dumps(value, sort_keys=True, default=str)
        else:
            shown = "—" if value is None else str(value)
        table.add_row(Text(clean_line(key)), Text(clean_line(shown)))
    phases = data.get("phases")
    if isinstance(phases, dict) and phases:
        grid = Table(box=None, padding=(0, 1), show_header=True, header_style="bold")
        grid.add_column("phase")
        grid.add_column("time", justify="right")
        order = {p: i for i, p in enumerate(PHASES)}
        total = 0.0
        for name, secs in sorted(phases.items(), key=lambda kv: order.get(kv[0], len(order))):
            ok = isinstance(secs, (int, float)) and not isinstance(secs, bool)
            total += secs if ok else 0.0
            grid.add_row(Text(clean_line(name)), Text(duration(secs) if ok else clean_line(secs)))
        grid.add_row(Text("total", style="bold"), Text(duration(total), style="bold"))
        table.add_row(Text("phases"), grid)
    return table


class FileTree(NavTree[DirEntry]):
    """A release's files, loaded one directory at a time as nodes are expanded."""

    DEFAULT_CSS = """
    FileTree { width: 40%; max-width: 48; }
    """

    def __init__(self, version: str, *, id: str | None = None) -> None:
        super().__init__(Text(f"releases/{clean_line(version)}/"), data=ROOT, id=id)
        self.loaded: set[str] = set()
        self.paths: dict[int, str] = {}  # node id -> path relative to the release
        self.guide_depth = 3

    @staticmethod
    def label_for(entry: DirEntry) -> Text:
        if entry.type == "dir":
            return Text(clean_line(entry.name) + "/", style="bold")
        if entry.type == "link":
            t = Text(clean_line(entry.name), style="cyan")
            t.append(" → " + clean_line(entry.link_target or "?"), style="dim")
            return t
        t = Text(clean_line(entry.name))
        t.append(f"  {size(entry.size)}", style="dim")
        return t

    def path_of(self, node: TreeNode[DirEntry]) -> str:
        return self.paths.get(node.id, "")

    def add_entries(self, node: TreeNode[DirEntry], entries: list[DirEntry]) -> None:
        base = self.path_of(node)
        node.remove_children()
        for e in entries:
            child = (node.add(self.label_for(e), data=e, allow_expand=True) if e.type == "dir"
                     else node.add_leaf(self.label_for(e), data=e))
            self.paths[child.id] = f"{base}/{e.name}" if base else e.name
        self.loaded.add(base)


class InspectScreen(Screen[None]):
    BINDINGS = [
        Binding("1", "tab('tab-files')", "Files", id="inspect.files"),
        Binding("2", "tab('tab-manifest')", "Manifest", id="inspect.manifest"),
        Binding("3", "tab('tab-meta')", "Metadata", id="inspect.meta"),
        Binding("4", "tab('tab-build')", "build.log", id="inspect.build"),
        Binding("5", "tab('tab-health')", "health.log", id="inspect.health"),
        Binding("6", "tab('tab-compare')", "Compare", id="inspect.compare"),
        Binding("v", "verify", "Verify", id="inspect.verify"),
        Binding("escape,b", "back", "Back", id="inspect.back"),
        Binding("question_mark", "app.help", "Help", id="inspect.help"),
        Binding("q", "app.quit_safely", "Quit", id="inspect.quit"),
    ]
    FOOTER_KEEP = ["verify"] + [f"tab('{t}')" for t in TABS]

    def __init__(self, env: str, host: str, release: ReleaseInfo, versions: list[str]) -> None:
        super().__init__()
        self.env = env
        self.host = host
        self.release = release
        self.version = release.version
        self.all_versions = list(versions)
        self.others = [v for v in versions if v != release.version]
        self.viewing: str | None = None
        self.other: str | None = None

    @property
    def backend(self):
        return self.app.backend  # type: ignore[attr-defined]

    def compose(self) -> ComposeResult:
        r = self.release
        yield Header()
        with Vertical(id="inspect"):
            title = Text(no_wrap=True, overflow="ellipsis")
            title.append(f"{clean_line(self.host)} · ", style="dim")
            title.append(clean_line(r.version), style="bold")
            title.append(f"  {clean_line(r.state)}", style="green" if r.state == "live" else
                         ("red" if r.state == "failed" else ""))
            title.append(f"  {size(r.size_bytes)}, {plural(r.files, 'file')}, unique {size(r.unique_disk_bytes)}",
                         style="dim")
            yield Static(title, id="inspect-title", classes="screen-title")
            with TabbedContent(id="inspect-tabs"):
                with TabPane("Files", id="tab-files"):
                    with Horizontal():
                        yield FileTree(self.version, id="files")
                        with VerticalScroll(id="viewer-scroll"):
                            yield Static(Text("select a file (enter)", style="dim"), id="viewer-title")
                            yield Static("", id="viewer")
                with TabPane("Manifest", id="tab-manifest"):
                    yield Static(Text("loading…", style="dim"), id="manifest-summary")
                    yield NavTable(id="manifest-table", cursor_type="row")
                with TabPane("Metadata", id="tab-meta"):
                    with VerticalScroll():
                        yield Static(Text("loading…", style="dim"), id="metadata")
                with TabPane("build.log", id="tab-build"):
                    yield NavLog(id="build-log", max_lines=self.app.max_log_lines)  # type: ignore[attr-defined]
                with TabPane("health.log", id="tab-health"):
                    yield NavLog(id="health-log", max_lines=self.app.max_log_lines)  # type: ignore[attr-defined]
                with TabPane("Compare", id="tab-compare"):
                    with Vertical():
                        with Horizontal(id="compare-bar"):
                            yield Static(Text(f"{clean_line(self.version)} compared with "), id="compare-label")
                            yield Select([(Text(clean_line(v)), v) for v in self.others], prompt="another release",
                                         id="compare-with", value=self._default_other(), compact=True)
                        yield Static(id="compare-summary")
                        yield NavTable(id="compare-table", cursor_type="row")
                with TabPane("Verify", id="tab-verify"):
                    yield Static(Text("v: re-hash every file of this release on the host and compare it with "
                                      "what was deployed (capview verify)", style="dim"), id="verify-summary")
                    yield NavTable(id="verify-table", cursor_type="row")
        yield CapviewFooter()

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
        tree.focus()
        self._run(self._load_dir(tree.root), "list files")
        self._run(self._load_manifest(), "manifest")
        self._run(self._load_metadata(), "release.json")
        self._run(self._load_logs(), "release logs")
        manifest = self.query_one("#manifest-table", DataTable)
        for key, label in (("type", "type"), ("mode", "mode"), ("size", "size"), ("path", "path"),
                           ("digest", "sha256 / target")):
            manifest.add_column(label, key=key)
        table = self.query_one("#compare-table", DataTable)
        for key, label in (("change", "change"), ("path", "path"), ("a", "other"), ("b", self.version),
                           ("delta", "delta")):
            table.add_column(Text(clean_line(label)), key=key)
        verify = self.query_one("#verify-table", DataTable)
        for key, label in (("kind", "kind"), ("path", "path"), ("detail", "what differs")):
            verify.add_column(label, key=key)
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
        # the list a key works on (compare: the changes, where enter shows a diff), else the first field
        target = next((w for w in pane.query(DataTable) if w.focusable), None) or \
            next((w for w in pane.query("*") if w.focusable), None)
        if target is not None:
            self.call_after_refresh(target.focus)
        if tab == "tab-health":
            self.call_after_refresh(self.query_one("#health-log", NavLog).scroll_end, animate=False)

    def action_back(self) -> None:
        self.app.pop_screen()

    # -- files

    @on(Tree.NodeExpanded)
    def _expanded(self, event: Tree.NodeExpanded[DirEntry]) -> None:
        node = event.node
        tree = self.query_one(FileTree)
        if node.data is not None and node.data.type == "dir" and tree.path_of(node) not in tree.loaded:
            self._run(self._load_dir(node), "list files")

    async def _load_dir(self, node: TreeNode[DirEntry]) -> None:
        tree = self.query_one(FileTree)
        path = tree.path_of(node)
        try:
            entries = await self.backend.list_dir(self.env, self.host, self.version, path)
        except CapviewError as exc:
            entries, err = None, exc
        if not self.is_attached:
            return
        if entries is None:
            node.remove_children()
            node.add_leaf(Text(f"error: {clean_line(err)}", style="red"))
            return
        tree.add_entries(node, entries)

    @on(Tree.NodeSelected)
    def _selected(self, event: Tree.NodeSelected[DirEntry]) -> None:
        entry = event.node.data
        if entry is None or entry.type != "file":
            return
        path = self.query_one(FileTree).path_of(event.node)
        self.viewing = path
        self.query_one("#viewer-title", Static).update(Text(clean_line(path) + "  …", style="bold"))
        self._run(self._view(path, entry), "read file")

    async def _view(self, path: str, entry: DirEntry) -> None:
        try:
            body = Text(clean_block(await self.backend.read_text(self.env, self.host, self.version, path)))
        except CapviewError as exc:
            body = Text(clean_line(exc), style="yellow")
        if not self.is_attached or self.viewing != path:
            return
        title = Text(clean_line(path), style="bold")
        title.append(f"  {size(entry.size)}", style="dim")
        self.query_one("#viewer-title", Static).update(title)
        self.query_one("#viewer", Static).update(body)

    # -- manifest: the file list

    async def _load_manifest(self) -> None:
        try:
            entries = await self.backend.manifest(self.env, self.host, self.version)
        except CapviewError as exc:
            entries, err = None, exc
        if not self.is_attached:
            return
        summary = self.query_one("#manifest-summary", Static)
        if entries is None:
            summary.update(Text(f"no manifest: {clean_line(err)}", style="yellow"))
            return
        files = [e for e in entries.values() if e.type == "f"]
        summary.update(Text(f"{plural(len(files), 'file')}, {size(sum(e.size for e in files))}; "
                            f"{plural(len(entries) - len(files), 'directory', 'directories')} and links "
                            "(.capview/manifest.tsv: what the next deploy compares against)", style="dim"))
        table = self.query_one("#manifest-table", DataTable)
        for e in entries.values():
            digest = e.digest if e.type != "f" else e.digest[:12] + "…"
            table.add_row(Text(TYPE_WORD.get(e.type, e.type)), Text(f"{e.mode:o}"),
                          Text(size(e.size) if e.type == "f" else "", justify="right"),
                          Text(clean_line(e.path), style="bold" if e.type == "d" else ""),
                          Text(clean_line(digest), style="dim"))

    # -- metadata: release.json

    async def _load_metadata(self) -> None:
        try:
            data = await self.backend.release_json(self.env, self.host, self.version)
        except CapviewError as exc:
            data, err = None, exc
        if not self.is_attached:
            return
        target = self.query_one("#metadata", Static)
        if data is None:
            target.update(Text(f"release.json unavailable: {clean_line(err)}", style="red"))
            return
        target.update(metadata_table(data, self.app.clock()))  # type: ignore[attr-defined]

    # -- logs

    async def _load_logs(self) -> None:
        try:
            logs = await self.backend.release_logs(self.env, self.host, self.version)
        except CapviewError as exc:
            logs = {"build": f"unavailable: {exc}", "health": f"unavailable: {exc}"}
        if not self.is_attached:
            return
        for name, widget_id in (("build", "#build-log"), ("health", "#health-log")):
            log = self.query_one(widget_id, NavLog)
            text = logs.get(name) or f"(no {name}.log: {'no build ran' if name == 'build' else 'written only when a health check fails'})"
            log.clear()
            # health.log opens at its end: the failing check and the service's last lines are there
            log.write_lines([clip(line, LINE_LIMIT) for line in text.splitlines()], scroll_end=name == "health")

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
            result, err = None, exc
        if not self.is_attached:
            return
        self.other = other
        summary = self.query_one("#compare-summary", Static)
        table = self.query_one("#compare-table", DataTable)
        table.clear()
        if result is None:
            summary.update(Text(f"compare failed: {clean_line(err)}", style="red"))
            return
        table.columns[list(table.columns)[2]].label = Text(clean_line(other))
        rows = [("added", e.path, None, e) for e in result.added]
        rows += [("removed", e.path, e, None) for e in result.removed]
        rows += [("changed", c.path, c.old, c.new) for c in result.changed]
        for change, path, a, b in sorted(rows, key=lambda r: r[1]):
            sa = a.size if a is not None and a.type == "f" else None
            sb = b.size if b is not None and b.type == "f" else None
            delta = (sb or 0) - (sa or 0)
            table.add_row(
                Text(change, style=CHANGE_STYLE.get(change, "")),
                Text(clean_line(path)),
                Text(size(sa) if sa is not None else "—", justify="right"),
                Text(size(sb) if sb is not None else "—", justify="right"),
                Text(("+" if delta > 0 else "-" if delta < 0 else "") + (size(abs(delta)) if delta else "0"),
                     justify="right", style="red" if delta > 0 else ("green" if delta < 0 else "dim")),
                key=path,
            )
        s = Text()
        s.append(f"{len(result.added)} added", style="green")
        s.append(" · ")
        s.append(f"{len(result.removed)} removed", style="red")
        s.append(" · ")
        s.append(f"{len(result.changed)} changed", style="yellow")
        s.append(f" · {result.unchanged} unchanged   enter on a file: its diff", style="dim")
        summary.update(s)

    @on(DataTable.RowSelected, "#compare-table")
    def _diff(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if self.other is None:
            return
        path = str(event.row_key.value)
        self._run(self._open_diff(self.other, path), "diff")

    async def _open_diff(self, other: str, path: str) -> None:
        from capview.tui.screens.diff import diff_screen

        try:
            pair = await self.backend.read_pair(self.env, self.host, other, self.version, path)
        except CapviewError as exc:
            self.app.notify(f"{clean_line(path)}: {clean_line(exc.message)}", title="No diff", severity="warning",
                            markup=False)
            return
        if self.is_attached:
            self.app.push_screen(diff_screen(pair))

    # -- verify: capview verify's check of this release

    def action_verify(self) -> None:
        self.action_tab("tab-verify")
        self.query_one("#verify-summary", Static).update(
            Text(f"verifying {clean_line(self.version)} on {clean_line(self.host)}: re-hashing every file…",
                 style="yellow"))
        self._run(self._verify(), "verify")

    async def _verify(self) -> None:
        try:
            result = await self.backend.verify(self.env, self.host, self.version)
        except CapviewError as exc:
            result, err = None, exc
        if not self.is_attached:
            return
        summary = self.query_one("#verify-summary", Static)
        table = self.query_one("#verify-table", DataTable)
        table.clear()
        if result is None or result.error:
            why = clean_line(err) if result is None else clean_line(result.error)
            summary.update(Text(f"verify: {why}", style="red"))
            return
        for d in result.differences:
            table.add_row(Text(d.kind, style=KIND_STYLE.get(d.kind, "")), Text(clean_line(d.path)),
                          Text(clean_line(d.detail or KIND_WHY.get(d.kind, "")), style="dim"))
        s = Text()
        if result.ok:
            s.append(f"✓ {clean_line(self.version)} is as deployed", style="bold green")
        else:
            s.append(f"✗ {clean_line(self.version)} differs from what was deployed", style="bold red")
        s.append(f" · {plural(result.checked, 'entry', 'entries')} checked", style="dim")
        for kind in ("changed", "missing", "extra"):
            s.append(" · ")
            s.append(f"{len(result.of_kind(kind))} {kind}", style=KIND_STYLE[kind] if result.of_kind(kind) else "dim")
        if result.built:
            s.append(f" · {plural(result.built, 'entry', 'entries')} added or replaced by the build (not drift)",
                     style="dim")
        summary.update(s)
