"""The scripts of consistent SQLite snapshots in the switch window, and of restoring them
(issue 18); engine/snapshots.py reads what they print.

capview never runs two versions at once, so while the service is stopped nobody
writes the databases: a copy taken then is exact. The switch window must stay short,
so taking a snapshot is split in two host scripts:

* :func:`take_script` (in the window, service stopped): per database, checkpoint the WAL
  into the file and copy the file (``cp --reflink=auto``: instant on CoW filesystems), or
  SQLite's own ``.backup`` when the WAL does not empty or a hot journal exists — into
  ``shared/.snapshots/<tag>/<db path>``;
* :func:`describe_script` (after the start, outside the window): size, ``PRAGMA
  user_version``, a schema hash, row counts per table and ``integrity_check`` of each
  snapshot, printed as one JSON document and kept as ``meta.json`` beside it.

:func:`restore_script` (in a rollback's window) first snapshots the current data (so a
restore can be undone), then puts each snapshot back through a temp file that must pass
``integrity_check``, and drops the live file's ``-wal``/``-shm`` (they belong to the old
file). Nothing here is interpolated unquoted: database paths are validated shared paths
(config), tags are release names or ``_restore-<digits>``.

Table names come from the database, so they never reach the shell: SQLite itself builds
the count statements (``quote()`` / doubled quotes) and ``-json`` output is parsed by
engine/snapshots.py.
"""

from __future__ import annotations

import json
import re
import shlex

from capview.config import HostConfig
from capview.engine.layout import HostPaths
from capview.engine.scripts import release as release_sh
from capview.engine.scripts.shell import Frames

q = shlex.quote
SNAPSHOTS = ".snapshots"  # inside shared/
# a release name, or "_restore-<time>" (cannot be a release name) for the data a restore replaced
_TAG_RE = re.compile(r"^(?:_restore-\d{1,20}|[A-Za-z0-9][A-Za-z0-9._+-]{0,63})$")

# sqlite3 prints the count statements; a second sqlite3 runs them with -json output.
_COUNTS_SQL = (
    "SELECT 'SELECT ' || quote(name) || ' AS name, count(*) AS rows FROM \"' "
    "|| replace(name, '\"', '\"\"') || '\";' FROM sqlite_master "
    "WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
)
_SCHEMA_SQL = "SELECT type, name, tbl_name, coalesce(sql, '') FROM sqlite_master ORDER BY type, name"


def validate_tag(tag: str) -> str:
    if tag in (".", "..") or not _TAG_RE.fullmatch(tag):
        raise ValueError(f"invalid snapshot tag {tag!r}")
    return tag


def snapshot_dir(paths: HostPaths, tag: str) -> str:
    return f"{paths.shared}/{SNAPSHOTS}/{validate_tag(tag)}"


def take_script(paths: HostPaths, dbs: tuple[str, ...], tag: str, *, stopped: bool = True) -> str:
    """sh: copy every database that exists into the tag's snapshot dir (fast: the window).

    A database that does not exist yet (a first release) is skipped, not an error.
    Prints ``@snap DB BYTES`` per copied database; exits non-zero if a copy fails.
    ``stopped=False`` (``service.manager: none``: nothing stops the app): always SQLite's
    ``.backup``, which is consistent while others write; a file copy would not be."""
    d = snapshot_dir(paths, tag)
    lines = [f"snap_dir={q(d)}", 'rm -rf "$snap_dir.tmp" && mkdir -p "$snap_dir.tmp"']
    for db in dbs:
        src = f"{paths.shared}/{db}"
        sub = db.rsplit("/", 1)[0] if "/" in db else ""
        dest = f"$snap_dir.tmp/{q(db)}"
        lines += [
            f"if [ -f {q(src)} ]; then",
            f'  mkdir -p "$snap_dir.tmp/"{q(sub)}' if sub else "  :",
            # Nobody writes (the service is stopped): once the WAL is checkpointed into the
            # file, the file IS the data, and a plain (or reflink) copy is the fastest exact
            # copy. A WAL that would not empty or a hot rollback journal: SQLite's .backup.
            f"  sqlite3 {q(src)} 'PRAGMA wal_checkpoint(TRUNCATE)' >/dev/null 2>&1 || :",
            (f"  if [ ! -s {q(src + '-wal')} ] && [ ! -e {q(src + '-journal')} ]; then" if stopped
             else "  if false; then  # the app may be writing: only .backup is consistent"),
            f"    cp --reflink=auto {q(src)} \"$snap_dir.tmp/capview-snapshot.tmp\"",
            "  else",
            f"    ( cd \"$snap_dir.tmp\" && sqlite3 {q(src)} \".backup 'capview-snapshot.tmp'\" )",
            "  fi",
            f"  mv -f \"$snap_dir.tmp/capview-snapshot.tmp\" {dest} "
            f"&& printf '@snap %s %s\\n' {q(db)} \"$(stat -c %s {dest})\"",
            "fi",
        ]
    lines += ['rm -rf "$snap_dir" && mv "$snap_dir.tmp" "$snap_dir"', 'chmod -R go-rwx "$snap_dir"']
    return "\n".join(lines) + "\n"


