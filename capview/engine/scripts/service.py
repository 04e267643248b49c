"""Service control and the on-host health poll: the pieces every switch is made of.

systemd-user units (socket activation included), a ``command`` manager (the user's own
start/stop/status/logs commands, run in deploy_path), or none.
"""

from __future__ import annotations

import math

from capview.config import HealthConfig, Settings
from capview.engine.scripts.shell import q


def reset_failed(unit: str) -> str:
    """sh: let a unit that crashed earlier be started again (never fails)."""
    return f"systemctl --user reset-failed {q(unit)} 2>/dev/null || true\n"


def sockets(unit: str) -> str:
    """sh: ``$cv_sockets`` = the socket units that activate ``unit`` (systemd socket
    activation), empty for a plain service. Names come from systemd (no spaces).

    An earlier value in the same script wins: systemd forgets a socket that is stopped
    and not enabled, and a stop followed by a start must start the same sockets."""
    return (f"[ -n \"${{cv_sockets:-}}\" ] || "
            f"cv_sockets=$(systemctl --user show -p TriggeredBy --value {q(unit)} 2>/dev/null || true)\n")


def service_stop(s: Settings) -> str:
    """Stop the app completely: a socket-activated unit's sockets too, or the next
    connection would start it again (migrate and a failed first release rely on that)."""
    svc = s.service
    if svc.manager == "systemd-user":
        unit = q(svc.unit or "")
        return sockets(svc.unit or "") + f"systemctl --user stop {unit} $cv_sockets\n"
    if svc.manager == "command":
        return f"( cd {q(s.deploy_path)} && {svc.stop} )\n"
    return ":\n"


def service_start(s: Settings) -> str:
    svc = s.service
    if svc.manager == "systemd-user":
        return (sockets(svc.unit or "") + reset_failed(svc.unit or "")
                + f"systemctl --user start $cv_sockets {q(svc.unit or '')}\n")
    if svc.manager == "command":
        return f"( cd {q(s.deploy_path)} && {svc.start} )\n"
    return ":\n"


def service_logs(s: Settings, lines: int = 200) -> str:
    """Print the service's recent output and status (for health.log); never fails."""
    svc = s.service
    if svc.manager == "systemd-user":
        unit = q(svc.unit or "")
        return (
            f"{{ journalctl --user -u {unit} -n {lines} --no-pager 2>/dev/null | grep -v '^-- No entries --' ; "
            f"systemctl --user status {unit} -n {lines} --no-pager 2>&1; }} || true\n"
        )
    if svc.manager == "command":
        cmd = svc.logs or svc.status
        return f"( cd {q(s.deploy_path)} && {cmd} ) 2>&1 | tail -n {lines} || true\n" if cmd else ":\n"
    return ":\n"


def is_active(s: Settings, flag: str, value: str | None = None) -> str:
    """sh: set ``$flag`` to ``value`` (default: a word saying why) when the service is not
    running; nothing without a way to tell."""
    if s.service.manager == "systemd-user":
        return f"systemctl --user is-active --quiet {q(s.service.unit or '')} || {flag}={value or 'inactive'}\n"
    if s.service.manager == "command" and s.service.status:
        return f"( cd {q(s.deploy_path)} && {s.service.status} ) >/dev/null 2>&1 || {flag}={value or 'not-running'}\n"
    return ""


def retag_image(s: Settings, version_expr: str) -> str:
    """sh: tag ``<image>:<version>`` as ``<image>:current`` (nothing without an image).
    ``version_expr`` is sh yielding a validated version (a quoted literal or ``"$1"``)."""
    if s.build is None or not s.build.image:
        return ""
    return f"podman tag {q(s.build.image)}:{version_expr} {q(s.build.image + ':current')}\n"


def image_exists(s: Settings, version_expr: str) -> str | None:
    """sh test: the release's image still exists (None without an image)."""
    if s.build is None or not s.build.image:
        return None
    return f"podman image exists {q(s.build.image)}:{version_expr}"


def health_function(s: Settings, name: str = "cv_health") -> str:
    """sh defining ``name``: poll until healthy (exit 0) or out of time (exit 1), printing
    the frame ``health ok <tries>`` or ``health failed <last status>``. It runs in a
    subshell, so its ``exit`` ends only the poll. Needs the frames prelude.

    The service being up is the second condition (or the only one without a URL).
    (Issue 16 slots in here: stop polling as soon as the unit is known dead.)"""
    h: HealthConfig | None = s.health
    active = is_active(s, "code")
    if h is None:
        return (f"{name}() (\n"
                "  code=ok\n"
                + (f"  {active}" if active else "")
                + '  mark health "$code"\n'
                '  [ "$code" = ok ]\n'
                ")\n")
    tries = max(1, math.ceil(h.timeout / h.interval))
    per_try = max(1, min(10, math.ceil(h.interval * 2)))
    return (
        f"{name}() (\n"
        f"  url={q(h.url)}\n"
        "  probe() {\n"
        f'    if command -v curl >/dev/null 2>&1; then curl -s -o /dev/null -w "%{{http_code}}" --max-time {per_try} "$url" || true\n'
        f'    else wget -q -O /dev/null -T {per_try} -S "$url" 2>&1 | awk \'/HTTP\\//{{c=$2}} END{{print c}}\' || true; fi\n'
        "  }\n"
        f"  i=0; deadline=$(( $(date +%s) + {math.ceil(h.timeout)} ))\n"
        "  while :; do\n"
        "    i=$((i+1))\n"
        "    code=$(probe)\n"
        + (f"    {active}" if active else "")
        + f'    if [ "$code" = {q(str(h.expect_status))} ]; then mark health ok "$i"; exit 0; fi\n'
        f'    if [ "$i" -ge {tries} ] || [ "$(date +%s)" -ge "$deadline" ]; then mark health failed "${{code:-none}}"; exit 1; fi\n'
        f"    sleep {h.interval:g}\n"
        "  done\n"
        ")\n"
    )
