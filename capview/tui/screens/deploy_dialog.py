"""``d``: what to release where. Returns a :class:`DeployRequest`, or None when cancelled."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, RadioButton, RadioSet, Select

from capview.errors import CapviewError
from capview.tui.backend import EnvInfo

WHOLE = "__all__"


@dataclass(frozen=True)
class DeployRequest:
    env: str
    version: str
    host: str | None = None
    strategy: str = "rolling"
    dry_run: bool = False


def _validate(version: str) -> str | None:
    try:
        from capview.engine.layout import validate_version
    except ImportError:  # pragma: no cover - the engine always ships it
        return None if version else "a version is required"
    try:
        validate_version(version)
    except CapviewError as exc:
        return exc.message
    return None


class DeployDialog(ModalScreen["DeployRequest | None"]):
    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="deploy.cancel"),
        Binding("ctrl+s", "submit", "Deploy", id="deploy.submit"),
    ]

    def __init__(self, envs: list[EnvInfo], *, env: str, host: str | None, version: str) -> None:
        super().__init__()
        self.envs = {e.name: e for e in envs}
        self.env = env if env in self.envs else next(iter(self.envs))
        self.host = host
        self.version = version

    def _host_options(self, env: str) -> list[tuple[str, str]]:
        e = self.envs[env]
        return [(f"all {len(e.hosts)} hosts of {env}", WHOLE)] + [(h, h) for h in e.hosts]

    def compose(self) -> ComposeResult:
        e = self.envs[self.env]
        with Vertical(id="dialog", classes="dialog form"):
            yield Label("Deploy a release", id="dialog-title")
            yield Label("Version", classes="field-label")
            yield Input(self.version, id="version", placeholder="e.g. v1.4.0 (default: timestamp-commit)")
            yield Label("", id="version-error", classes="field-error")
            with Horizontal(classes="field-row"):
                with Vertical():
                    yield Label("Environment", classes="field-label")
                    yield Select([(n, n) for n in self.envs], value=self.env, allow_blank=False, id="env")
                with Vertical():
                    yield Label("Hosts", classes="field-label")
                    yield Select(self._host_options(self.env), value=self.host or WHOLE, allow_blank=False,
                                 id="host")
            with Horizontal(classes="field-row"):
                with Vertical():
                    yield Label("Strategy", classes="field-label")
                    with RadioSet(id="strategy"):
                        yield RadioButton("rolling (one host at a time)",
                                          value=e.strategy != "parallel", id="rolling")
                        yield RadioButton("parallel (all hosts at once)", value=e.strategy == "parallel",
                                          id="parallel")
                with Vertical(classes="narrow"):
                    yield Label("Options", classes="field-label")
                    yield Checkbox("dry run", id="dry-run")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Deploy", id="yes", variant="primary")
                yield Button("Cancel", id="no")

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

    @on(Input.Submitted, "#version")
    def _submitted(self) -> None:
        self.action_submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "yes":
            self.action_submit()
        else:
            self.dismiss(None)

    def request(self) -> DeployRequest | None:
        version = self.query_one("#version", Input).value.strip()
        problem = _validate(version)
        if problem:
            self.query_one("#version-error", Label).update(Text(problem))
            return None
        host = self.query_one("#host", Select).value
        strategy = "parallel" if self.query_one("#parallel", RadioButton).value else "rolling"
        return DeployRequest(
            env=self.env, version=version, host=None if host in (WHOLE, Select.BLANK) else str(host),
            strategy=strategy, dry_run=self.query_one("#dry-run", Checkbox).value,
        )

    def action_submit(self) -> None:
        req = self.request()
        if req is not None:
            self.dismiss(req)

    def action_cancel(self) -> None:
        self.dismiss(None)