def describe_script(paths: HostPaths, dbs: tuple[str, ...], tag: str, *, taken_at: float,
                    serving: str | None, reason: str) -> str:
    """sh: print (and store as meta.json) what each snapshot holds. Read-only on the data.

    Every value that comes from a database is JSON that sqlite3 -json printed itself,
    spliced in as is: nothing from the data is escaped (or mis-escaped) by the shell."""
    head = {"tag": tag, "taken_at": taken_at, "from": serving, "reason": reason}
    lines = [f"snap_dir={q(snapshot_dir(paths, tag))}", '[ -d "$snap_dir" ] || exit 0',
             _describe_json('"$snap_dir"/', dbs, head, '"$snap_dir/meta.json.tmp"'),
             'mv -f "$snap_dir/meta.json.tmp" "$snap_dir/meta.json"', 'chmod 600 "$snap_dir/meta.json"',
             'printf "@meta "; cat "$snap_dir/meta.json"']
    return "\n".join(lines) + "\n"


def describe_live_script(paths: HostPaths, dbs: tuple[str, ...], *, at: float) -> str:
    """sh: the same description of the live databases (``sqlite3 -readonly``: the app may
    be running; nothing is written), printed as ``@meta {json}``."""
    head = {"tag": "_live", "taken_at": at, "from": None, "reason": "now"}
    return ("printf '@meta '\n"
            + _describe_json(q(paths.shared) + "/", dbs, head, "/dev/stdout") + "\n")


def _describe_json(base: str, dbs: tuple[str, ...], head: dict, out: str) -> str:
    """sh: one JSON document describing ``base<db>`` for each db that exists, into ``out``."""
    text = json.dumps(head, sort_keys=True)
    lines = ["{", f"  printf '%s' {q(text[:-1])}", "  printf ', \"dbs\": {'", "  sep="]
    for db in dbs:
        f = base + q(db)
        lines += [
            f"  if [ -f {f} ]; then",
            f"    uv=$(sqlite3 -readonly -json {f} 'PRAGMA user_version' 2>/dev/null | tr -d '\\n'); : \"${{uv:=null}}\"",
            f"    ic=$(sqlite3 -readonly -json {f} 'PRAGMA integrity_check' 2>/dev/null | tr -d '\\n'); : \"${{ic:=null}}\"",
            f"    sh=$(sqlite3 -readonly {f} {q(_SCHEMA_SQL)} 2>/dev/null | sha256sum | cut -c1-64)",
            f"    tb=$(sqlite3 -readonly {f} {q(_COUNTS_SQL)} 2>/dev/null | sqlite3 -readonly -json {f} 2>/dev/null "
            "| sed 's/^\\[//; s/\\]$//' | paste -sd, -); tb=\"[$tb]\"",
            f"    printf '%s%s: {{\"bytes\": %s, \"user_version\": %s, \"integrity\": %s, "
            f"\"schema_sha256\": \"%s\", \"tables\": %s}}' \"$sep\" {q(json.dumps(db))} "
            f"\"$(stat -c %s {f})\" \"$uv\" \"$ic\" \"$sh\" \"$tb\"",
            "    sep=', '",
            "  fi",
        ]
    lines += ["  printf '}}\\n'", f"}} > {out}"]
    return "\n".join(lines)


