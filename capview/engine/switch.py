"""Service control, the atomic ``current`` swap, and the on-host health poll.

These builders are shared by deploy, rollback and migrate so that every switch
is the same: stop -> ``ln -s`` to a temp name + ``mv -T`` (rename(2), atomic)
-> retag image -> start, with the downtime window measured on the host.
"""

from __future__ import annotations

import math
from textwrap import indent

from capview.config import HealthConfig, Settings
from capview.engine.layout import HostPaths, validate_version
from capview.engine.script import MARK, q


def _reset_failed(unit: str) -> str:
    """sh: let a unit that crashed earlier be started again (never fails)."""
    return f"systemctl --user reset-failed {q(unit)} 2>/dev/null || true\n"


def _sockets(unit: str) -> str:
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
        return _sockets(svc.unit or "") + f"systemctl --user stop {unit} $cv_sockets\n"
    if svc.manager == "command":
        return f"( cd {q(s.deploy_path)} && {svc.stop} )\n"
    return ":\n"


def service_start(s: Settings) -> str:
    svc = s.service
    if svc.manager == "systemd-user":
        return (_sockets(svc.unit or "") + _reset_failed(svc.unit or "")
                + f"systemctl --user start $cv_sockets {q(svc.unit or '')}\n")
    if svc.manager == "command":
        return f"( cd {q(s.deploy_path)} && {svc.start} )\n"
    return ":\n"


def service_logs(s: Settings, lines: int = 200) -> str:
    """Print the service's recent output (for health.log); never fails."""
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


def now_expr() -> str:
    # GNU date has %N; elsewhere fall back to whole seconds.
    return "$(date +%s.%N 2>/dev/null | sed 's/N$/0/')"


def atomic_switch(paths: HostPaths, version: str) -> str:
    """Point ``current`` at releases/<version> with one rename; ``current`` is relative."""
    target = f"releases/{validate_version(version)}"
    return (
        f"cd {q(paths.root)}\n"
        f"[ -d {q(target)} ] || {{ echo {q(target + ' does not exist')} >&2; exit 1; }}\n"
        f"tmp=current.tmp.$$\n"
        f'rm -f "$tmp"\n'
        f'ln -s {q(target)} "$tmp"\n'
        f'mv -T "$tmp" current\n'
    )


def retag_image(s: Settings, version: str) -> str:
    if s.build is None or not s.build.image:
        return ""
    image = s.build.image
    return f"podman tag {q(f'{image}:{version}')} {q(f'{image}:current')}\n"


def switch_script(s: Settings, version: str) -> str:
    """stop -> swap -> retag -> start, printing the host-measured downtime window.

    A socket-activated systemd unit instead gets swap -> retag -> restart: its socket
    keeps listening through the restart, so connections wait in the backlog for the
    new release instead of being refused or reset (a stop first would let the socket
    start the old release again before the swap). Two versions still never run at once.
    If start fails we still print the window and exit non-zero; the caller
    then reverts to the previous release the same way.
    """
    paths = HostPaths(s.deploy_path)
    pidfile = q(switch_pidfile(paths))
    swap = (atomic_switch(paths, version)
            + f"printf '%s switched %s\\n' {MARK} {q(version)} || :\n"
            + retag_image(s, version))
    head = (
        # Once begun, the switch runs to its end even if capview vanishes (killed, or the
        # connection cut): sshd then closes our pipes, so SIGHUP/SIGPIPE are ignored and a
        # marker written to a closed pipe is not fatal. Its pid file lets a reconnecting
        # capview wait for it (wait_for_switch) before touching the service again.
        "trap '' HUP PIPE\n"
        f"printf '%s\\n' \"$$\" > {pidfile} 2>/dev/null || :\n"
        f"trap 'rm -f {pidfile}' EXIT\n"
        "start_rc=0\n"
    )
    mark_t0 = f"t0={now_expr()}\nprintf '%s stop_begun %s\\n' {MARK} \"$t0\" || :\n"
    if s.service.manager == "systemd-user":
        unit = q(s.service.unit or "")
        body = (
            _sockets(s.service.unit or "")
            + 'if [ -n "$cv_sockets" ]; then\n'
            + f"  printf '%s held_by %s\\n' {MARK} \"$cv_sockets\" || :\n"
            + "  systemctl --user start $cv_sockets || start_rc=$?\n"
            + indent(swap, "  ")
            + indent(mark_t0, "  ")
            + indent(_reset_failed(s.service.unit or ""), "  ")
            + f"  systemctl --user restart {unit} || start_rc=$?\n"
            + "else\n"
            + indent(mark_t0, "  ")
            + f"  systemctl --user stop {unit}\n"
            + indent(swap, "  ")
            + indent(_reset_failed(s.service.unit or ""), "  ")
            + f"  systemctl --user start {unit} || start_rc=$?\n"
            + "fi\n"
        )
    else:
        body = (mark_t0 + service_stop(s) + swap
                + "{\n" + service_start(s) + "} || start_rc=$?\n")
    return (
        head + body
        + f"t1={now_expr()}\n"
        + f"printf '%s downtime %s\\n' {MARK} \"$(awk -v a=\"$t0\" -v b=\"$t1\" 'BEGIN {{printf \"%.3f\", b - a}}')\" || :\n"
        + '[ "$start_rc" = 0 ] || { echo "service start failed (exit $start_rc)" >&2; exit 1; }\n'
    )


