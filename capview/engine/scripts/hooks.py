"""The host-side text of deploy.yaml's ``hooks`` (issue 18) and of the data snapshot
steps, as the switch transaction's slots (engine/hooks.py says where each point runs).

:func:`hook_function` builds one sh function that runs a point's commands in order,
each with ``sh -c`` in the release directory, under ``timeout``, with the ``CAPVIEW_*``
variables in its environment and stdin closed. Each command's output is appended to
the release's ``.capview/hooks.log`` (mode 0600) and printed prefixed with ``[point]``
(so no hook output line can start a frame). The function returns the first failing
command's status (124: timed out), after a frame ``hook_failed POINT N RC``.

Every value put into the script is ``shlex.quote``d: the commands are the operator's
own text from deploy.yaml, passed as one quoted argument of ``sh -c``.
"""

from __future__ import annotations

from dataclasses import dataclass

from capview.config import HostConfig, Settings
from capview.config.model import HOOK_POINTS
from capview.engine.layout import HOOKS_LOG, HostPaths, validate_version
from capview.engine.scripts import snapshots
from capview.engine.scripts.shell import q

TIMED_OUT = 124  # timeout(1)'s status
KILL_GRACE = 5  # seconds between timeout's TERM and its KILL


@dataclass(frozen=True)
class HookContext:
    """What a hook is told about the operation it runs in (its CAPVIEW_* variables)."""

    operation: str  # release | rollback
    env: str
    host: str
    version: str  # the release the hook runs in
    previous: str | None

    @classmethod
    def of(cls, host: HostConfig, operation: str, version: str, previous: str | None) -> "HookContext":
        return cls(operation, host.env, host.name, version, previous)


def hook_env(paths: HostPaths, hc: HookContext) -> dict[str, str]:
    """The CAPVIEW_* variables (absolute paths; every value validated or quoted later)."""
    return {
        "CAPVIEW_VERSION": validate_version(hc.version),
        "CAPVIEW_PREVIOUS": validate_version(hc.previous) if hc.previous else "",
        "CAPVIEW_RELEASE_PATH": paths.release(hc.version),
        "CAPVIEW_DEPLOY_PATH": paths.root,
        "CAPVIEW_SHARED_PATH": paths.shared,
        "CAPVIEW_OPERATION": hc.operation,
        "CAPVIEW_ENV": hc.env,
        "CAPVIEW_HOST": hc.host,
    }


def commands(settings: Settings, point: str) -> tuple[str, ...]:
    if point not in HOOK_POINTS:
        raise ValueError(f"unknown hook point {point!r}")
    return tuple(settings.hooks.at(point))


