"""The service manager's answer, parsed (issue 16): the ``service`` section that the
status script and ``capview check`` print (scripts/service.py ``service_state``) into a
:class:`ServiceState`. Every value is host text: numbers are parsed strictly, words are
kept only when they look like systemd's own words, so nothing odd reaches a front."""

from __future__ import annotations

import re

from capview.config import Settings
from capview.engine.model import ServiceState
from capview.engine.scripts.shell import one_line

_WORD = re.compile(r"[a-z][a-z0-9-]{0,31}")  # systemd state names: active, auto-restart ...


def _int(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() and len(text) < 19 else None


def _word(text: str | None) -> str | None:
    return text if text is not None and _WORD.fullmatch(text) else None


def parse_service(settings: Settings, body: str | None) -> ServiceState:
    """``body``: the section's text, or None when the script printed none (manager
    ``none``, or a ``command`` manager without a status command)."""
    svc = settings.service
    base = ServiceState(manager=svc.manager, unit=svc.unit if svc.manager == "systemd-user" else None)
    if body is None:
        return base
    values: dict[str, str] = {}
    other: list[str] = []
    for line in body.splitlines():
        key, sep, value = line.partition("=")
        if sep and re.fullmatch(r"[A-Za-z_]{1,40}", key):
            values[key] = value.strip()
        elif line.strip():
            other.append(line)
    if svc.manager == "command":
        code = _int(values.get("status_exit"))
        return ServiceState(manager="command", status_exit=code,
                            error=None if code is not None else "the status command gave no exit code")
    active = _word(values.get("ActiveState"))
    if active is None:  # systemctl could not answer (no user manager, no bus...)
        return ServiceState(manager=svc.manager, unit=base.unit,
                            error=one_line("\n".join(other) or "systemctl --user show gave no ActiveState", 200))
    pid = _int(values.get("MainPID"))
    return ServiceState(
        manager=svc.manager, unit=base.unit,
        load_state=_word(values.get("LoadState")), active_state=active, sub_state=_word(values.get("SubState")),
        restarts=_int(values.get("NRestarts")), main_status=_int(values.get("ExecMainStatus")),
        main_pid=pid or None, since_seconds=_since(values.get("StateChangeTimestampMonotonic"), values.get("uptime")),
    )


def _since(changed_us: str | None, uptime: str | None) -> float | None:
    """Seconds in the current state: the host's uptime minus systemd's monotonic time of
    the last state change (both since boot); None when either is missing or zero."""
    changed = _int(changed_us)
    try:
        up = float(uptime) if uptime and re.fullmatch(r"\d{1,12}(\.\d{1,9})?", uptime) else None
    except ValueError:
        up = None
    if not changed or up is None:
        return None
    return round(max(0.0, up - changed / 1e6), 3)


def advice(env: str, state: ServiceState) -> str:
    """A down service as one line naming what to do next (check, releases)."""
    what = state.unit or "the service"
    return (f"{what} is {state.summary} - see: capview logs {env}; "
            f"start it again: capview restart {env}")
