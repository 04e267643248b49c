"""Deleting releases (``capview prune`` and the deploy's cleanup): one script per host.

Each release is first moved into a trash dir ``releases/.trash-<name>/`` (one per ``BATCH``
releases, named after the first: one ``mv`` per batch; a half-deleted release is never
listed as a release), then removed in batches (one ``rm`` per ``BATCH``, in a job waited on
``RM_WAIT`` at most, then left to finish on its own); leftovers
of an interrupted prune are finished first. The versions to delete come on stdin, one per line, so the script's
own size never grows with the number of releases; the host re-checks each (current,
pinned, still there) and validates the name again. ``releases/`` may itself be a
symlink (another volume): the prune works inside it and never follows an entry out.
The space freed is counted on the host over the trash only, before each batch is removed
(every inode whose links are all in the trash: what ``du`` before and after would say,
without stat-ing every retained release).

Frames (one line each): ``finished PATH``, ``deleted V``, ``unlinked V``,
``skipped V WHY``, ``image REF``, ``warn TEXT``, ``freed BYTES``, ``removing N`` (N trash
entries still being removed after RM_WAIT: the space frees over the next seconds).
"""

from __future__ import annotations

import json
from typing import Sequence

from capview.engine.layout import PINNED, TRASH_PREFIX, HostPaths
from capview.engine.scripts.shell import Frames, Script, q

BATCH = 200  # trash entries per rm (and per freed count): argv stays small, forks few
RM_WAIT = 4.0  # seconds the script waits for the trash's removal at most (then it goes on alone)


def prune_body(paths: HostPaths, images: Sequence[str] = (), *, record: dict | None = None) -> str:
    """The deletes (needs the frames prelude; reads the versions on stdin)."""
    imgs = " ".join(q(i) for i in images)
    out = Script().line(
        "export LC_ALL=C",
        "warn() { printf '%s\\n' \"$*\" | while IFS= read -r l; do mark warn \"$l\"; done; }",
        f"cd {q(paths.root)}",
        "[ -d releases ] || { mark freed 0; exit 0; }",
        f"for t in releases/{TRASH_PREFIX}*; do",
        '  if [ -e "$t" ] || [ -L "$t" ]; then mark finished "$t"; fi',
        "done",
        "cur=$(readlink current 2>/dev/null || true); cur=${cur%/}; cur=${cur##*/}",
        # the deleted names for the record and the images, gathered 200 at a time (one
        # growing string per name was quadratic: seconds for 10,000 releases)
        'dl=""; dj=""; l1=""; j1=""; k=0',
        # note V [dir]: V goes in the record; a deleted dir's images go too (not an unlinked entry's)
        'note() { [ -z "${2:-}" ] || l1="$l1 $1"; j1="$j1${j1:+,}\\"$1\\""; k=$((k+1))',
        f'  [ "$k" -lt {BATCH} ] || flush_names; }}',
        'flush_names() { dl="$dl$l1"; [ -z "$j1" ] || dj="$dj${dj:+,}$j1"; l1=""; j1=""; k=0; }',
        # moves go BATCH at a time into one trash dir per batch (named after its first
        # release): one mv per batch, not per release; each name is checked after it
        f'b=""; made=""; moved() {{ [ "$#" -gt 0 ] || return 0; mv -- "$@" "$b/" 2>/dev/null || :',
        '  for r; do v=${r#releases/}',
        '    if [ -e "$b/$v" ] || [ -L "$b/$v" ]; then note "$v" dir; mark deleted "$v"; else warn "cannot move $r to the trash: it stays"; fi',
        '  done; b=""; }',
        "set --",
        "while IFS= read -r v; do",
        '  case $v in ""|.|..|*[!A-Za-z0-9._+-]*) continue ;; [A-Za-z0-9]*) ;; *) continue ;; esac',
        '  r=releases/$v',
        '  if [ "$cur" = "$v" ]; then mark skipped "$v" it is current; continue; fi',
        '  if [ -L "$r" ]; then',
        "    # a symlinked entry is unlinked, never followed",
        '    if err=$(rm -f -- "$r" 2>&1); then mark unlinked "$v"; note "$v"; else warn "$err"; fi',
        "    continue",
        "  fi",
        '  if [ ! -d "$r" ]; then mark skipped "$v" no longer exists; continue; fi',
        f'  if [ -e "$r/"{q(PINNED)} ]; then mark skipped "$v" pinned; continue; fi',
        '  if [ -z "$b" ]; then',
        f'    b=releases/{TRASH_PREFIX}$v; mkdir "$b" 2>/dev/null || {{ b=$b.$$; mkdir "$b" 2>/dev/null; }} || {{ warn "cannot make $b"; b=""; continue; }}; made="$made $b"',
        "  fi",
        f'  set -- "$@" "$r"; [ "$#" -lt {BATCH} ] || {{ moved "$@"; set --; }}',
        "done",
        'moved "$@"; set --',
        "flush_names",
        # what the deletes free, counted over the trash only (O(deleted files), never a du
        # of every release): every dir, and each inode whose every link is in the trash (usage.py's rule)
        f"freed=$(find releases/ -mindepth 1 ! -path 'releases/{TRASH_PREFIX}*' -prune -o -printf '%D:%i %n %b %y\\n' "
        "2>/dev/null | awk '$4==\"d\" {s+=$3; next} {c[$1]++; n[$1]=$2; b[$1]=$3} END {for (k in c) if (c[k]>=n[k]) s+=b[k]; "
        "printf \"%.0f\\n\", s*512}')",
        # the batch dirs themselves were made here: they free nothing
        '[ -z "$made" ] || freed=$(( ${freed:-0} - $(find $made -maxdepth 0 -printf \'%b\\n\' 2>/dev/null '
        "| awk '{s+=$1} END {printf \"%.0f\\n\", s*512}') ))",
        # then one rm per BATCH trash entries, not one per release, in a job of its own: on
        # a big prune the removal is the filesystem's time (10,000 releases: 10-17 s on ext4
        # with discard), so it is waited on RM_WAIT at most, then finishes on its own (its
        # errors are reported when it ends in time; leftovers are the next prune's)
        '[ -n "$freed" ] || freed=0; nt=0',
        f"for t in releases/{TRASH_PREFIX}*; do",
        '  if [ -e "$t" ] || [ -L "$t" ]; then nt=$((nt+1)); fi',
        "done",
        'if [ "$nt" -gt 0 ]; then',
        # whoever of the two ends second cleans up: each tries mkdir "$errf.own" when done (atomic)
        f'  errf=$(mktemp {q(paths.meta)}/rm-errors.XXXXXX 2>/dev/null) || errf=',  # inside deploy_path, never /tmp
        "  ( trap '' HUP; set --",
        f"    for t in releases/{TRASH_PREFIX}*; do",
        '      [ -e "$t" ] || [ -L "$t" ] || continue',
        f'      set -- "$@" "$t"; [ "$#" -lt {BATCH} ] || {{ rm -rf -- "$@" 2>>"${{errf:-/dev/null}}" || :; set --; }}',
        "    done",
        '    [ "$#" -eq 0 ] || rm -rf -- "$@" 2>>"${errf:-/dev/null}" || :',
        # (set -e: a failing rm must not end the job before its hand-off)
        '    if [ -n "$errf" ] && ! mkdir "$errf.own" 2>/dev/null; then rm -rf -- "$errf" "$errf.own"; fi',
        '  ) </dev/null >/dev/null 2>&1 & rmj=$!',
        f'  w=0; while kill -0 "$rmj" 2>/dev/null && [ "$w" -lt {int(RM_WAIT / 0.02)} ]; do sleep 0.02; w=$((w+1)); done',
        '  if [ -n "$errf" ] && mkdir "$errf.own" 2>/dev/null || { [ -z "$errf" ] && kill -0 "$rmj" 2>/dev/null; }; then',
        '    mark removing "$nt"',
        '  else',
        '    wait "$rmj" 2>/dev/null || :',
        '    if [ -n "$errf" ] && [ -s "$errf" ]; then warn "$(cat -- "$errf") (left in releases/.trash-*; the next prune retries)"; fi',
        '    [ -z "$errf" ] || rm -rf -- "$errf" "$errf.own"',
        "  fi",
        "fi",
    )
    if imgs:
        out.line('if [ -n "$dl" ]; then',
                 "  if command -v podman >/dev/null 2>&1; then",
                 f"    for v in $dl; do for img in {imgs}; do",
                 '      ref="$img:$v"',
                 '      if podman image exists "$ref" 2>/dev/null; then',
                 '        if err=$(podman rmi "$ref" 2>&1); then mark image "$ref"; else warn "$err"; fi',
                 "      fi",
                 "    done; done",
                 '  else warn "podman not found: images of pruned releases were not removed"; fi',
                 "fi")
    if record is not None:
        # The host fills in what it actually deleted and freed.
        doc = json.dumps({**record, "deleted": "@@D@@", "freed": "@@F@@"}, sort_keys=True,
                         separators=(",", ":"), ensure_ascii=True)
        head, rest = doc.split('"@@D@@"')
        mid, tail = rest.split('"@@F@@"')
        out.line(f"mkdir -p {q(paths.meta)}",
                 f"printf '%s[%s]%s%s%s\\n' {q(head)} \"$dj\" {q(mid)} \"$freed\" {q(tail)} >> {q(paths.history)} "
                 "|| warn \"history not written\"")
    return out.line('mark freed "$freed"').text()