def hook_function(name: str, settings: Settings, paths: HostPaths, point: str, hc: HookContext) -> str:
    """sh: ``name() { ... }`` running the point's commands (see the module doc), or ``""``
    when the point has none. Needs ``mark`` (a Frames prelude) where it is called."""
    cmds = commands(settings, point)
    if not cmds:
        return ""
    rel = paths.release(hc.version)
    log = q(paths.hooks_log(hc.version))
    timeout = max(1, int(round(settings.hooks.timeout)))
    env = " ".join(f"{k}={q(v)}" for k, v in hook_env(paths, hc).items())
    prefix = q(f"s/^/[{point}] /")
    lines = [f"{name}() {{  # hooks.{point}: {len(cmds)} command(s), {timeout}s each",
             f"  ( umask 077; : >> {log} ) 2>/dev/null; chmod 600 {log} 2>/dev/null || :"]
    for i, cmd in enumerate(cmds, 1):
        head = q(f"== {point} {i}/{len(cmds)}: ")
        lines += [
            f"  mark hook {point} {i} {len(cmds)}",
            f"  {{ printf '%s%s\\n' {head} \"$(date -u +%FT%TZ)\"; printf '%s\\n' {q(cmd)}; }} >> {log} 2>/dev/null || :",
            # Output goes to the log file, and is followed from there until the command
            # exits: a background process the hook leaves behind (holding its stdout)
            # cannot keep the switch waiting, as it would on a pipe.
            f"  cv_hoff=$(($(stat -c %s {log} 2>/dev/null || echo 0) + 1))",
            f"  ( cd {q(rel)} && exec env {env} timeout -k {KILL_GRACE} {timeout} sh -c {q(cmd)} )"
            f" < /dev/null >> {log} 2>&1 &",
            "  cv_hpid=$!",
            f"  tail -c +\"$cv_hoff\" -s 0.1 -f --pid=\"$cv_hpid\" {log} 2>/dev/null | sed -u {prefix} || :",
            '  wait "$cv_hpid" && cv_hrc=0 || cv_hrc=$?',
            '  if [ "$cv_hrc" != 0 ]; then',
            f"    if [ \"$cv_hrc\" = {TIMED_OUT} ]; then cv_hwhy='timed out after {timeout}s'; "
            "else cv_hwhy=\"exit $cv_hrc\"; fi",
            f"    printf '== {point} {i} failed: %s\\n' \"$cv_hwhy\" >> {log} 2>/dev/null || :",
            f"    mark hook_failed {point} {i} \"$cv_hrc\"",
            f"    echo \"hooks.{point} command {i} failed ($cv_hwhy); see releases/{hc.version}/{HOOKS_LOG}\" >&2",
            '    return "$cv_hrc"',
            "  fi",
        ]
    lines.append("}")
    return "\n".join(lines) + "\n"


def warning_only(name: str, point: str) -> str:
    """sh calling ``name`` so that its failure is a warning (``warn``) and never fatal."""
    return f'{name} || warn "hooks.{point} failed (exit $?): the operation is not affected"\n'


# ---------------------------------------------------------------- the switch's slots

def _sub(script: str) -> str:
    """A snapshot script as one step: its own subshell with ``set -e`` (its ``exit`` ends
    only the step), output kept off the live view's frames."""
    return "( set -e\n" + script.rstrip("\n") + "\n)"


def _timed_take(settings: Settings, paths: HostPaths, tag: str) -> str:
    """sh (the app stopped): snapshot the data as ``tag``; frame ``snapshot_seconds``."""
    return (
        "cv_snap_t0=$(now)\n"
        + _sub(snapshots.take_script(paths, settings.data.sqlite, tag, stopped=settings.service.manager != "none"))
        + " || { reason='the data snapshot failed'; echo 'the data snapshot failed: nothing was switched' >&2; return 1; }\n"
        + 'mark snapshot_seconds "$(secs "$cv_snap_t0" "$(now)")"\n'
    )


def _describe(settings: Settings, paths: HostPaths, tag: str, now: float, serving: str, reason: str) -> str:
    body = snapshots.describe_script(paths, settings.data.sqlite, tag, taken_at=now, serving=serving, reason=reason)
    keep = ""
    if not tag.startswith("_"):  # also in the release's own metadata (it is that release's data)
        meta = q(snapshots.snapshot_dir(paths, tag) + "/meta.json")
        keep = (f"[ ! -d {q(paths.release_meta(tag))} ] || cp -f {meta} {q(paths.data_snapshot(tag))} 2>/dev/null "
                "|| warn 'the snapshot description was not copied into the release'\n")
    return _sub(body) + " > /dev/null || warn 'describing the data snapshot failed'\n" + keep


def snapshots_on(settings: Settings) -> bool:
    return bool(settings.data.sqlite) and settings.data.snapshots > 0


