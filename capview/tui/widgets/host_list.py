"""Left pane of the main screen: hosts grouped by environment.

Each host line shows reachability, its current release, a lock holder and whether
it needs migrating; labels are updated in place on every refresh (no rebuild, so
the cursor and expansion never jump). Selecting an environment means "all of its
hosts"; selecting a host means just that one.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.message import Message
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from capview.engine.model import HostStatus
from capview.tui.backend import EnvInfo
from capview.tui.text import clean_line


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


class HostList(Tree[Target]):
    DEFAULT_CSS = """
    HostList { width: 1fr; overflow-x: hidden; }
    """

    class Selected(Message):
        """The highlighted environment or host changed."""

        def __init__(self, target: Target) -> None:
            super().__init__()
            self.target = target

    def __init__(self, envs: list[EnvInfo], *, id: str | None = None) -> None:
        super().__init__("hosts", id=id)
        self.show_root = False
        self.guide_depth = 2
        self.envs = envs
        self.status: dict[str, HostStatus] = {}
        self._target_nodes: dict[Target, TreeNode[Target]] = {}
        self.filter_text = ""

    def on_mount(self) -> None:
        self._rebuild()

    def _rebuild(self) -> None:
        self.clear()
        self._target_nodes.clear()
        for env in self.envs:
            hosts = [h for h in env.hosts if self._matches(env.name, h)]
            if self.filter_text and not hosts:
                continue
            t = Target(env.name)
            node = self.root.add(self._env_label(env), data=t, expand=True)
            self._target_nodes[t] = node
            for h in hosts:
                ht = Target(env.name, h)
                self._target_nodes[ht] = node.add_leaf(self._host_label(h), data=ht)

    def _matches(self, env: str, host: str) -> bool:
        f = self.filter_text.lower()
        if not f:
            return True
        st = self.status.get(host)
        hay = f"{env} {host} {st.current or '' if st else ''}".lower()
        return f in hay

    def set_filter(self, text: str) -> None:
        if text == self.filter_text:
            return
        keep = self.cursor_node.data if self.cursor_node is not None else None
        self.filter_text = text
        self._rebuild()
        self.select_target(keep)

    def select_target(self, target: Target | None) -> None:
        node = self._target_nodes.get(target) if target else None
        if node is None:
            # the first host, or the first environment
            node = next(iter(self._target_nodes.values()), None)
        if node is not None:
            self.move_cursor(node)

    def _env_label(self, env: EnvInfo) -> Text:
        hosts = [self.status.get(h) for h in env.hosts]
        down = sum(1 for s in hosts if s is not None and not s.reachable)
        t = Text()
        t.append(env.name, style="bold")
        t.append(f"  {len(env.hosts)} host{'s' if len(env.hosts) != 1 else ''}", style="dim")
        if down:
            t.append(f"  {down} down", style="red")
        dead = sum(1 for s in hosts if s is not None and s.reachable and s.service.down)
        if dead:
            t.append(f"  {dead} service{'s' if dead != 1 else ''} down", style="bold red")
        return t

    def _host_label(self, host: str) -> Text:
        st = self.status.get(host)
        t = Text(no_wrap=True, overflow="ellipsis")
        if st is None:
            t.append("○ ", style="dim")
            t.append(host)
            t.append("  …", style="dim")
            return t
        if not st.reachable:
            t.append("✗ ", style="bold red")
            t.append(host, style="red")
            t.append("  unreachable", style="red")
            return t
        marker, style, word = SERVICE_MARK.get(st.service.condition, SERVICE_MARK["running"])
        t.append(marker, style=style)
        t.append(host)
        t.append("  ")
        t.append(clean_line(st.current) if st.current else "—", style="cyan" if st.current else "dim")
        if st.lock is not None:
            t.append("  locked", style="yellow")
        if st.needs_migration:
            t.append("  legacy", style="magenta")
        if word:
            t.append(f"  {word}", style=style)
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

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted[Target]) -> None:
        event.stop()
        if event.node.data is not None:
            self.post_message(self.Selected(event.node.data))
