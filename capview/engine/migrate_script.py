"""The on-host scripts of ``capview migrate-data`` (old in-place layout -> releases).

probe: read-only, what the plan needs. migrate: one script that stops the
service, moves everything by rename(2) (never copy+delete: a move that would
cross a filesystem is refused), verifies the data, switches, starts and checks
health. Until it succeeds, an EXIT trap undoes every step in reverse, so a
failure anywhere puts the original tree back exactly (same names, same inodes).
"""

from __future__ import annotations

import json

from capview.config import HostConfig
from capview.engine import switch as sw
from capview.engine.frames import Frames
from capview.engine.layout import HostPaths
from capview.engine.script import q
from capview.engine.shared_links import refuse_symlinked_parents
from capview.engine.status import LAYOUT_NAMES

DB_NAMES = ("*.db", "*.sqlite", "*.sqlite3", "*.db3")
_KEEP = "|".join(sorted(LAYOUT_NAMES)) + "|current.tmp.*"

# Shell helpers shared by probe and migrate. dstats: "FILES BYTES" of the regular
# files under the given paths (following a top-level symlink, as the app does).
_HELPERS = r"""dstats() {
  if [ "$#" -eq 0 ]; then echo "0 0"; return 0; fi
  find -H "$@" -type f -printf '%s\n' 2>/dev/null | awk '{n++; b+=$1} END {printf "%d %.0f\n", n, b}'
}
"""


def shared_items(host: HostConfig) -> list[str]:
    s = host.settings.shared
    return [*s.dirs, *s.files]


def secret_files(host: HostConfig) -> list[str]:
    """Shared files holding secrets (``.env``, ``.env.production``...): mode 0600 after migrating."""
    return [f for f in host.settings.shared.files if f.rsplit("/", 1)[-1].startswith(".env")]


def _db_find(paths: str) -> str:
    names = " -o ".join(f"-name {q(n)}" for n in DB_NAMES)
    return f"{{ find -H {paths} -type f \\( {names} \\) -print0 2>/dev/null || true; }}"


def probe_script(host: HostConfig, frames: Frames) -> str:
    s = host.settings
    lines = [frames.prelude(), _HELPERS, "export LC_ALL=C", f"dp={q(HostPaths(s.deploy_path).root)}",
             'if [ ! -d "$dp" ]; then sec nodp; sec end; exit 0; fi', 'cd "$dp"',
             "sec dev", "stat -c %d .",
             "sec top", "find . -mindepth 1 -maxdepth 1 -printf '%y %D %P\\0' 2>/dev/null || true",
             "sec current", "if [ -L current ]; then readlink current || true; fi",
             'sec home; printf "%s\\n" "${HOME:-}"',
             "if [ -d shared ]; then sec shareddev; stat -c %d shared; fi",
             "have=''"]
    for i, p in enumerate(shared_items(host)):
        qp, qt = q(p), q("shared/" + p)
        lines += [
            f"if [ -e {qp} ] || [ -L {qp} ]; then sec item {i}; "
            f"if [ -L {qp} ]; then k=link; elif [ -d {qp} ]; then k=dir; else k=file; fi; "
            f'printf "%s %s\\n" "$(stat -c %d -- {qp})" "$k"; have="$have {qp}"; fi',
            f"if [ -e {qt} ] || [ -L {qt} ]; then sec target {i}; "
            f'if [ -d {qt} ] && [ ! -L {qt} ] && [ -z "$(ls -A {qt})" ]; then echo empty; else echo used; fi; fi',
        ]
    lines += [
        # $have holds only configured (validated) names, quoted: safe to re-split with eval
        'sec stats; eval "dstats $have"',
        'sec dbs; if [ -n "$have" ]; then eval "' + _db_find("$have").replace('"', '\\"') + '"; fi',
        "sec sqlite3; command -v sqlite3 || true",
    ]
    if s.service.manager == "systemd-user":
        unit = q(s.service.unit or "")
        lines += [
            f"f=$(systemctl --user show -p FragmentPath --value {unit} 2>/dev/null || true)",
            'if [ -n "$f" ] && [ -f "$f" ]; then sec unitpath; printf "%s\\n" "$f"; '
            'if [ -w "$f" ] && [ -w "$(dirname -- "$f")" ]; then sec unitwritable; fi; sec unit; cat -- "$f"; fi',
        ]
    lines.append("sec end")
    return "\n".join(lines) + "\n"


def _mkparents(base: str, item: str, var: str) -> list[str]:
    """sh: create the missing parent dirs of ``base/item`` one level at a time,
    prepending each to ``$var`` so restore removes them deepest first."""
    parts = item.split("/")[:-1]
    out = []
    for n in range(1, len(parts) + 1):
        sub = "/".join(parts[:n])
        out.append(f'  if [ ! -d {q(base + "/" + sub)} ]; then mkdir {q(base + "/" + sub)}; {var}="{q(base + "/" + sub)} ${var}"; fi')
    return out


