"""``d``: what to release where. Returns a :class:`DeployRequest`, or None when cancelled.

Nothing starts until the version is checked against what the dashboard knows of the
chosen hosts: a valid release name (the engine's rule), not already on any of them
(releases are immutable: the engine would take the lock, then refuse at setup), and no
host locked by another operation. The fields scroll; the buttons always show.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, RadioSet, Select, Static

from capview.config import Environment
from capview.engine.model import HostStatus
from capview.errors import CapviewError
from capview.tui.text import clean_line, plural
from capview.tui.widgets.toggles import Radio, Tick

WHOLE = "__all__"


@dataclass(frozen=True)
class DeployRequest:
    env: str
    version: str
    host: str | None = None
    strategy: str = "rolling"
    dry_run: bool = False


def problems(version: str, hosts: list[str], status: dict[str, HostStatus]) -> list[str]:
    """Why deploying ``version`` to ``hosts`` would fail before it changes anything ([] if it would not).
    A warning the engine can give before a deploy (schema changes) belongs here too."""
    from capview.engine.layout import validate_version

    try:
        validate_version(version)
    except CapviewError as exc:
        return [exc.message]
    out = []
    have = [h for h in hosts if status.get(h) and any(r.version == version for r in status[h].releases)]
    if have:
        out.append(f"{version} already exists on {', '.join(have)}: releases are immutable, pick a new version")
    for h in hosts:
        st = status.get(h)
        if st is not None and st.lock is not None:
            out.append(f"{h} is locked by {clean_line(st.lock.operator)} ({clean_line(st.lock.operation)}): "
                       "wait for it, or unlock (u)")
    return out


class DeployDialog(ModalScreen["DeployRequest | None"]):
    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="deploy.cancel"),
        Binding("ctrl+s", "submit", "Deploy", id="deploy.submit"),
    ]

    def __init__(self, envs: list[Environment], status: dict[str, HostStatus], *, env: str,
                 host: str | None, version: str) -> None:
        super().__init__()
        self.envs = {e.name: e for e in envs}
        self.status = status
        self.env = env if env in self.envs else next(iter(self.envs))
        self.host = host
        self.version = version

    def _host_options(self, env: str) -> list[tuple[str, str]]:
        e = self.envs[env]
        return [(f"all {plural(len(e.hosts), 'host')} of {env}", WHOLE)] + [(h.name, h.name) for h in e.hosts]

    def compose(self) -> ComposeResult:
        e = self.envs[self.env]
        compact = self.app.size.height < 32
        with Vertical(id="dialog", classes="dialog form"):
            yield Label("Deploy a release", id="dialog-title")
            with VerticalScroll(id="dialog-scroll"):
                yield Label("Version", classes="field-label")
                yield Input(self.version, id="version", placeholder="e.g. v1.4.0 (default: timestamp-commit)",
                            compact=compact)
                yield Static("", id="version-error", classes="field-error")
                with Horizontal(classes="field-row"):
                    with Vertical():
                        yield Label("Environment", classes="field-label")
                        yield Select([(n, n) for n in self.envs], value=self.env, allow_blank=False, id="env",
                                     compact=compact)
                    with Vertical():
                        yield Label("Hosts", classes="field-label")
                        yield Select(self._host_options(self.env), value=self.host or WHOLE, allow_blank=False,
                                     id="host", compact=compact)
                with Horizontal(classes="field-row"):
                    with Vertical():
                        yield Label("Strategy", classes="field-label")
                        with RadioSet(id="strategy", compact=compact):
                            yield Radio("rolling: one host at a time", value=e.strategy != "parallel", id="rolling")
                            yield Radio("parallel: all at once", value=e.strategy == "parallel", id="parallel")
                    with Vertical(classes="narrow"):
                        yield Label("Options", classes="field-label")
                        yield Tick("dry run", id="dry-run", compact=compact)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="no")
                yield Button("Deploy", id="yes", variant="primary")
            yield Static(Text("enter in Version deploys · ctrl+s deploys · esc cancels", style="dim"),
                         id="dialog-hint")

    def on_mount(self) -> None:
        box = self.query_one("#version", Input)
        if self.app.animation_level == "none":
            box.cursor_blink = False
        box.focus()

    @on(Select.Changed, "#env")
    def _env_changed(self, event: Select.Changed) -> None:
        if event.value == self.env or event.value is Select.BLANK:
            return
        self.env = str(event.value)
        host = self.query_one("#host", Select)
        host.set_options(self._host_options(self.env))
        host.value = WHOLE

    @on(Input.Changed, "#version")
    def _clear_error(self) -> None:
        self.query_one("#version-error", Static).update("")

    @on(Input.Submitted, "#version")
    def _submitted(self) -> None:
        self.action_submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "yes":
            self.action_submit()
        else:
            self.dismiss(None)

    def selected_hosts(self) -> list[str]:
        host = self.query_one("#host", Select).value
        if host in (WHOLE, Select.BLANK):
            return [h.name for h in self.envs[self.env].hosts]
        return [str(host)]

    def request(self) -> DeployRequest | None:
        version = self.query_one("#version", Input).value.strip()
        found = problems(version, self.selected_hosts(), self.status)
        if found:
            self.query_one("#version-error", Static).update(Text("\n".join(found)))
            return None
        host = self.query_one("#host", Select).value
        strategy = "parallel" if self.query_one("#parallel", Radio).value else "rolling"
        return DeployRequest(
            env=self.env, version=version, host=None if host in (WHOLE, Select.BLANK) else str(host),
            strategy=strategy, dry_run=self.query_one("#dry-run", Tick).value,
        )

    def action_submit(self) -> None:
        req = self.request()
        if req is not None:
            self.dismiss(req)

    def action_cancel(self) -> None:
        self.dismiss(None)