def held_note(marks: dict[str, str]) -> str:
    """Phase detail: who held the connections while the service restarted."""
    held = marks.get("held_by", "").strip()
    return f" (socket activation: {held} held connections)" if held else ""


def switch_pidfile(paths: HostPaths) -> str:
    return paths.meta + "/switch.pid"


def wait_for_switch(paths: HostPaths, limit: float = 120) -> str:
    """Wait (bounded) until a switch script whose client vanished has finished."""
    return (
        f"sp=$(cat {q(switch_pidfile(paths))} 2>/dev/null || true); i=0\n"
        f'while [ -n "$sp" ] && kill -0 "$sp" 2>/dev/null && [ "$i" -lt {int(limit * 10)} ]; do sleep 0.1; i=$((i+1)); done\n'
    )


def health_script(s: Settings) -> str:
    """Poll the health URL on the host until it answers expect_status or times out."""
    h: HealthConfig | None = s.health
    active = ""
    if s.service.manager == "systemd-user":
        active = f"systemctl --user is-active --quiet {q(s.service.unit or '')} || code=inactive\n"
    elif s.service.manager == "command" and s.service.status:
        active = f"( cd {q(s.deploy_path)} && {s.service.status} ) >/dev/null 2>&1 || code=not-running\n"
    if h is None:
        # No URL: the service being up is the health check.
        return "code=ok\n" + active + f'printf "%s health %s\\n" {MARK} "$code"\n[ "$code" = ok ]\n'
    tries = max(1, math.ceil(h.timeout / h.interval))
    per_try = max(1, min(10, math.ceil(h.interval * 2)))
    return (
        f"url={q(h.url)}\n"
        f"probe() {{\n"
        f'  if command -v curl >/dev/null 2>&1; then curl -s -o /dev/null -w "%{{http_code}}" --max-time {per_try} "$url" || true\n'
        f'  else wget -q -O /dev/null -T {per_try} -S "$url" 2>&1 | awk \'/HTTP\\//{{c=$2}} END{{print c}}\' || true; fi\n'
        "}\n"
        f"i=0; deadline=$(( $(date +%s) + {math.ceil(h.timeout)} ))\n"
        "while :; do\n"
        "  i=$((i+1))\n"
        "  code=$(probe)\n"
        + "  " + active.replace("\n", "\n  ").rstrip() + "\n"
        f'  if [ "$code" = {q(str(h.expect_status))} ]; then printf "%s health ok %s\\n" {MARK} "$i"; exit 0; fi\n'
        f'  if [ "$i" -ge {tries} ] || [ "$(date +%s)" -ge "$deadline" ]; then printf "%s health failed %s\\n" {MARK} "${{code:-none}}"; exit 1; fi\n'
        f"  sleep {h.interval:g}\n"
        "done\n"
    )


def unavailable_since(stop_begun: str | None) -> tuple[str, dict[str, str]]:
    """Shell lines computing ``$unavail``: seconds from the service stop to now (the
    first healthy answer), the window a proxy in front actually has to hide."""
    try:
        t0 = float(stop_begun) if stop_begun else None
    except ValueError:
        t0 = None
    if t0 is None:
        return "", {}
    return (f"unavail=$(awk -v a={t0:.6f} -v b=\"$(date +%s.%N 2>/dev/null | sed 's/N$/0/')\" "
            "'BEGIN {printf \"%.3f\", b - a}')\n", {"unavailable": "$unavail"})