def _json_printf(obj: dict, numbers: dict[str, str], path: str, append: bool = False) -> str:
    """printf writing ``obj`` as one JSON line to ``path`` (temp + rename, or appended),
    with ``numbers`` (key -> shell expression yielding a JSON number) filled in on the host."""
    doc = json.dumps({**obj, **{k: f"@@{k}@@" for k in numbers}}, sort_keys=True, separators=(",", ":"))
    fmt, args = "", []
    for key, expr in sorted(numbers.items(), key=lambda kv: doc.index(f'"@@{kv[0]}@@"')):
        head, doc = doc.split(f'"@@{key}@@"', 1)
        fmt += "%s%s"
        args += [q(head), f'"{expr}"']
    fmt += "%s\\n"
    args.append(q(doc))
    if append:
        return f"printf '{fmt}' {' '.join(args)} >> {q(path)}\n"
    return f"printf '{fmt}' {' '.join(args)} > {q(path)}.tmp.$$ && mv -f {q(path)}.tmp.$$ {q(path)}\n"


def migrate_script(host: HostConfig, version: str, frames: Frames, *, release: dict, record: dict,
                   lock: str, unlock: str, unit_path: str | None = None, unit_text: str | None = None,
                   backup_suffix: str = ".capview-bak", fail_at: str | None = None) -> str:
    """The whole migration. ``lock``/``unlock``: the lock scripts (lock.py); ``unit_text``:
    the rewritten unit to install at ``unit_path`` (keeping a backup); ``fail_at``: a
    stage name at which to fail on purpose (tests of the exact restore)."""
    s = host.settings
    p = HostPaths(s.deploy_path)
    rel = f"releases/{version}"
    items = shared_items(host)
    L: list[str] = [frames.prelude(), _HELPERS, "export LC_ALL=C", f"cd {q(p.root)}",
                    f"fail_at={q(fail_at or '')}",
                    "note() { sec note; printf '%s\\n' \"$*\"; }",
                    "fail() { sec fail; printf '%s\\n' \"$*\"; exit 1; }",
                    'stage() { sec stage "$1"; if [ "$fail_at" = "$1" ]; then fail "forced failure at $1 (test hook)"; fi; }',
                    # Re-checked here: the plan may be stale.
                    "if [ -e releases ] || [ -L releases ]; then sec already; exit 0; fi",
                    "c_meta=0; [ -e .capview ] || c_meta=1",
                    "c_shared=0; [ -e shared ] || c_shared=1",
                    "done=0 stopped=0 was_active=1 switched=0 unit_new=0 moved='' emptied='' placeholders='' parents='' lparents=''",
                    _restore(host, version, rel, items, unit_path, backup_suffix),
                    'on_exit() { rc=$?; if [ "$done" != 1 ]; then restore; fi; exit "$rc"; }',
                    lock.rstrip("\n"),
                    "trap on_exit EXIT", "trap 'exit 130' INT TERM HUP",
                    f"t0={sw.now_expr()}"]
    # 0. issue 13: no shared item is moved or linked through a symlinked parent (the old
    #    tree's var -> /elsewhere would move data from outside deploy_path)
    for it in items:
        L += refuse_symlinked_parents(p.root, it, create=False, fail="fail")
        L += ["if [ -d shared ]; then (cd shared",
              *refuse_symlinked_parents(p.shared, it, create=False, fail="fail"), ") || exit 1; fi"]
    # 1. stop
    if s.service.manager == "systemd-user":
        L.append(f"systemctl --user is-active --quiet {q(s.service.unit or '')} || was_active=0")
    elif s.service.manager == "command" and s.service.status:
        L.append(f"( cd {q(p.root)} && {s.service.status} ) >/dev/null 2>&1 || was_active=0")
    L += ["stage stop", "{", sw.service_stop(s).rstrip("\n"), "} || fail 'stopping the service failed'", "stopped=1"]
    # 2. data stats before; shared items into shared/ by rename, same filesystem only
    L += ["stage shared", "have='' have_after=''"]
    L += [f'if [ -e {q(i)} ] || [ -L {q(i)} ]; then have="$have {q(i)}"; have_after="$have_after {q("shared/" + i)}"; fi'
          for i in items]
    L += ['before=$(eval "dstats $have")', "mkdir -p shared",
          'dev=$(stat -c %d .); [ "$(stat -c %d shared)" = "$dev" ] || fail "shared/ is on another filesystem than $PWD: refusing to copy"']
    for i, it in enumerate(items):
        src, dst = q(it), q(f"shared/{it}")
        is_dir = i < len(s.shared.dirs)
        L.append(f"if [ -e {src} ] || [ -L {src} ]; then")
        L += _mkparents("shared", it, "parents")
        L += [
            f'  [ "$(stat -c %d -- {src})" = "$dev" ] || fail {q(it + " is a mount point (another filesystem): refusing to copy")}',
            # an empty dir left by `capview init` makes way (re-created on restore)
            f'  if [ -d {dst} ] && [ ! -L {dst} ] && [ -z "$(ls -A {dst})" ]; then rmdir {dst}; emptied="$emptied {q(it)}"; fi',
            f"  if [ -e {dst} ] || [ -L {dst} ]; then fail {q('shared/' + it + ' exists and is not empty: refusing to overwrite it')}; fi",
            f"  mv -- {src} {dst} || fail {q('moving ' + it + ' into shared/ failed')}",
            f'  moved="{q(it)} $moved"; note {q("moved " + it + " -> shared/" + it)}',
            f"elif [ ! -e {dst} ] && [ ! -L {dst} ]; then",
        ]
        L += _mkparents("shared", it, "parents")
        L.append(f"  mkdir {dst}" if is_dir else f"  (umask 077; : > {dst}); chmod 600 {dst}")
        L += [f'  placeholders="{q(it)} $placeholders"; note {q("created empty shared/" + it)}', "fi"]
    # 3. *.bak leftovers -> .capview/legacy-junk (listed, not deleted)
    L += ["stage junk", "mkdir -p .capview/legacy-junk",
          "for n in *.bak .*.bak; do",
          '  [ -e "$n" ] || [ -L "$n" ] || continue',
          '  mv -- "$n" .capview/legacy-junk/ || fail "moving $n to .capview/legacy-junk failed"',
          '  sec junk; printf "%s\\n" "$n"',
          "done"]
    # 4. the remaining app files -> releases/<version>
    L += ["stage app", f"mkdir -p {q(rel)}",
          "for n in * .[!.]* ..?*; do",
          '  [ -e "$n" ] || [ -L "$n" ] || continue',
          f'  case $n in {_KEEP}) continue ;; esac',
          '  if [ ! -L "$n" ] && [ "$(stat -c %d -- "$n")" != "$dev" ]; then fail "$n is a mount point: refusing to copy"; fi',
          f'  mv -- "$n" {q(rel)}/ || fail "moving $n into {rel} failed"',
          "done"]
    # 5. link shared, exactly as a deploy does
    L.append("stage link")
    for it in items:
        link = q(rel + "/" + it)
        L += _mkparents(rel, it, "lparents")
        L += [f"if [ -e {link} ] || [ -L {link} ]; then fail {q(rel + '/' + it + ' is in the way of the shared link')}; fi",
              f"ln -s {q('../' * (it.count('/') + 2) + 'shared/' + it)} {link}"]
    # 6. verify: the same files and bytes, and sqlite says ok
    L += ["stage verify",
          'after=$(eval "dstats $have_after")',
          'sec stats; printf "%s\\n%s\\n" "$before" "$after"',
          '[ "$before" = "$after" ] || fail "data changed during the move (files bytes: $before -> $after)"',
          "if command -v sqlite3 >/dev/null 2>&1; then",
          f"  {_db_find('shared')} > .capview/dbs.lst",
          "  bad=$(xargs -0 -r -I{} sh -c 'r=$(sqlite3 -readonly \"$1\" \"PRAGMA integrity_check\" 2>&1 | head -n 3); "
          "[ \"$r\" = ok ] || printf \"%s: %s\\n\" \"$1\" \"$r\"' sh {} < .capview/dbs.lst)",
          '  n=$(tr -cd "\\000" < .capview/dbs.lst | wc -c); rm -f .capview/dbs.lst',
          '  [ -z "$bad" ] || fail "integrity_check failed: $bad"',
          '  note "integrity_check ok for $n SQLite file(s)"',
          "else note 'sqlite3 is not installed on the host: integrity_check skipped'; fi"]
    # 7. unit rewrite (optional, backup kept)
    if unit_path and unit_text is not None:
        up, bak = q(unit_path), q(unit_path + backup_suffix)
        L += ["stage unit", f"cp -p -- {up} {bak}",
              f"printf '%s' {q(unit_text)} > {up}.tmp.$$ && chmod --reference={bak} {up}.tmp.$$ && mv -f {up}.tmp.$$ {up}",
              "unit_new=1", "systemctl --user daemon-reload", f"note {q('rewrote ' + unit_path + ' (backup: ' + unit_path + backup_suffix + ')')}"]
    # 8. release.json, the final switch, start, health
    meta = f"{rel}/.capview/release.json"
    L += ["stage switch", f"mkdir -p {q(rel)}/.capview",
          "files=$(find " + q(rel) + " -path " + q(rel + "/.capview") + " -prune -o -type f -print | wc -l)",
          "bytes=$(find " + q(rel) + " -path " + q(rel + "/.capview") + " -prune -o -type f -printf '%s\\n' | awk '{b+=$1} END {printf \"%.0f\", b}')",
          _json_printf({**release, "state": "ready"}, {"files": "$files", "bytes": "${bytes:-0}"}, meta).rstrip("\n"),
          sw.atomic_switch(p, version).rstrip("\n"), "switched=1",
          "stage start", "{", sw.service_start(s).rstrip("\n"), "} || fail 'starting the service failed'",
          f"t1={sw.now_expr()}",
          "downtime=$(awk -v a=\"$t0\" -v b=\"$t1\" 'BEGIN {printf \"%.3f\", b - a}')",
          "stage health", f"if ! ( {sw.health_script(s)} ); then fail 'health check failed after the switch'; fi",
          # success: the new layout stays
          _json_printf({**release, "state": "live", "health": "ok"},
                       {"files": "$files", "bytes": "${bytes:-0}", "downtime": "$downtime"}, meta).rstrip("\n"),
          "rmdir .capview/legacy-junk 2>/dev/null || true",
          "mkdir -p .capview",
          _json_printf(record, {"downtime": "$downtime"}, ".capview/history.jsonl", append=True).rstrip("\n"),
          "done=1",
          # secrets end private whatever mode the legacy file had (never through a symlink)
          *[f"if [ -f {q('shared/' + f)} ] && [ ! -L {q('shared/' + f)} ]; then chmod 600 {q('shared/' + f)} || true; fi"
            for f in secret_files(host)],
          unlock.rstrip("\n"),
          'sec migrated; printf "%s\\n" "$downtime"', "sec end"]
    return "\n".join(L) + "\n"


