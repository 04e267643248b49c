"""The host-driven switch transaction: everything after a switch begins, as ONE script
that finishes on its own whatever happens to capview or the link.

:func:`transaction` builds it from named steps (small sh functions), top to bottom::

    begin    the lock is ours (or taken here: migrate); the target's image exists (rollback)
    stop     the service stops ($t0: the downtime window begins)
    after_stop   migrate's moves (issue 18: the SQLite snapshot) - the app is stopped
    swap     current -> releases/<target>, one rename of a relative link
    retag    <image>:<target> -> <image>:current
    before_start (issue 18: before_start hooks)
    start    the service starts ($downtime: stop begun -> start returned)
    health   poll on the host until healthy or out of time
  healthy:
    record   target live, previous superseded, history "ok" (a failed write is a warning)
    cleanup  prune (non-fatal; its list on stdin) (issue 18: after_switch hooks)
  not healthy (or not started):
    capture  the service's logs and status -> the target's health.log (mode 0600)
    revert   previous known-good release: stop, swap back, start, health; or, with none,
             stop and put back the ``current`` that was there (never remove one capview
             did not create); or migrate's restore (issue 18: on_failure hooks)
    record   target failed (the reason), history "rolled_back" / "failed"
  always (an EXIT trap, so an early exit ends the same way):
    unlock, the result file, after_unlock (usage cache), the result frames

Socket-activated units (systemd ``TriggeredBy=``) get swap -> retag -> restart instead
of stop ... start: the socket holds connections through the restart (docs/traefik.md).

:func:`launcher` wraps the body: it claims ``.capview/ops/<token>/`` (mkdir, atomic),
saves stdin and the body there, starts the body detached (``setsid``; SIGHUP/SIGPIPE/
SIGINT ignored; output to ``out``) and follows its output until it exits. The result
(``result``: ``key value`` lines) is written before the body ends. :func:`recover` is what
a reconnecting client runs: it never starts anything; it waits for the body and prints
its output and result, or claims a token that never started so it never can.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from capview.config import Settings
from capview.engine.layout import CURRENT_TMP, HostPaths, validate_version
from capview.engine.scripts import lock as lock_sh
from capview.engine.scripts.service import (
    health_function, image_exists, reset_failed, retag_image, service_logs, service_start, service_status,
    service_stop, sockets,
)
from capview.engine.scripts.shell import Frames, append_line, q, write_json

TXN_END = "CV_TXN_END"
Revert = Literal["previous", "first", "restore", "none"]
# what an app's log says when it tried to write a read-only file (upload.readonly_hint's signs)
READONLY_SIGNS = "Permission denied|EACCES|Errno 13|Read-only file"
# Host-side reasons (spliced into JSON as strings: our own words only, no quotes).
REASONS = ("health check failed", "service start failed", "switch failed before current moved",
           "the lock is not held by this operation", "the image of the release no longer exists",
           "locked", "the switch ended early", "migration failed", "before_start hook failed",
           "the data snapshot failed", "restoring the data snapshot failed", "no data snapshot of the target")


@dataclass(frozen=True)
class SwitchPlan:
    """The inputs of one transaction (pure data; the builders below only read it)."""

    op: str  # release | rollback | restart | migrate
    settings: Settings
    token: str  # the operation's lock token: keys .capview/ops/<token>/
    target: str  # the release to run (restart: the current one)
    previous: str | None = None  # the known-good release to go back to
    revert: Revert = "previous"
    live_doc: dict | None = None  # target's release.json once healthy ("downtime" filled on the host)
    live_host: dict[str, str] = field(default_factory=dict)  # more of live_doc filled on the host (migrate)
    superseded_doc: dict | None = None  # previous's release.json once the target is live
    failed_doc: dict | None = None  # target's release.json when it did not come up ("error" filled)
    record: dict = field(default_factory=dict)  # the history record; outcome/to/error/numbers per path
    check_image: bool = False  # refuse, touching nothing, when the target's image is gone
    take_lock: dict | None = None  # owner.json to take the lock with here (migrate)
    precheck: str = ""  # sh before anything (and before take_lock); non-zero: refused, nothing touched
    after_stop: str = ""  # sh with the app stopped, before current moves; non-zero: nothing moves
    before_start: str = ""  # sh after the swap, before the start (issue 18's hooks)
    before_health: str = ""  # sh between the start and the health poll; non-zero: unhealthy
    retag: bool = True  # tag <image>:<target> as :current (migrate has no image of its own)
    restore: str = ""  # sh undoing after_stop (revert="restore")
    cleanup: str = ""  # sh after a healthy switch (prune); reads its list on stdin
    after_unlock: str = ""  # sh after the lock is released (usage cache refresh)
    after_unlock_wait: float | None = None  # seconds waited on it at most (None: to its end)
    after_finish: str = ""  # sh once the result is out (migrate: drop .capview it created)
    keep_lock: bool = False  # issue 17: a fleet keeps the lock until every host is settled
    op_id: str = ""  # issue 17: keys .capview/ops/ instead of the token (a second switch under one lock)
    # issue 18 (engine/scripts/hooks.py, scripts/snapshots.py): each is sh; "" adds nothing to the script
    after_healthy: str = ""  # after a healthy switch was recorded: after_switch hooks, snapshot describe
    on_failure: str = ""  # after a failed switch was recorded: on_failure hooks (never fatal)
    before_revert: str = ""  # sh before switching back to previous (its own guard): the data put back

    @property
    def swaps(self) -> bool:
        return self.op != "restart"

    @property
    def ops_key(self) -> str:
        return self.op_id or self.token


# ---------------------------------------------------------------- steps

def _helpers(plan: SwitchPlan, p: HostPaths, ops: str) -> str:
    return (
        f"cd {q(p.root)} || exit 1\n"
        f"ops={q(ops)}\n"
        f"target={q(validate_version(plan.target))} op_name={q(plan.op)}\n"
        f"previous={q(validate_version(plan.previous) if plan.previous else '')}\n"
        "outcome='' reason='' stage=begun downtime='' sw_downtime='' unavail='' t0='' unlocked=no cv_finished=''\n"
        "cv_sockets='' cv_start_reason=''\n"
        "t_open='' health_s='' cv_why=\"$ops/why\"\n"  # issue 16: first stop begun, health time, death reason
        f"printf '%s\\n' \"$$\" > \"$ops/pid\"; printf '%s\\n' \"$$\" > {q(p.switch_pid)} 2>/dev/null || :\n"
        "now() { date +%s.%N 2>/dev/null | sed 's/N$/0/'; }\n"
        "secs() { awk -v a=\"$1\" -v b=\"$2\" 'BEGIN {printf \"%.3f\", b - a}'; }\n"
        "warn() { mark warn \"$*\"; }\n"
        "# try WHAT CMD...: CMD's failure is a warning naming WHAT (bookkeeping never fails a switch)\n"
        'try() { what=$1; shift; if "$@" 2>"$ops/err"; then return 0; fi; '
        'warn "$what: $(tr \'\\n\' \' \' < "$ops/err")"; return 1; }\n'
    )


def _sh_block(text: str, prefix: str = "  ") -> str:
    return "".join(prefix + line + "\n" for line in text.rstrip("\n").split("\n"))


def _service_steps(plan: SwitchPlan, plain_only: bool) -> str:
    """cv_stop, cv_start, cv_unstop, cv_swap V, cv_retag V, cv_switch_to V [fwd], cv_restart."""
    s = plan.settings
    unit = s.service.unit or ""
    socket_style = s.service.manager == "systemd-user" and not plain_only
    # when nothing moved, the service runs again as it was (migrate's restore does that itself)
    unstop = ":" if plan.revert == "restore" else "cv_start"
    out = (
        "cv_stop() {\n  t0=$(now); mark stop_begun \"$t0\"\n" + _sh_block(service_stop(s)) + "}\n"
        "cv_start() {\n" + _sh_block(service_start(s)) + "}\n"
        f"cv_unstop() {{ {unstop}; }}\n"
        "cv_swap() {  # $1: point current at releases/$1 with one rename\n"
        '  [ -d "releases/$1" ] || { echo "releases/$1 does not exist" >&2; return 1; }\n'
        f'  tmp={CURRENT_TMP}$$; rm -f "$tmp"\n'
        '  if ln -s "releases/$1" "$tmp" && mv -T "$tmp" current; then mark switched "$1"; return 0; fi\n'
        '  rm -f "$tmp"; return 1\n'
        "}\n"
        "cv_retag() {\n" + _sh_block((retag_image(s, '"$1"') if plan.retag else "") or ":") + "}\n"
    )
    plain = (
        "cv_stop || { cv_unstop; return 2; }\n"
        "stage=stopped\n"
        'if [ "${2:-}" = fwd ]; then cv_after_stop || { cv_unstop; return 2; }; fi\n'
        'cv_swap "$1" || { cv_unstop; return 2; }\n'
        "stage=moved\n"
        'cv_retag "$1" || rc=$?\n'
        'if [ "${2:-}" = fwd ]; then cv_before_start || rc=$?; fi\n'
        '[ "$rc" != 0 ] || cv_start || rc=$?\n'
    )
    if socket_style:
        body = (
            sockets(unit)
            + 'if [ -n "$cv_sockets" ]; then\n'
            '  mark held_by "$cv_sockets"\n'
            "  systemctl --user start $cv_sockets || rc=$?\n"
            '  cv_swap "$1" || return 2\n'
            "  stage=moved\n"
            '  cv_retag "$1" || rc=$?\n'
            '  t0=$(now); mark stop_begun "$t0"\n'
            + _sh_block(reset_failed(unit))
            + f"  systemctl --user restart {q(unit)} || rc=$?\n"
            "else\n" + _sh_block(plain) + "fi\n"
        )
        restart = (
            sockets(unit)
            + 'if [ -n "$cv_sockets" ]; then\n'
            '  mark held_by "$cv_sockets"\n'
            "  systemctl --user start $cv_sockets || rc=$?\n"
            '  t0=$(now); mark stop_begun "$t0"\n'
            + _sh_block(reset_failed(unit))
            + f"  systemctl --user restart {q(unit)} || rc=$?\n"
            "else\n"
            "  cv_stop || { cv_unstop; return 2; }\n"
            "  stage=stopped\n"
            "  cv_start || rc=$?\n"
            "fi\n"
        )
    else:
        body = plain
        restart = "cv_stop || { cv_unstop; return 2; }\nstage=stopped\ncv_start || rc=$?\n"
    tail = ('sw_downtime=$(secs "$t0" "$(now)"); mark downtime "$sw_downtime"\n'
            '[ "$rc" = 0 ] || { echo "service start failed (exit $rc)" >&2; return 1; }\n')
    out += (
        "cv_switch_to() {  # $1 [fwd]: 0 started; 1 current moved, the start failed; 2 nothing moved\n"
        + _sh_block("rc=0\n" + body + tail) + "}\n"
        "cv_restart() {  # the current release again: stop -> start (a socket unit: restart)\n"
        + _sh_block("rc=0\n" + restart + "stage=moved\n" + tail) + "}\n"
    )
    return out


def _hook(name: str, body: str) -> str:
    return f"{name}() {{\n  :\n{body}}}\n" if body else f"{name}() {{ :; }}\n"


def _record_steps(plan: SwitchPlan, p: HostPaths) -> str:
    """cv_mark_live, cv_mark_failed, cv_history OUTCOME TO, cv_capture."""
    t, prev = plan.target, plan.previous
    nums = {"downtime": "${downtime:-null}"}
    out = ""
    live = (write_json(p.release_json(t), plan.live_doc, {**plan.live_host, **nums, "unavailable": "${unavail:-null}"})
            if plan.live_doc is not None else ":\n")
    sup = (write_json(p.release_json(prev), plan.superseded_doc)
           if plan.superseded_doc is not None and prev else "")
    out += f"cv_write_live() {{\n  {live}}}\n"
    out += f"cv_write_superseded() {{\n  {sup or ':' + chr(10)}}}\n"
    failed = (write_json(p.release_json(t), plan.failed_doc, {**nums, "error": '\\"$reason\\"'})
              if plan.failed_doc is not None else ":\n")
    out += f"cv_write_failed() {{\n  {failed}}}\n"
    hist = {"downtime": "${downtime:-null}", "unavailable": "${unavail:-null}", "outcome": '\\"$1\\"',
            "health_seconds": "${health_s:-null}"}
    rec_ok = append_line(p.history, {**plan.record, "to": t}, hist)
    rec_back = append_line(p.history, {**plan.record, "to": prev}, {**hist, "error": '\\"$reason\\"'})
    rec_fail = append_line(p.history, plan.record, {**hist, "error": '\\"$reason\\"'})
    out += (
        "cv_write_history() {  # $1: ok | rolled_back | failed\n"
        f"  mkdir -p {q(p.meta)} || return 1\n"
        '  case $1 in\n'
        f"    ok) {rec_ok.rstrip()} ;;\n"
        f"    rolled_back) {rec_back.rstrip()} ;;\n"
        f"    *) {rec_fail.rstrip()} ;;\n"
        "  esac\n"
        "}\n"
        'cv_history() { try "history not written" cv_write_history "$1"; }\n'
        f'cv_mark_live() {{ try "release.json of $target not written" cv_write_live; '
        'try "release.json of $previous not written" cv_write_superseded; }\n'
        'cv_mark_failed() { try "release.json of $target not written" cv_write_failed; }\n'
    )
    log = p.health_log(t)
    out += (
        "cv_capture() {  # the service's logs and status, for whoever looks at the failure\n"
        f"  ( umask 077; {{ printf 'capview: %s %s did not come up: %s\\n' \"$op_name\" \"$target\" \"$reason\"; "
        f"{service_logs(plan.settings).strip()} ; }} > {q(log + '.tmp')} 2>&1 ) || :\n"
        f"  chmod 600 {q(log + '.tmp')} 2>/dev/null; mv -f {q(log + '.tmp')} {q(log)} 2>/dev/null || :\n"
        # issue 13: an app that wrote into an uploaded (read-only, shared) file gets the why
        f"  ! grep -qE {q(READONLY_SIGNS)} {q(log)} 2>/dev/null || mark readonly 1\n"
        "}\n"
        "cv_show_status() {  # migrate: the reason and status are printed (its health.log: scripts/migrate.py undo)\n"
        "  printf 'capview: %s %s did not come up: %s\\n' \"$op_name\" \"$target\" \"$reason\"\n"
        f"  {{ {service_status(plan.settings).strip()} ; }} | sed 's/^/  /' || :\n"
        "}\n"
    )
    return out


def _begin_step(plan: SwitchPlan, p: HostPaths, frames: Frames) -> str:
    """cv_begin: refuse (touching nothing) unless the lock is ours and the target usable."""
    lines = ["cv_begin() {"]
    if plan.precheck:
        lines.append(_sh_block(plan.precheck).rstrip("\n"))
    if plan.take_lock is not None:
        lines += [f"  mkdir -p {q(p.meta)}",
                  "  " + lock_sh.take(p, plan.take_lock) + "then :",
                  "  else",
                  f"    mark owner \"$(tr -d '\\n' < {q(p.owner_json)} 2>/dev/null)\"; reason=locked; return 1",
                  "  fi"]
    lines.append(f"  grep -q {q(plan.token)} {q(p.owner_json)} 2>/dev/null || "
                 "{ reason='the lock is not held by this operation'; return 1; }")
    exists = image_exists(plan.settings, q(plan.target)) if plan.check_image else None
    if exists:
        lines.append(f"  {exists} || {{ mark noimage; reason='the image of the release no longer exists'; return 1; }}")
    if plan.revert == "first":
        # no known-good release: keep the link that is there (not ours to remove) to put it back
        lines.append('  if [ -L current ]; then cp -P current "$ops/current.before" || return 1; fi')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _revert_step(plan: SwitchPlan) -> str:
    """cv_revert: after a failed start/health, back to a state known to work."""
    if plan.revert == "previous":
        body = (
            ('  cv_before_revert || warn "undoing the data changes before the revert failed"\n'
             if plan.before_revert else "")
            +
            '  cv_switch_to "$previous"; brc=$?\n'
            '  if [ "$brc" = 2 ]; then warn "switching back to $previous failed"; outcome=failed; return 1; fi\n'
            '  [ "$brc" = 0 ] || warn "restarting the previous release failed"\n'
            '  if [ "$brc" != 0 ] || ! cv_health; then warn "the previous release is not healthy either"\n'
            '  else unavail=$(secs "$t_open" "$(now)"); mark unavailable "$unavail"; fi\n'
            "  outcome=rolled_back\n"
        )
    elif plan.revert == "first":
        body = (
            "  cv_stop || :\n"
            '  if [ -L "$ops/current.before" ]; then\n'
            '    mv -T "$ops/current.before" current && mark restored current || warn "putting back the previous current failed"\n'
            "    cv_start || warn 'restarting the service on the previous current failed'\n"
            "  else\n"
            '    rm -f current && mark removed current\n'
            "  fi\n"
            "  outcome=failed\n"
        )
    elif plan.revert == "restore":
        body = "  restore\n  outcome=failed\n"
    else:
        body = "  outcome=failed\n"
    return "cv_revert() {\n" + body + "}\n"


def _paths_steps(plan: SwitchPlan, p: HostPaths) -> str:
    """cv_failed (the target did not come up), cv_not_moved, cv_succeeded, cv_finish."""
    capture = "  cv_capture\n" if plan.revert != "restore" else "  cv_show_status\n"
    history_failed = (
        '  if [ "$outcome" = rolled_back ]; then cv_history rolled_back; else cv_history failed; fi\n'
        if plan.revert != "restore" else "")
    out = (
        "cv_failed() {\n"
        f"{capture}"
        "  mark begin revert\n"
        "  cv_revert\n"
        '  if [ "$outcome" = rolled_back ]; then mark end revert ok; else mark end revert failed; fi\n'
        "  cv_mark_failed\n"
        f"{history_failed}"
        + ("  ( cv_on_failure ) || warn 'on_failure steps failed'\n" if plan.on_failure else "")
        + "}\n"
        "cv_not_moved() {  # current still names what it named: the service was started again\n"
        + ("  restore\n" if plan.revert == "restore" else "")
        + "  outcome=failed; reason=${reason:-'switch failed before current moved'}\n"
        "  cv_mark_failed\n"
        + ("  cv_history failed\n" if plan.revert != "restore" else "")
        + ("  ( cv_on_failure ) || warn 'on_failure steps failed'\n" if plan.on_failure else "")
        + "}\n"
        "cv_succeeded() {\n"
        "  outcome=ok; stage=done\n"
        "  cv_mark_live\n"
        "  cv_history ok\n"
        + ("  mark begin cleanup\n  ( cv_cleanup ) < \"$ops/in\"\n  mark end cleanup ok\n" if plan.cleanup else "")
        + ("  ( cv_after_healthy ) || warn 'steps after the switch failed'\n" if plan.after_healthy else "")
        + "}\n"
        "cv_unlock() {\n"
        + ("" if plan.keep_lock else _sh_block(lock_sh.release(p, plan.token)))
        + f"  if [ -d {q(p.lock)} ] && grep -q {q(plan.token)} {q(p.owner_json)} 2>/dev/null; then unlocked=no; else unlocked=yes; fi\n"
        + _sh_block(sweep_ops(p, plan.ops_key))
        + "}\n"
        "cv_finish() {\n"
        '  [ -z "$cv_finished" ] || return 0\n'
        "  cv_finished=1\n"
        '  if [ -z "$outcome" ]; then  # an exit before the end: resolve it the same way\n'
        "    reason=${reason:-'the switch ended early'}\n"
        '    case $stage in moved) cv_failed ;; stopped) cv_not_moved ;; esac\n'
        '    [ -n "$outcome" ] || outcome=failed\n'
        "  fi\n"
        "  cv_unlock\n"
        '  { printf \'outcome %s\\nreason %s\\ndowntime %s\\nunavailable %s\\nunlocked %s\\nhealth_seconds %s\\n\' '
        '"$outcome" "$reason" "$downtime" "$unavail" "$unlocked" "$health_s"; } > "$ops/result.tmp" 2>/dev/null\n'
        '  mv -f "$ops/result.tmp" "$ops/result" 2>/dev/null || :\n'
        '  mark result outcome "$outcome"; mark result reason "$reason"; mark result downtime "$downtime"\n'
        '  mark result unavailable "$unavail"; mark result unlocked "$unlocked"; mark result health_seconds "$health_s"\n'
        + _after_unlock(plan)
        + f"  rm -f {q(p.switch_pid)} \"$ops/err\"\n"
        "  mark done\n"
        + (f"  {plan.after_finish.strip()}\n" if plan.after_finish else "")
        + "}\n"
    )
    return out


def _after_unlock(plan: SwitchPlan) -> str:
    """after_unlock, waited on to its end, or (``after_unlock_wait``) for so long at most and
    then left to finish on its own: a huge release's usage refresh (O(files)) must not hold
    the client (issue 21)."""
    if not plan.after_unlock:
        return ""
    if plan.after_unlock_wait is None:
        return f"  ( {plan.after_unlock.strip()} ) || :\n"
    if plan.after_unlock_wait <= 0:  # not waited on at all, and niced: the next deploy may start meanwhile
        return f"  nice -n 10 sh -c {q(plan.after_unlock)} </dev/null >/dev/null 2>&1 &\n"
    ticks = max(1, int(plan.after_unlock_wait / 0.02))
    return (f"  ( {plan.after_unlock.strip()} ) </dev/null >/dev/null 2>&1 & cv_au=$!\n"
            f'  cv_n=0; while kill -0 "$cv_au" 2>/dev/null && [ "$cv_n" -lt {ticks} ]; do sleep 0.02; cv_n=$((cv_n+1)); done\n')


def _main(plan: SwitchPlan) -> str:
    phase, step = ("switch", 'cv_switch_to "$target" fwd') if plan.swaps else ("restart", "cv_restart")
    return (
        "trap cv_finish EXIT\n"
        "cv_begin || { outcome=refused; exit 0; }\n"
        f"mark begin {phase}\n"
        f"{step}; rc=$?\n"
        'downtime=$sw_downtime\n'
        f'if [ "$rc" = 2 ]; then mark end {phase} failed; cv_not_moved; exit 0; fi\n'
        f'if [ "$rc" = 0 ]; then mark end {phase} ok; else mark end {phase} failed; reason=${{cv_start_reason:-\'service start failed\'}}; fi\n'
        "t_open=$t0\n"
        "mark begin health\n"
        + ("cv_before_health || rc=1\n" if plan.before_health else "")
        + 'rm -f "$cv_why"; th=$(now); hrc=1\n'
        '[ "$rc" != 0 ] || { cv_health; hrc=$?; }\n'
        'health_s=$(secs "$th" "$(now)"); mark health_seconds "$health_s"\n'
        'if [ "$hrc" = 0 ]; then\n'
        '  unavail=$(secs "$t_open" "$(now)"); mark unavailable "$unavail"\n'
        "  mark end health ok\n"
        "  cv_succeeded\n"
        "else\n"
        '  [ "$rc" != 0 ] || reason=\'health check failed\'\n'
        '  if [ "$rc" = 0 ] && [ -s "$cv_why" ]; then reason="health check failed: $(head -c 200 "$cv_why" | tr -cd \'A-Za-z0-9 ./(),-\')"; fi\n'
        '  [ "$rc" = 0 ] || mark health failed not-started\n'
        "  mark end health failed\n"
        "  cv_failed\n"
        "fi\n"
        "exit 0\n"
    )


def transaction(plan: SwitchPlan, frames: Frames) -> str:
    """The body the launcher runs detached (see the module doc)."""
    s = plan.settings
    p = HostPaths(s.deploy_path)
    ops = p.op_dir(plan.ops_key)
    plain_only = bool(plan.after_stop or plan.before_start)
    return "".join([
        "set -u\n",
        "trap '' HUP PIPE INT\n",
        "trap 'exit 143' TERM\n",  # a TERM still ends it the same way (the EXIT trap)
        frames.prelude(),
        _helpers(plan, p, ops),
        _service_steps(plan, plain_only),
        _hook("cv_after_stop", plan.after_stop),
        _hook("cv_before_start", plan.before_start),
        _hook("cv_before_health", plan.before_health) if plan.before_health else "",
        _hook("cv_after_healthy", plan.after_healthy) if plan.after_healthy else "",
        _hook("cv_on_failure", plan.on_failure) if plan.on_failure else "",
        _hook("cv_before_revert", plan.before_revert) if plan.before_revert else "",
        (f"{plan.restore.rstrip()}\n" if plan.restore else ""),
        health_function(s),
        _record_steps(plan, p),
        _hook("cv_cleanup", plan.cleanup),
        _begin_step(plan, p, frames),
        _revert_step(plan),
        _paths_steps(plan, p),
        _main(plan),
    ])


def launcher(paths: HostPaths, token: str, body: str, frames: Frames) -> str:
    """The script the client runs: claim the op dir, start ``body`` detached, follow it.

    stdin (the cleanup's list) is saved to ``in``; the body reads it from there."""
    if any(line == TXN_END for line in body.splitlines()):
        raise ValueError("the transaction body contains its own end marker")
    ops = paths.op_dir(token)
    return (
        "trap '' HUP PIPE\n"
        + frames.prelude()
        + f"ops={q(ops)}\n"
        # what the transaction creates here, so an exact undo (migrate) can remove it again
        + f"cv_meta_new=0; [ -e {q(paths.meta)} ] || cv_meta_new=1\n"
        + f"cv_ops_new=0; [ -e {q(paths.ops)} ] || cv_ops_new=1\n"
        + "export cv_meta_new cv_ops_new\n"
        + f"mkdir -p {q(paths.ops)}\n"
        + 'if ! mkdir "$ops" 2>/dev/null; then mark claimed; exit 0; fi\n'
        + 'cat > "$ops/in"\n'
        + f"cat > \"$ops/txn.sh\" <<'{TXN_END}'\n{body}{TXN_END}\n"
        + ': > "$ops/out"\n'
        + "if command -v setsid >/dev/null 2>&1; then\n"
        + '  setsid sh "$ops/txn.sh" < "$ops/in" > "$ops/out" 2>&1 &\n'
        + "else\n"
        + '  sh "$ops/txn.sh" < "$ops/in" > "$ops/out" 2>&1 &\n'
        + "fi\n"
        + "pid=$!\n"
        + 'tail -n +1 -s 0.05 -f --pid="$pid" "$ops/out" 2>/dev/null & tp=$!\n'
        + 'wait "$pid" 2>/dev/null || :\n'
        + 'wait "$tp" 2>/dev/null || cat "$ops/out"\n'
    )


def recover(paths: HostPaths, token: str, frames: Frames, wait: float = 25.0) -> str:
    """After a lost connection: never start anything. If the transaction never began,
    claim its token (it cannot begin later) and say ``notstarted``; else wait (bounded)
    for it, then print its whole output and result (``recovered done``), or say
    ``recovered running`` / ``recovered vanished`` (ended without a result)."""
    ops = paths.op_dir(token)
    return (
        frames.prelude()
        + f"ops={q(ops)}\n"
        + f"if [ ! -d {q(paths.meta)} ]; then mark nometa; exit 0; fi\n"
        + f"mkdir -p {q(paths.ops)}\n"
        + 'if mkdir "$ops" 2>/dev/null; then mark notstarted; exit 0; fi\n'
        + "i=0; p=''\n"
        + f'while [ ! -f "$ops/result" ] && [ "$i" -lt {int(wait * 10)} ]; do\n'
        + '  p=$(cat "$ops/pid" 2>/dev/null || true)\n'
        + '  if [ -n "$p" ]; then kill -0 "$p" 2>/dev/null || break\n'
        + '  elif [ "$i" -ge 50 ]; then break; fi  # no pid after 5 s: it was never started\n'
        + "  sleep 0.1; i=$((i+1))\n"
        + "done\n"
        + 'if [ -f "$ops/result" ]; then\n'
        + '  cat "$ops/out" 2>/dev/null || :\n'
        + '  while read -r k v; do mark result "$k" "$v"; done < "$ops/result"\n'
        + "  mark recovered done\n"
        + 'elif [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then mark recovered running\n'
        + "else mark recovered vanished\n"
        + "fi\n"
    )


def sweep_ops(paths: HostPaths, keep_token: str) -> str:
    """sh: remove other transactions' op dirs older than a day (their results were read)."""
    return (f"find {q(paths.ops)} -mindepth 1 -maxdepth 1 -mmin +1440 ! -name {q(keep_token)} "
            "-exec rm -rf {} + 2>/dev/null || :\n")