def restore_script(paths: HostPaths, dbs: tuple[str, ...], tag: str, backup_tag: str | None) -> str:
    """sh (service stopped): snapshot the current data as ``backup_tag``, then restore ``tag``.

    Each restored file is written beside the live one, must pass integrity_check, and
    replaces it by rename; the live file's -wal/-shm go (they describe the old file).
    A missing snapshot or a failed check stops before the first database is replaced."""
    src_dir = snapshot_dir(paths, tag)
    lines = [take_script(paths, dbs, backup_tag).rstrip("\n") if backup_tag else ":", f"src_dir={q(src_dir)}",
             '[ -d "$src_dir" ] || { echo "snapshot $src_dir does not exist" >&2; exit 1; }']
    staged = []
    for i, db in enumerate(dbs):
        live = f"{paths.shared}/{db}"
        tmp = f"{live}.capview-restore"
        staged.append((db, live, tmp))
        lines += [
            f"if [ -f \"$src_dir\"/{q(db)} ]; then",
            f"  cp -f \"$src_dir\"/{q(db)} {q(tmp)}",
            f"  ok=$(sqlite3 {q(tmp)} 'PRAGMA integrity_check' 2>&1 | head -n 1)",
            f"  [ \"$ok\" = ok ] || {{ rm -f {q(tmp)}; echo {q(f'restored copy of {db} failed integrity_check: ')}\"$ok\" >&2; exit 1; }}",
            f"  restore_{i}=1",
            "fi",
        ]
    for i, (db, live, tmp) in enumerate(staged):
        lines += [
            f"if [ -n \"${{restore_{i}:-}}\" ]; then",
            f"  rm -f {q(live + '-wal')} {q(live + '-shm')} {q(live + '-journal')}",
            f"  mv -f {q(tmp)} {q(live)} && printf '@restored %s\\n' {q(db)}",
            "fi",
        ]
    return "\n".join(lines) + "\n"


def prune_script(paths: HostPaths, keep_restores: int = 5) -> str:
    """sh: delete snapshot dirs whose tag is not on stdin (one tag a line: the retained
    releases), keeping the newest ``keep_restores`` pre-restore snapshots too."""
    base = f"{paths.shared}/{SNAPSHOTS}"
    return (
        f"base={q(base)}\n"
        '[ -d "$base" ] || exit 0\n'
        'keep=$(cat)\n'
        f'restores=$(ls -1 "$base" | grep "^_restore-[0-9]*$" | sort -t- -k2 -n | tail -n {int(keep_restores)})\n'
        'for d in "$base"/*; do\n'
        '  [ -d "$d" ] || continue\n'
        '  t=${d##*/}\n'
        '  if printf "%s\\n%s\\n" "$keep" "$restores" | grep -qxF -- "$t"; then continue; fi\n'
        '  rm -rf -- "$d" && printf "@pruned %s\\n" "$t"\n'
        "done\n"
    )


def prune_with_releases_script(paths: HostPaths, keep: int) -> str:
    """sh: a release's snapshot (tagged with the release whose data it holds) goes with
    the release; of the others the newest ``keep`` stay, and the newest ``keep``
    pre-restore snapshots. Never fatal (the switch is done when this runs)."""
    base = q(f"{paths.shared}/{SNAPSHOTS}")
    keep_from = int(keep) + 1
    return (
        f"if [ -d {base} ]; then\n"
        f"  for d in {base}/*; do\n"
        '    [ -d "$d" ] && [ ! -L "$d" ] || continue\n'
        '    t=${d##*/}\n'
        '    case "$t" in _restore-*|*.tmp) continue;; esac\n'
        f'    [ -d {q(paths.releases)}/"$t" ] || {{ rm -rf -- "$d" && echo "snapshot $t pruned with its release"; }}\n'
        "  done\n"
        f"  ls -1t {base} | grep -v -e '^_restore-' -e '[.]tmp$' | tail -n +{keep_from} "
        f'| while IFS= read -r t; do rm -rf -- {base}/"$t" && echo "snapshot $t pruned (data.snapshots: {int(keep)})"; done\n'
        f"  ls -1t {base} | grep '^_restore-[0-9]*$' | tail -n +{keep_from} "
        f'| while IFS= read -r t; do rm -rf -- {base}/"$t"; done\n'
        "fi\n"
    )


def list_metas(paths: HostPaths) -> str:
    """sh (needs a Frames prelude): ``sec snapmeta TAG`` + the first MiB of each snapshot's
    meta.json; only tags that pass the host-side filter are framed."""
    return (
        f"for d in {q(paths.shared + '/' + SNAPSHOTS)}/*; do\n"
        '  [ -d "$d" ] && [ ! -L "$d" ] || continue\n'
        '  n=${d##*/}\n'
        '  case "$n" in [A-Za-z0-9_]*) ;; *) continue;; esac\n'
        '  case "$n" in *[!A-Za-z0-9._+-]*|*.tmp) continue;; esac\n'
        '  sec snapmeta "$n"; head -c 1048576 "$d/meta.json" 2>/dev/null || true\n'
        "done\n"
    )


def probe_script(h: HostConfig, frames: Frames, at: float) -> str:
    """``plan_data``'s one read-only trip (engine/data.py): the releases and history, every
    snapshot's meta.json and a description of the live databases."""
    paths = HostPaths(h.settings.deploy_path)
    return (release_sh.listing(paths, frames, manifest_of_current=False) + list_metas(paths)
            + "sec live\n" + describe_live_script(paths, h.settings.data.sqlite, at=at) + "sec end\n")
