"""The on-host scripts of ``capview migrate-data`` (old in-place layout -> releases).

probe: read-only, what the plan needs. The migration itself is the switch
transaction (scripts/switch.py, op "migrate") with these pieces in its slots:
``precheck`` (already migrated? was the service running?), ``moves`` with the app
stopped (everything by rename(2): never copy+delete, a move that would cross a
filesystem is refused; verify the data; the release.json), and ``restore``: until
the new release is healthy, any failure undoes every step in reverse, so the
original tree comes back exactly (same names, same inodes) - all but the failure's
health.log, saved first as ``.capview/migrate-health.log`` (mode 0600; the release
that would hold it is taken apart), which is all a .capview the migration created keeps.
"""

from __future__ import annotations

from capview.config import HostConfig
from capview.engine.layout import CURRENT_TMP, LAYOUT_NAMES, RELEASE_JSON, RELEASE_META, HostPaths
from capview.engine.scripts.service import is_active, service_logs, service_start, service_status, service_stop
from capview.engine.scripts.shell import Frames, json_printf, q
from capview.engine.scripts.links import refuse_symlinked_parents

DB_NAMES = ("*.db", "*.sqlite", "*.sqlite3", "*.db3")
_KEEP = "|".join(sorted(LAYOUT_NAMES)) + f"|{CURRENT_TMP}*"
HERE = HostPaths("")

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


def _parents_check(host: HostConfig) -> list[str]:
    """sh: refuse (frame ``fail``, return 1) a nested shared item whose parent is a symlink,
    in the old tree or in shared/. Nothing for items without a parent."""
    p = HostPaths(host.settings.deploy_path)
    lines = []
    for it in (i for i in shared_items(host) if "/" in i):
        lines += [f"  {line}" for line in refuse_symlinked_parents(p.root, it, create=False, fail="refuse")]
        lines += ["  if [ -d shared ]; then (cd shared",
                  *[f"    {line}" for line in refuse_symlinked_parents(p.shared, it, create=False, fail="refuse")],
                  "  ) || exit 1; fi"]
    if not lines:
        return []
    return ["cv_parents() (", '  refuse() { mark fail "$1"; exit 1; }', *lines, ")", "cv_parents || return 1"]


def precheck(host: HostConfig, fail_at: str | None) -> str:
    """Before the lock: re-check the layout (the plan may be stale), note what the
    restore needs, define the helpers the moves use."""
    return "\n".join([
        _HELPERS.rstrip("\n"), "export LC_ALL=C",
        f"fail_at={q(fail_at or '')}",
        'note() { mark note "$*"; }',
        'fail() { cv_fail_msg="$*"; mark fail "$*"; exit 1; }',
        'stage() { mark stage "$1"; if [ "$fail_at" = "$1" ]; then fail "forced failure at $1 (test hook)"; fi; }',
        "if [ -e releases ] || [ -L releases ]; then mark already; return 1; fi",
        # issue 13: no shared item is moved or linked through a symlinked parent (the old
        # tree's var -> /elsewhere would move data from outside deploy_path): refused here,
        # before anything is stopped or moved
        *_parents_check(host),
        "c_shared=0; [ -e shared ] || c_shared=1",
        "stopped=0 was_active=1 unit_new=0 moved='' emptied='' placeholders='' parents='' lparents=''",
        is_active(host.settings, "was_active", "0").rstrip("\n"),
    ]).rstrip("\n") + "\n"


