"""Deleting releases (``capview prune`` and the deploy's cleanup): one script per host.

Each release is first renamed to ``releases/.trash-<name>`` (a half-deleted release is
never listed as a release), then removed; leftovers of an interrupted prune are
finished first. The versions to delete come on stdin, one per line, so the script's
own size never grows with the number of releases; the host re-checks each (current,
pinned, still there) and validates the name again. ``releases/`` may itself be a
symlink (another volume): the prune works inside it and never follows an entry out.
The space freed is measured on the host with ``du`` before and after.

Frames (one line each): ``finished PATH``, ``deleted V``, ``unlinked V``,
``skipped V WHY``, ``image REF``, ``warn TEXT``, ``freed BYTES``.
"""

from __future__ import annotations

import json
from typing import Sequence

from capview.engine.layout import PINNED, TRASH_PREFIX, HostPaths
from capview.engine.scripts.shell import Frames, Script, q


def prune_body(paths: HostPaths, images: Sequence[str] = (), *, record: dict | None = None) -> str:
    """The deletes (needs the frames prelude; reads the versions on stdin)."""
    imgs = " ".join(q(i) for i in images)
    out = Script().line(
        "export LC_ALL=C",
        "warn() { printf '%s\\n' \"$*\" | while IFS= read -r l; do mark warn \"$l\"; done; }",
        f"cd {q(paths.root)}",
        "[ -d releases ] || { mark freed 0; exit 0; }",
        # releases/. : du and find measure a symlinked releases/ at its target
        'kb() { du -sk releases/. 2>/dev/null | { read -r k _ || true; echo "${k:-0}"; }; }',
        "before=$(kb)",
        f"for t in releases/{TRASH_PREFIX}*; do",
        '  [ -e "$t" ] || [ -L "$t" ] || continue',
        '  if err=$(rm -rf -- "$t" 2>&1); then mark finished "$t"; else warn "$err"; fi',
        "done",
        "cur=$(readlink current 2>/dev/null || true); cur=${cur%/}; cur=${cur##*/}",
        'dl=""; dj=""',
        "while IFS= read -r v; do",
        '  case $v in ""|.|..|*[!A-Za-z0-9._+-]*) continue ;; [A-Za-z0-9]*) ;; *) continue ;; esac',
        f'  r=releases/$v; t=releases/{TRASH_PREFIX}$v',
        '  if [ "$cur" = "$v" ]; then mark skipped "$v" it is current; continue; fi',
        '  if [ -L "$r" ]; then',
        "    # a symlinked entry is unlinked, never followed",
        '    if err=$(rm -f -- "$r" 2>&1); then mark unlinked "$v"; dj="$dj${dj:+,}\\"$v\\""; else warn "$err"; fi',
        "    continue",
        "  fi",
        '  if [ ! -d "$r" ]; then mark skipped "$v" no longer exists; continue; fi',
        f'  if [ -e "$r/"{q(PINNED)} ]; then mark skipped "$v" pinned; continue; fi',
        '  if ! err=$(mv -- "$r" "$t" 2>&1); then warn "$err"; continue; fi',
        '  dl="$dl $v"; dj="$dj${dj:+,}\\"$v\\""',
        '  mark deleted "$v"',
        '  err=$(rm -rf -- "$t" 2>&1) || warn "$err (left in $t; the next prune retries)"',
        "done",
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
    out.line('after=$(kb); freed=$(( (before - after) * 1024 )); [ "$freed" -ge 0 ] || freed=0')
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
        s.raw(lock).line("unlock_() {").raw(unlock).line("}", "trap unlock_ EXIT", "trap 'exit 130' INT TERM HUP")
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
