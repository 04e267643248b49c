"""Service control and the on-host health poll: the pieces every switch is made of.

systemd-user units (socket activation included), a ``command`` manager (the user's own
start/stop/status/logs commands, run in deploy_path), or none.
"""

from __future__ import annotations

import math

from capview.config import HealthConfig, Settings
from capview.engine.layout import HostPaths
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
            f"{{ journalctl --user -u {unit} -n {lines} --no-pager -a 2>/dev/null | grep -v '^-- No entries --' ; "
            f"systemctl --user status {unit} -n {lines} --no-pager 2>&1; }} || true\n"
        )
    if svc.manager == "command":
        cmd = svc.logs or svc.status
        return f"( cd {q(s.deploy_path)} && {cmd} ) 2>&1 | tail -n {lines} || true\n" if cmd else ":\n"
    return ":\n"


def service_status(s: Settings) -> str:
    """Print the manager's status of the service without its log lines (the journal may
    hold secrets an app logs; it goes to health.log only); never fails."""
    svc = s.service
    if svc.manager == "systemd-user":
        return f"systemctl --user status {q(svc.unit or '')} -n 0 --no-pager 2>&1 | head -n 30 || true\n"
    if svc.manager == "command" and svc.status:
        return f"( cd {q(s.deploy_path)} && {svc.status} ) 2>&1 | tail -n 20 || true\n"
    return ":\n"


def is_active(s: Settings, flag: str, value: str | None = None) -> str:
    """sh: set ``$flag`` to ``value`` (default: a word saying why) when the service is not
    running; nothing without a way to tell."""
    if s.service.manager == "systemd-user":
        return f"systemctl --user is-active --quiet {q(s.service.unit or '')} || {flag}={value or 'inactive'}\n"
    if s.service.manager == "command" and s.service.status:
        return f"( cd {q(s.deploy_path)} && {s.service.status} ) >/dev/null 2>&1 || {flag}={value or 'not-running'}\n"
    return ""


# The unit properties the status read asks for (parsed by engine/service_state.py).
UNIT_PROPERTIES = ("LoadState", "ActiveState", "SubState", "NRestarts", "ExecMainStatus", "MainPID",
                   "StateChangeTimestampMonotonic")
STATUS_TIMEOUT = 10  # seconds a ``command`` manager's status command may take in a listing


def service_state(s: Settings) -> str:
    """sh printing the section ``service``: ``key=value`` lines of what the manager says
    (systemd: the unit's properties and the host's uptime, to tell how long it has been in
    its state; ``command``: ``status_exit=N``). Never fails; needs the frames prelude."""
    svc = s.service
    if svc.manager == "systemd-user":
        props = " ".join(f"-p {p}" for p in UNIT_PROPERTIES)
        return ("sec service\n"
                f"systemctl --user show {props} {q(svc.unit or '')} 2>&1 | head -c 4096 || true\n"
                "printf 'uptime=%s\\n' \"$(cut -d' ' -f1 /proc/uptime 2>/dev/null || true)\"\n")
    if svc.manager == "command" and svc.status:
        return ("sec service\n"
                f"if ( cd {q(s.deploy_path)} && timeout {STATUS_TIMEOUT} sh -c {q(svc.status)} ) >/dev/null 2>&1; "
                "then cv_st=0; else cv_st=$?; fi\n"
                "printf 'status_exit=%s\\n' \"$cv_st\"\n")
    return ""


def service_state_if_deployed(s: Settings) -> str:
    """sh: :func:`service_state`, only on a host where ``current`` exists (a host not yet
    deployed has no service to be down); ``capview check`` runs it before the preflight."""
    probe = service_state(s)
    if not probe:
        return ""
    current = HostPaths(s.deploy_path).current
    return f"if [ -L {q(current)} ]; then\n" + "".join("  " + line + "\n" for line in probe.splitlines()) + "fi\n"


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


# The health poll's pause: from FIRST_POLL_MS, doubling, up to the smaller of the
# configured interval and MAX_POLL_MS (issue 16: an app up in 0.2 s is seen at once).
FIRST_POLL_MS = 20
MAX_POLL_MS = 250