def release_pieces(host: HostConfig, version: str, previous: str | None, now: float) -> dict[str, str]:
    """SwitchPlan fields for a release: the snapshot of the previous release's data while
    it is stopped (tag = that release), before_start hooks, then after_switch hooks and
    the snapshot's description and prune (outside the window), or on_failure hooks. A
    failed before_start means the new release never ran: its data is put back as the
    snapshot has it before the previous release starts again (nothing is lost)."""
    s, paths = host.settings, HostPaths(host.settings.deploy_path)
    hc = HookContext.of(host, "release", version, previous)
    out = {"after_stop": "", "before_start": "", "after_healthy": "", "on_failure": "", "before_revert": ""}
    snap = snapshots_on(s) and previous is not None
    if snap:
        out["after_stop"] = _timed_take(s, paths, previous)
        describe = _describe(s, paths, previous, now, previous, f"before {version} started")
        out["after_healthy"] += describe + snapshots.prune_with_releases_script(paths, s.data.snapshots)
        out["on_failure"] += describe
        if commands(s, "before_start"):
            out["before_revert"] = (
                '[ "$cv_start_reason" = "before_start hook failed" ] || return 0\n'
                f"{_sub(snapshots.restore_script(paths, s.data.sqlite, previous, None))} || return 1\n"
                f"mark data_restored {q(previous)}\n")
    out["before_start"] = _hooks_step("before_start", s, paths, hc, fatal=True)
    out["after_healthy"] = _hooks_step("after_switch", s, paths, hc, fatal=False) + out["after_healthy"]
    out["on_failure"] += _hooks_step("on_failure", s, paths, hc, fatal=False)
    return out


def rollback_pieces(host: HostConfig, target: str, current: str | None, now: float, *,
                    run_hooks: bool, restore: bool) -> dict[str, str]:
    """SwitchPlan fields for a rollback: with ``restore``, the target's snapshot put back
    while the app is stopped (the data as it is now first kept as ``_restore-<time>``;
    an unhealthy target gets that back before the revert); ``before_start`` hooks only
    with ``run_hooks``; after_rollback hooks once healthy; on_failure hooks."""
    s, paths = host.settings, HostPaths(host.settings.deploy_path)
    hc = HookContext.of(host, "rollback", target, current)
    out = {"after_stop": "", "before_start": "", "after_healthy": "", "on_failure": "", "before_revert": ""}
    if restore:
        backup = f"_restore-{int(now)}"
        out["after_stop"] = (
            _sub(snapshots.restore_script(paths, s.data.sqlite, target, backup))
            + " || { reason='restoring the data snapshot failed'; echo 'restoring the data failed: nothing was switched' >&2; return 1; }\n"
            + f"mark data_restored {q(target)}\n")
        out["before_revert"] = (f"{_sub(snapshots.restore_script(paths, s.data.sqlite, backup, None))} || return 1\n"
                                f"mark data_restored {q(backup)}\n")
        out["on_failure"] += _describe(s, paths, backup, now, current or "", f"before restoring {target}'s data")
        out["after_healthy"] += _describe(s, paths, backup, now, current or "", f"before restoring {target}'s data")
    if run_hooks:
        out["before_start"] = _hooks_step("before_start", s, paths, hc, fatal=True)
    out["after_healthy"] = _hooks_step("after_rollback", s, paths, hc, fatal=False) + out["after_healthy"]
    out["on_failure"] += _hooks_step("on_failure", s, paths, hc, fatal=False)
    return out


def _hooks_step(point: str, s: Settings, paths: HostPaths, hc: HookContext, *, fatal: bool) -> str:
    name = f"cv_hooks_{point}"
    fn = hook_function(name, s, paths, point, hc)
    if not fn:
        return ""
    if fatal:  # before_start: a failure is a start that failed (-> the revert)
        return fn + f"{name} || {{ cv_hb=$?; cv_start_reason='{point} hook failed'; return $cv_hb; }}\n"
    return fn + warning_only(name, point)


def restore_precheck(paths: HostPaths, target: str) -> str:
    """sh for the transaction's begin (nothing touched yet): the target's snapshot exists."""
    d = snapshots.snapshot_dir(paths, target)
    return (f"[ -d {q(d)} ] || {{ mark nosnapshot {q(target)}; "
            "reason='no data snapshot of the target'; return 1; }\n")
