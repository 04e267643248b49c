"""``capview logs``'s host script: the service's own output (engine/logs.py streams it).

systemd-user units are read with ``journalctl --user -u UNIT``; ``service.logs`` replaces
that with the operator's command, which gets ``CAPVIEW_LINES``, ``CAPVIEW_FOLLOW`` and
``CAPVIEW_SINCE`` in its environment. The values are validated by engine/logs.py first.
"""

from __future__ import annotations

from capview.config import Settings
from capview.engine.scripts.shell import q
from capview.errors import UsageError


def logs_script(s: Settings, *, lines: int, follow: bool = False, since: str | None = None) -> str:
    """The host script printing the service's logs (and following them with ``follow``)."""
    svc = s.service
    if svc.logs:
        env = (f"CAPVIEW_LINES={int(lines)} CAPVIEW_FOLLOW={'1' if follow else ''} "
               f"CAPVIEW_SINCE={q(since or '')} ")
        return f"cd {q(s.deploy_path)} && {env}exec sh -c {q(svc.logs)}\n"
    if svc.manager == "systemd-user":
        # -a: lines with control bytes are shown (rendered inert by the front), not "[blob data]"
        args = [f"-u {q(svc.unit or '')}", f"-n {int(lines)}", "--no-pager", "-a", "-o short-iso"]
        if since:
            args.append(f"--since {q(since)}")
        if follow:
            args.append("-f")
        # "-- No entries --" is journalctl talking, not the app
        return f"journalctl --user {' '.join(args)} | grep --line-buffered -v '^-- No entries --$' || true\n"
    raise UsageError(
        f"service.manager is {svc.manager} and service.logs is not set: "
        "add service.logs to deploy.yaml (a command printing the app's log, e.g. tail -n \"$CAPVIEW_LINES\" logs/app.log)"
    )