def prune_script(paths: HostPaths, frames: Frames, images: Sequence[str] = (), *, record: dict | None = None,
                 lock: str = "", unlock: str = "") -> str:
    """``capview prune``: the deletes, under the lock ``lock`` takes (exit 3 if held),
    released by ``unlock`` whatever happens (an EXIT trap)."""
    s = Script(frames)
    if lock:
        # the traps first: a signal while the lock is being taken still ends in unlock_ (the
        # take is shielded from it, scripts/lock.take; unlock_ removes only a lock of ours)
        # PIPE too: a cut connection closes stdout, and an untrapped SIGPIPE would end the
        # script without its EXIT trap (chaos seed 20261205 op 76 found the lock left so)
        s.line("unlock_() {").raw(unlock).line("}", "trap unlock_ EXIT", "trap 'exit 130' INT TERM HUP",
                                               "trap 'exit 141' PIPE").raw(lock)
    # in a subshell: its early exit (no releases/) still reaches "end"
    return s.line("(").indent(prune_body(paths, images, record=record)).line(")", "mark end").text()


def stdin_list(versions: Sequence[str]) -> bytes:
    """The versions to delete, as the script reads them (one per line)."""
    return "".join(v + "\n" for v in versions).encode()


def finish_trash(paths: HostPaths) -> str:
    """sh: finish the deletes of an interrupted prune (``releases/.trash-*``), when the
    deploy's cleanup has nothing else to delete (prune_body does this itself)."""
    return (f"for t in {q(paths.releases)}/{TRASH_PREFIX}*; do\n"
            '  if [ -e "$t" ] || [ -L "$t" ]; then rm -rf -- "$t" || true; fi\n'
            "done\n")
