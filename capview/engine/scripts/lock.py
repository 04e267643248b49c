"""The lock's scripts: ``mkdir <deploy_path>/.capview/lock`` is atomic; owner.json inside
names the holder. Only the holder (its random token in owner.json) removes it."""

from __future__ import annotations

from capview.engine.layout import HostPaths
from capview.engine.scripts.shell import Frames, indent, q, write_json

LOCKED = 3  # exit status of acquire when someone else holds the lock
# issue 17: the heartbeat is judged by the HOST's clock (never the operator's): owner.json
# carries host_heartbeat written with the host's date, and a refusal says the host's now.
HOST_CLOCK = {"host_heartbeat": "$(date +%s)"}


def _holder(paths: HostPaths) -> str:
    """sh: the host's clock, whether a switch transaction still runs, then owner.json
    (a section: its body runs to the end of the output). A lock taken an instant ago may
    not have its owner.json yet (mkdir, then the write): wait for it up to 1 s, so a
    deploy started at the same moment as another reads the holder, not "unreadable"."""
    return (
        f"cv_n=0; while [ -d {q(paths.lock)} ] && [ ! -e {q(paths.owner_json)} ] && [ $cv_n -lt 20 ]; do "
        "sleep 0.05; cv_n=$((cv_n+1)); done\n"
        'mark host_now "$(date +%s)"\n'
        f"sp=$(cat {q(paths.switch_pid)} 2>/dev/null || true)\n"
        'case $sp in ""|*[!0-9]*) ;; *) if kill -0 "$sp" 2>/dev/null; then mark switch_running "$sp"; fi ;; esac\n'
        "sec owner\n"
        f"cat {q(paths.owner_json)} 2>/dev/null || true\n"
    )


def take(paths: HostPaths, owner: dict) -> str:
    """sh: ``if <mkdir the lock and write owner.json>; `` (the caller goes on with
    ``then``). Both in a subshell that ignores HUP, INT, TERM and PIPE: a client that
    goes away between the two (its cancel kills the script, or the closed channel's
    SIGPIPE) must never leave a lock nobody can name. A signal meanwhile is acted on
    by the script once the subshell is done (its traps, e.g. prune's unlock, then run
    with owner.json there). Its status is mkdir's."""
    return (
        "if ( trap '' HUP INT TERM PIPE\n"
        f"  mkdir {q(paths.lock)} 2>/dev/null || exit 1\n"
        f"  {write_json(paths.owner_json, owner, HOST_CLOCK)}"
        "  exit 0 ); "
    )


def acquire(paths: HostPaths, owner: dict, frames: Frames) -> str:
    """Take the lock (frame ``locked``), or print the holder's owner.json (section
    ``owner``, after ``host_now``) and exit 3. Needs the frames prelude."""
    return (
        f"mkdir -p {q(paths.meta)}\n"
        + take(paths, owner) +
        "then\n"
        "  mark locked\n"
        "else\n"
        + indent(_holder(paths))
        + f"  exit {LOCKED}\n"
        "fi\n"
    )


def take_over(paths: HostPaths, owner: dict, seen: str, dead_release: str | None, record_line: str) -> str:
    """Take over a lock whose holder is provably gone (the client judged ``seen``).

    Atomic against another taker: ``mkdir lock/takeover`` admits one, which replaces
    owner.json only if it is still ``seen``. Refused (exit 3, the holder printed) when the
    lock changed, or a switch transaction still runs. Removes the holder's release when
    it never became whole (state uploading/building/ready, or no release.json) and is
    not current (frame ``removed``). Needs the frames prelude."""
    rel = ""
    if dead_release:
        d = q(paths.release(dead_release))
        rel = (
            f"d={d}\n"
            f"cur=$(readlink {q(paths.current)} 2>/dev/null || true); cur=${{cur%/}}\n"
            f'if [ -d "$d" ] && [ ! -L "$d" ] && [ "${{cur##*/}}" != {q(dead_release)} ]; then\n'
            f'  st=$(sed -n \'s/.*"state": *"\\([a-z]*\\)".*/\\1/p\' {q(paths.release_json(dead_release))} 2>/dev/null || true)\n'
            '  case $st in ""|uploading|building|ready) rm -rf "$d" && mark removed "$d" ;; esac\n'
            "fi\n"
        )
    claim = f"{paths.lock}/takeover"
    return (
        "cv_take() {\n"
        f"  mkdir -p {q(paths.meta)}\n"
        "  " + take(paths, owner) + "then\n"  # released meanwhile: an ordinary take
        "    mark locked; return 0\n"
        "  fi\n"
        f"  sp=$(cat {q(paths.switch_pid)} 2>/dev/null || true)\n"
        '  case $sp in ""|*[!0-9]*) sp="" ;; esac\n'
        f'  if [ -n "$sp" ] && kill -0 "$sp" 2>/dev/null || ! mkdir {q(claim)} 2>/dev/null; then\n'
        + indent(_holder(paths), "    ") + f"    return {LOCKED}\n"
        "  fi\n"
        f'  if [ "$(cat {q(paths.owner_json)} 2>/dev/null || true)" != {q(seen)} ]; then\n'
        f"    rmdir {q(claim)}\n"
        + indent(_holder(paths), "    ") + f"    return {LOCKED}\n"
        "  fi\n"
        f"  {write_json(paths.owner_json, owner, HOST_CLOCK)}"
        f"  rmdir {q(claim)}\n"
        "  mark locked\n"
        + indent(rel + record_line)
        + "  mark taken_over\n"
        "}\n"
        f"cv_take || exit {LOCKED}\n"
    )


def if_mine(paths: HostPaths, token: str, body: str) -> str:
    return f"if grep -q {q(token)} {q(paths.owner_json)} 2>/dev/null; then\n{body}fi\n"


def heartbeat(paths: HostPaths, token: str, owner: dict) -> str:
    return if_mine(paths, token, write_json(paths.owner_json, owner, HOST_CLOCK))


def release(paths: HostPaths, token: str) -> str:
    """Remove the lock if it is ours: safe to send when we do not know whether we hold it."""
    return if_mine(paths, token, f"rm -rf {q(paths.lock)}\n")


def read_owner(paths: HostPaths, frames: Frames) -> str:
    return frames.prelude() + (
        f"if [ -d {q(paths.lock)} ]; then\n" + indent(_holder(paths)) + "fi\nsec end\n"
    )


def remove_if_unchanged(paths: HostPaths, seen: str, frames: Frames, record_line: str) -> str:
    """Remove the lock only if owner.json is still ``seen`` (``capview unlock``); then
    append ``record_line`` (sh appending the history record)."""
    return frames.prelude() + (
        f"if [ ! -d {q(paths.lock)} ]; then sec gone; exit 0; fi\n"
        # $(...) drops trailing newlines; ``seen`` is compared the same way
        f'if [ "$(cat {q(paths.owner_json)} 2>/dev/null || true)" != {q(seen)} ]; then sec changed; exit 0; fi\n'
        f"rm -rf {q(paths.lock)}\n"
        + record_line
        + "sec removed\n"
    )