def moves(host: HostConfig, version: str, release: dict, *, unit_path: str | None = None,
          unit_text: str | None = None, backup_suffix: str = ".capview-bak") -> str:
    """With the app stopped: shared items into shared/, *.bak aside, the app into
    releases/<version>, the shared links, verify, the unit (optional), release.json."""
    s = host.settings
    rel = f"releases/{version}"
    items = shared_items(host)
    meta = f"{rel}/{RELEASE_JSON}"
    L: list[str] = ["stopped=1", "stage stop"]
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
    junk = q(HERE.legacy_junk)
    L += ["stage junk", f"mkdir -p {junk}",
          "for n in *.bak .*.bak; do",
          '  [ -e "$n" ] || [ -L "$n" ] || continue',
          f'  mv -- "$n" {junk}/ || fail "moving $n to the legacy junk dir failed"',
          '  mark junk "$n"',
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
    dbs = q(HERE.meta + "/dbs.lst")
    L += ["stage verify",
          'after=$(eval "dstats $have_after")',
          'mark stats "$before" "$after"',
          '[ "$before" = "$after" ] || fail "data changed during the move (files bytes: $before -> $after)"',
          "if command -v sqlite3 >/dev/null 2>&1; then",
          f"  {_db_find('shared')} > {dbs}",
          "  bad=$(xargs -0 -r -I{} sh -c 'r=$(sqlite3 -readonly \"$1\" \"PRAGMA integrity_check\" 2>&1 | head -n 3); "
          "[ \"$r\" = ok ] || printf \"%s: %s\\n\" \"$1\" \"$r\"' sh {} < " + dbs + ")",
          f'  n=$(tr -cd "\\000" < {dbs} | wc -c); rm -f {dbs}',
          '  bad=$(printf "%s" "$bad" | tr "\\n" " ")',
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
    L += ["stage switch", f"mkdir -p {q(rel + '/' + RELEASE_META)}",
          "files=$(find " + q(rel) + " -path " + q(rel + "/" + RELEASE_META) + " -prune -o -type f -print | wc -l)",
          "bytes=$(find " + q(rel) + " -path " + q(rel + "/" + RELEASE_META) + " -prune -o -type f -printf '%s\\n' "
          "| awk '{b+=$1} END {printf \"%.0f\", b}')",
          f"{json_printf({**release, 'state': 'ready'}, SIZES)} > {q(meta)}.tmp.$$ && mv -f {q(meta)}.tmp.$$ {q(meta)}"]
    return "\n".join(L) + "\n"


SIZES = {"files": "$files", "bytes": "${bytes:-0}"}  # counted by the moves, on the host


def live_doc(release: dict) -> dict:
    return {**release, "state": "live", "health": "ok"}


def success_cleanup(host: HostConfig) -> str:
    """After a healthy switch: the junk dir goes if nothing was put there; secrets end
    private whatever mode the legacy file had (never through a symlink)."""
    return (f"rmdir {q(HERE.legacy_junk)} 2>/dev/null || true\n"
            f"rm -f {q(HERE.migrate_health_log)}\n"  # an earlier failure's log is history now
            + "".join(f"if [ -f {q('shared/' + f)} ] && [ ! -L {q('shared/' + f)} ]; then chmod 600 {q('shared/' + f)} || true; fi\n"
                      for f in secret_files(host)))


def undo_meta() -> str:
    """Once a failed migration's result is out: remove the transaction's own files, and
    what it created in .capview, so the tree is exactly as before - but for
    .capview/migrate-health.log (issue 16: a failure always leaves its health.log)."""
    log = HERE.migrate_health_log.rsplit("/", 1)[-1]
    return ('if [ "$outcome" != ok ]; then rm -rf "$ops"; '
            f'[ "${{cv_ops_new:-0}}" != 1 ] || rmdir {q(HERE.ops)} 2>/dev/null; '
            f'if [ "${{cv_meta_new:-0}}" = 1 ]; then find {q(HERE.meta)} -mindepth 1 -maxdepth 1 ! -name {q(log)} '
            f'-exec rm -rf {{}} + 2>/dev/null; rmdir {q(HERE.meta)} 2>/dev/null; fi; fi')


def save_health_log(host: HostConfig) -> str:
    """sh (in restore, before anything is undone): the failure's reason, the service's
    status and its last log lines -> .capview/migrate-health.log, mode 0600 from its first
    byte (the release that would hold a health.log is taken apart by the restore).
    Frame ``savedlog`` once it is there. Never fails."""
    s = host.settings
    log, tmp = q(HERE.migrate_health_log), q(HERE.migrate_health_log + ".tmp")
    status = service_status(s).strip() if s.service.manager == "command" and s.service.logs else ""
    body = "; ".join(x for x in [
        "printf 'capview: migrate %s did not come up: %s\\n' \"$target\" \"${cv_fail_msg:-$reason}\"",
        "printf '\\n-- the service (status, last log lines) --\\n'",
        status, service_logs(s).strip()] if x)
    return "\n".join([
        f"  mkdir -p {q(HERE.meta)} && rm -f {tmp} && ( umask 077; {{ {body} ; }} > {tmp} 2>&1 ) \\",
        f"    && chmod 600 {tmp} && mv -f {tmp} {log} && mark savedlog || rm -f {tmp}",
    ])


def restore(host: HostConfig, version: str, *, unit_path: str | None = None, suffix: str = ".capview-bak") -> str:
    """sh ``restore``: undo in reverse. Every step is best effort and says when it fails.
    (The lock and the transaction's own files are the transaction's: undo_meta.)"""
    s = host.settings
    junk = q(HERE.legacy_junk)
    rel = f"releases/{version}"
    items = shared_items(host)
    r = [
        "restore() {",
        "  set +e",
        "  mark restoring",
        save_health_log(host),
        '  if [ "$stage" = moved ]; then',
        "    { " + service_stop(s).rstrip("\n").replace("\n", "; ") + "; } >/dev/null 2>&1",
        "    rm -f current",
        "  fi",
        f"  rm -f {CURRENT_TMP}*",
    ]
    if unit_path:
        up, bak = q(unit_path), q(unit_path + suffix)
        r.append(f'  if [ "$unit_new" = 1 ]; then mv -f -- {bak} {up} && systemctl --user daemon-reload; fi')
    for it in items:
        r.append(f"  if [ -L {q(rel + '/' + it)} ]; then rm -f -- {q(rel + '/' + it)}; fi")
    r.append('  eval "set -- $lparents"; for d in "$@"; do rmdir -- "$d"; done')
    r += [
        f"  rm -rf -- {q(rel + '/' + RELEASE_META)}",
        f"  if [ -d {q(rel)} ]; then",
        f"    for n in {q(rel)}/* {q(rel)}/.[!.]* {q(rel)}/..?*; do",
        '      [ -e "$n" ] || [ -L "$n" ] || continue',
        '      mv -- "$n" . || note "restore: could not move $n back"',
        "    done",
        f"    rmdir {q(rel)}",
        "  fi",
        "  rmdir releases 2>/dev/null",
        f"  if [ -d {junk} ]; then",
        f"    for n in {junk}/* {junk}/.[!.]* {junk}/..?*; do",
        '      [ -e "$n" ] || [ -L "$n" ] || continue',
        '      mv -- "$n" . || note "restore: could not move $n back"',
        "    done",
        f"    rmdir {junk}",
        "  fi",
        # $moved / $placeholders / $parents hold only quoted configured names
        '  eval "set -- $moved"',
        '  for i in "$@"; do mv -- "shared/$i" "$i" || note "restore: could not move shared/$i back"; done',
        '  eval "set -- $placeholders"',
        '  for i in "$@"; do if [ -d "shared/$i" ] && [ ! -L "shared/$i" ]; then rmdir "shared/$i"; else rm -f "shared/$i"; fi; done',
        '  eval "set -- $emptied"; for i in "$@"; do mkdir "shared/$i"; done',
        '  eval "set -- $parents"; for d in "$@"; do rmdir -- "$d"; done',
        '  if [ "$c_shared" = 1 ]; then rmdir shared; fi',
        '  if [ "$stopped" = 1 ] && [ "$was_active" = 1 ]; then',
        "    { " + service_start(s).rstrip("\n").replace("\n", "; ") + "; } >/dev/null 2>&1 || note 'restore: restarting the service failed'",
        "  fi",
        "  mark restored",
        "}",
    ]
    return "\n".join(r)


def manifest_list_script(dp: str, version: str, frames: Frames) -> str:
    """NUL-separated listing plus sha256 of every file of the new release (not .capview)."""
    rel = HostPaths(dp).release(version)
    return frames.prelude() + (
        f"cd {q(rel)}\n"
        f"sec list\nfind . -path ./{RELEASE_META} -prune -o -mindepth 1 -printf '%y\\0%m\\0%s\\0%l\\0%P\\0'\n"
        f"sec sums\nfind . -path ./{RELEASE_META} -prune -o -type f -print0 | xargs -0 -r sha256sum -z --\n"
        "sec end\n"
    )