def dead_check(s: Settings) -> str:
    """sh for inside the health poll: set ``$code`` to a word when the service is not up,
    and ``$dead`` to the reason when it is known dead (it will not answer however long we
    wait): systemd ``failed`` / ``inactive`` after the start, ``auto-restart`` or a restart
    counter that moved (a crash loop); a status command that fails after it succeeded.
    Only our words, systemd's state words and numbers reach ``$dead`` (JSON-safe)."""
    svc = s.service
    if svc.manager == "systemd-user":
        return (
            f"st=$(systemctl --user show -p ActiveState -p SubState -p NRestarts -p ExecMainStatus {q(svc.unit or '')} 2>/dev/null || true)\n"
            "as='' ss='' nr='' ex=''\n"
            "for kv in $st; do case $kv in ActiveState=*) as=${kv#*=} ;; SubState=*) ss=${kv#*=} ;; "
            "NRestarts=*) nr=${kv#*=} ;; ExecMainStatus=*) ex=${kv#*=} ;; esac; done\n"
            "case $as in ''|*[!a-z-]*) as=unknown ;; esac\n"
            "case $ss in ''|*[!a-z-]*) ss=unknown ;; esac\n"
            "case $nr in ''|*[!0-9]*) nr=0 ;; esac\n"
            "case $ex in ''|*[!0-9]*) ex=unknown ;; esac\n"
            "[ -n \"$nr0\" ] || nr0=$nr\n"
            '[ "$as" = active ] || code=$as\n'
            'case $as in failed|inactive) dead="the service is $as/$ss (exit $ex)" ;; esac\n'
            '[ "$ss" != auto-restart ] || dead="the service is crash-looping (exit $ex, restarting)"\n'
            '[ "$nr" -le "$nr0" ] || dead="the service is crash-looping (restarted $nr times, exit $ex)"\n'
        )
    if svc.manager == "command" and svc.status:
        return (f"if ( cd {q(s.deploy_path)} && {svc.status} ) >/dev/null 2>&1; then up=1\n"
                "else code=not-running; [ \"$up\" = 0 ] || dead='the status command failed after it had succeeded'; fi\n")
    return ""


def health_function(s: Settings, name: str = "cv_health") -> str:
    """sh defining ``name``: poll until healthy (exit 0), out of time (exit 1) or the
    service known dead (exit 3: it will not answer, so waiting out the timeout only
    lengthens the outage), printing the frame ``health ok <tries>``, ``health failed
    <last status>`` or ``health dead <reason>``; the reason also goes to the file
    ``$cv_why`` when set. It runs in a subshell, so its ``exit`` ends only the poll.
    Needs the frames prelude.

    The service being up is the second condition (or the only one without a URL). The
    poll pauses FIRST_POLL_MS, doubling up to MAX_POLL_MS (or ``interval`` if smaller)."""
    h: HealthConfig | None = s.health
    active = is_active(s, "code")
    if h is None:
        return (f"{name}() (\n"
                "  code=ok\n"
                + (f"  {active}" if active else "")
                + '  mark health "$code"\n'
                '  [ "$code" = ok ]\n'
                ")\n")
    per_try = max(1, min(10, math.ceil(h.interval * 2)))
    cap = max(FIRST_POLL_MS, min(MAX_POLL_MS, int(h.interval * 1000)))
    dead = dead_check(s)
    return (
        f"{name}() (\n"
        f"  url={q(h.url)}\n"
        "  probe() {\n"
        f'    if command -v curl >/dev/null 2>&1; then curl -s -o /dev/null -w "%{{http_code}}" --max-time {per_try} "$url" || true\n'
        f'    else wget -q -O /dev/null -T {per_try} -S "$url" 2>&1 | awk \'/HTTP\\//{{c=$2}} END{{print c}}\' || true; fi\n'
        "  }\n"
        "  ms() { t=$(date +%s%N 2>/dev/null || date +%s); case $t in *N) echo $(( ${t%N} * 1000 )) ;; "
        "*) echo $(( t / 1000000 )) ;; esac; }\n"
        f"  i=0 d={FIRST_POLL_MS} up=0 nr0='' deadline=$(( $(ms) + {math.ceil(h.timeout * 1000)} ))\n"
        "  while :; do\n"
        "    i=$((i+1)) dead=''\n"
        "    code=$(probe)\n"
        + "".join(f"    {line}\n" for line in dead.splitlines())
        + f'    if [ -z "$dead" ] && [ "$code" = {q(str(h.expect_status))} ]; then mark health ok "$i"; exit 0; fi\n'
        '    if [ -n "$dead" ]; then mark health dead "$dead"; [ -z "${cv_why:-}" ] || printf \'%s\\n\' "$dead" > "$cv_why"; exit 3; fi\n'
        '    if [ "$(ms)" -ge "$deadline" ]; then mark health failed "${code:-none}"; exit 1; fi\n'
        "    sleep \"$((d / 1000)).$(printf '%03d' $((d % 1000)))\"\n"
        f"    d=$((d * 2)); [ \"$d\" -le {cap} ] || d={cap}\n"
        "  done\n"
        ")\n"
    )
