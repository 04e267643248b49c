"""Left pane of the main screen: hosts grouped by environment.

Each host line is one marker and words, readable without colour: ``●`` reachable,
``✗`` unreachable, ``○`` not fetched yet; then its current release and flags
(``locked``, ``legacy``). Labels are updated in place on every refresh (no rebuild, so
the cursor and expansion never jump). Selecting an environment means "all of its
hosts"; selecting a host means just that one.

A new per-host fact from the engine (service state, split environment, verify
results, schema warnings: later issues) is one more entry in :func:`host_flags`.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.message import Message
from textual.widgets.tree import TreeNode

from capview.config import Environment
from capview.engine.model import HostStatus
from capview.engine.split import env_split
from capview.tui.text import clean_line, plural
from capview.tui.widgets.nav import NavTree


@dataclass(frozen=True)
class Target:
    """What an action applies to: a whole environment (host None) or one host."""

    env: str
    host: str | None = None

    @property
    def label(self) -> str:
        return f"{self.env}/{self.host}" if self.host else self.env


# The service's condition (issue 16): a marker that differs by shape, not only colour, and a
# word; "unknown" (manager none) keeps the plain reachable marker.
SERVICE_MARK = {
    "running": ("● ", "bold green", ""),
    "unknown": ("● ", "bold green", ""),
    "starting": ("◐ ", "yellow", "starting"),
    "down": ("■ ", "bold red", "service down"),
    "crash-looping": ("↻ ", "bold red", "crash-looping"),
}


def host_flags(st: HostStatus) -> list[tuple[str, str]]:
    """(word, style) flags after a host's current release, most urgent first."""
    flags = []
    _, style, word = SERVICE_MARK.get(st.service.condition, SERVICE_MARK["running"])
    if word:
        flags.append((word, style))
    if st.lock is not None:
        flags.append(("locked", "yellow"))
    if st.needs_migration:
        flags.append(("legacy", "magenta"))
    return flags


class HostList(NavTree[Target]):
    DEFAULT_CSS = """
    HostList { width: 1fr; overflow-x: hidden; }
    """

    class Selected(Message):
        """The highlighted environment or host changed."""

        def __init__(self, target: Target) -> None:
            super().__init__()
            self.target = target

    def __init__(self, envs: list[Environment], *, id: str | None = None) -> None:
        super().__init__("hosts", id=id)
        self.show_root = False
        self.guide_depth = 2
        self.envs = envs
        self.status: dict[str, HostStatus] = {}
        self._target_nodes: dict[Target, TreeNode[Target]] = {}
        self.filter_text = ""
        self._quiet = False

    def on_mount(self) -> None:
        self._rebuild()

    @staticmethod
    def names(env: Environment) -> list[str]:
        return [h.name for h in env.hosts]

    def _rebuild(self) -> None:
        self.clear()
        self._target_nodes.clear()
        for env in self.envs:
            hosts = [h for h in self.names(env) if self.matches(env.name, h)]
            if self.filter_text and not hosts:
                continue
            t = Target(env.name)
            node = self.root.add(self._env_label(env), data=t, expand=True)
            self._target_nodes[t] = node
            for h in hosts:
                ht = Target(env.name, h)
                self._target_nodes[ht] = node.add_leaf(self._host_label(h), data=ht)

    def matches(self, env: str, host: str) -> bool:
        """The filter matches the host's name, its environment's name or its current release."""
        f = self.filter_text.lower()
        if not f:
            return True
        st = self.status.get(host)
        return f in host.lower() or f in env.lower() or bool(st and st.current and f in st.current.lower())

    def match_count(self) -> tuple[int, int]:
        total = sum(len(e.hosts) for e in self.envs)
        shown = sum(1 for e in self.envs for h in self.names(e) if self.matches(e.name, h))
        return shown, total

    def set_filter(self, text: str, keep: Target | None = None) -> None:
        """Show only matching hosts; the cursor stays on ``keep`` (or where it was) when visible."""
        if text == self.filter_text:
            return
        keep = keep or self.target
        self.filter_text = text
        # a rebuilt tree highlights its first line on its own: that is not a selection
        self._quiet = True
        self._rebuild()

        def restore() -> None:
            self._quiet = False
            self.select_target(keep)
            if self.target is not None:  # the cursor line may not have moved: say where it is
                self.post_message(self.Selected(self.target))

        self.call_after_refresh(restore)

    def select_target(self, target: Target | None) -> None:
        """Move the cursor to ``target``; None: the first line (the first environment). A host
        the filter hides falls back to the first host shown, never to a whole environment
        (actions would then apply to all of its hosts)."""
        node = self._target_nodes.get(target) if target else None
        if node is None and target is not None:
            node = next((n for t, n in self._target_nodes.items() if t.host), None)
        if node is None:
            node = next(iter(self._target_nodes.values()), None)
        if node is not None:
            self.move_cursor(node)

    def _env_label(self, env: Environment) -> Text:
        hosts = [self.status.get(h) for h in self.names(env)]
        down = sum(1 for s in hosts if s is not None and not s.reachable)
        t = Text()
        t.append(clean_line(env.name), style="bold")
        t.append(f"  {plural(len(env.hosts), 'host')}", style="dim")
        if down:
            t.append(f"  {down} down", style="red")
        dead = sum(1 for s in hosts if s is not None and s.reachable and s.service.down)
        if dead:
            t.append(f"  {plural(dead, 'service')} down", style="bold red")
        split = env_split(env.name, [s for s in hosts if s is not None])
        if split.split:  # issue 17: the hosts run different versions
            t.append("  SPLIT", style="bold red reverse")
        return t

    def _host_label(self, host: str) -> Text:
        st = self.status.get(host)
        t = Text(no_wrap=True, overflow="ellipsis")
        if st is None:
            t.append("○ ", style="dim")
            t.append(clean_line(host))
            t.append("  …", style="dim")
            return t
        if not st.reachable:
            t.append("✗ ", style="bold red")
            t.append(clean_line(host), style="red")
            t.append("  unreachable", style="red")
            return t
        marker, style, _ = SERVICE_MARK.get(st.service.condition, SERVICE_MARK["running"])
        t.append(marker, style=style)
        t.append(clean_line(host))
        flags = host_flags(st)
        if st.current or not flags:
            t.append(" ")
            t.append(clean_line(st.current) if st.current else "—", style="cyan" if st.current else "dim")
        for flag, style in flags:
            t.append(f" {flag}", style=style)
        return t

    def update_status(self, status: dict[str, HostStatus]) -> None:
        """Refresh labels in place."""
        self.status = status
        for target, node in self._target_nodes.items():
            if target.host is None:
                env = next(e for e in self.envs if e.name == target.env)
                node.set_label(self._env_label(env))
            else:
                node.set_label(self._host_label(target.host))

    @property
    def target(self) -> Target | None:
        node = self.cursor_node
        return node.data if node is not None else None

    def on_tree_node_highlighted(self, event) -> None:
        event.stop()
        if event.node.data is not None and not self._quiet:
            self.post_message(self.Selected(event.node.data))