def _restore(host: HostConfig, version: str, rel: str, items: list[str], unit_path: str | None, suffix: str) -> str:
    """sh ``restore``: undo in reverse. Every step is best effort and says when it fails."""
    s = host.settings
    r = [
        "restore() {",
        "  set +e",
        "  sec restoring",
        '  if [ "$switched" = 1 ]; then',
        "    " + sw.service_stop(s).rstrip("\n") + " >/dev/null 2>&1",
        "    rm -f current",
        "  fi",
        "  rm -f current.tmp.*",
    ]
    if unit_path:
        up, bak = q(unit_path), q(unit_path + suffix)
        r.append(f'  if [ "$unit_new" = 1 ]; then mv -f -- {bak} {up} && systemctl --user daemon-reload; fi')
    for it in items:
        r.append(f"  if [ -L {q(rel + '/' + it)} ]; then rm -f -- {q(rel + '/' + it)}; fi")
    r.append('  eval "set -- $lparents"; for d in "$@"; do rmdir -- "$d"; done')
    r += [
        f"  rm -rf -- {q(rel)}/.capview",
        f"  if [ -d {q(rel)} ]; then",
        f"    for n in {q(rel)}/* {q(rel)}/.[!.]* {q(rel)}/..?*; do",
        '      [ -e "$n" ] || [ -L "$n" ] || continue',
        '      mv -- "$n" . || note "restore: could not move $n back"',
        "    done",
        f"    rmdir {q(rel)}",
        "  fi",
        "  rmdir releases 2>/dev/null",
        "  if [ -d .capview/legacy-junk ]; then",
        "    for n in .capview/legacy-junk/* .capview/legacy-junk/.[!.]* .capview/legacy-junk/..?*; do",
        '      [ -e "$n" ] || [ -L "$n" ] || continue',
        '      mv -- "$n" . || note "restore: could not move $n back"',
        "    done",
        "    rmdir .capview/legacy-junk",
        "  fi",
        # $moved / $placeholders / $parents hold only quoted configured names
        '  eval "set -- $moved"',
        '  for i in "$@"; do mv -- "shared/$i" "$i" || note "restore: could not move shared/$i back"; done',
        '  eval "set -- $placeholders"',
        '  for i in "$@"; do if [ -d "shared/$i" ] && [ ! -L "shared/$i" ]; then rmdir "shared/$i"; else rm -f "shared/$i"; fi; done',
        '  eval "set -- $emptied"; for i in "$@"; do mkdir "shared/$i"; done',
        '  eval "set -- $parents"; for d in "$@"; do rmdir -- "$d"; done',
        '  if [ "$c_shared" = 1 ]; then rmdir shared; fi',
        '  if [ "$c_meta" = 1 ]; then rm -rf .capview; else rm -rf .capview/lock; fi',
        '  if [ "$stopped" = 1 ] && [ "$was_active" = 1 ]; then',
        "    { " + sw.service_start(s).rstrip("\n").replace("\n", "; ") + "; } >/dev/null 2>&1 || note 'restore: restarting the service failed'",
        "  fi",
        "  sec restored",
        "}",
    ]
    return "\n".join(r)
