"""The host-side sums of release sizes, and the usage cache that keeps them.

Per release the host prints one compact line per entry (no names, so odd file names
cannot break parsing; see engine/usage.py for the format and the arithmetic), or one
awk sums every release at once. The cache (``.capview/usage.cache``):
Summing a release means stat-ing every file in it; on a host with a few
releases of thousands of files that is most of what ``capview releases``
costs (0.55 s of 1.68 s on 20 hosts in the benchmark). Releases are immutable,
so the sums only change when something changes ``releases/`` itself (a release
added, filled, renamed or deleted — the unique counts depend on hard links
between releases) or a release's ``.capview`` metadata. The cache is keyed by a
fingerprint of exactly that: name, inode and ctime of every entry of
``releases/`` and of every ``releases/*/.capview/`` entry.

It is written only when it cannot be stale: no lock was held (a holder may be
hard-linking into a release) and the fingerprint was the same before and after
the sums were taken. A lock present when reading means the cache is ignored.
The file is: line 1 the fingerprint, then ``VERSION FILES SIZE DISK APPARENT``.
"""

from __future__ import annotations

from textwrap import indent

from capview.engine.layout import RELEASE_META, HostPaths
from capview.engine.scripts.shell import q

CACHE = HostPaths("").usage_cache
LOCK = HostPaths("").lock
META = HostPaths("").meta

# GNU find: %b is in 512-byte blocks, the same accounting du uses.
FIND_FORMAT = "%D:%i %n %b %s %y\\n"


def find_command(rel_dir: str) -> str:
    """sh: list ``rel_dir`` (a quoted path of a validated release) in the format above."""
    meta = f"{rel_dir}/{RELEASE_META}"
    return (
        f"find {rel_dir} \\( -path {meta} -o -path {meta}'/*' \\) -printf 'm {FIND_FORMAT}'"
        f" -o -printf 'a {FIND_FORMAT}' 2>/dev/null || true\n"
    )


# The same per-release aggregation as parse_inode_listing + unique_bytes, done on the host
# for listings that need no cross-release sums (capview releases, the dashboard):
# one find lists a batch of releases (BATCH at a time, not a find per release: 10,000
# releases would be 10,000 forks), each line naming its release by find's %H (a
# validated releases/NAME, no blanks); one awk prints
# "VERSION FILES SIZE UNIQUE_DISK UNIQUE_APPARENT" per release, and appends the same
# lines to the file named by out= when it is not empty (the usage cache).
BATCH = 500
_META_RE = f"releases/[^/]*/{RELEASE_META.replace('.', '[.]')}"
BATCH_FIND = (  # sh -c, its "$@" a batch of release dirs (maybe none: xargs runs it once anyway)
    f'[ "$#" -gt 0 ] || exit 0; find "$@" \\( -regex "{_META_RE}" -o -regex "{_META_RE}/.*" \\) -printf "m %H {FIND_FORMAT}"'
    f' -o -printf "a %H {FIND_FORMAT}" 2>/dev/null || true'
)
_SUMS_AWK = (
    "awk -v out=\"$out\" 'function flush(  k, disk, app, line) {"
    " if (name != \"\") {disk=0; app=0;"
    " for (k in c) {if (ty[k]==\"d\") disk+=bl[k]*512*c[k];"
    " else if (c[k]>=nl[k]) {disk+=bl[k]*512; if (k in seen) app+=sz[k]}}"
    " line=sprintf(\"%s %d %d %d %d\", name, files, size, disk, app); print line;"
    " if (out != \"\") {print line >> out; fflush(out)}}"
    " split(\"\", c); split(\"\", nl); split(\"\", bl); split(\"\", sz); split(\"\", ty); split(\"\", seen);"
    " files=0; size=0; name=\"\"}"
    " $2!=cur {flush(); cur=$2; name=substr($2, 10)}"
    " {k=$3; c[k]++; nl[k]=$4; bl[k]=$5; sz[k]=$6; ty[k]=$7;"
    " if ($1==\"a\" && $7==\"f\") {files++; if (!(k in seen)) {seen[k]=1; size+=$6}}}"
    " END {flush()}'"
)


def names_function() -> str:
    """sh: define ``cv_names``: print every release dir a listing frames (releases/NAME,
    the host-side name filter, real directories only), one a line. A list of them in
    "$@" grew quadratically (``set -- "$@" "$r"``: 20 s for 10,000 releases)."""
    return (
        "cv_names() {\n"
        "  for r in releases/*; do\n"
        "    n=${r#releases/}\n"
        "    case $n in [A-Za-z0-9]*) ;; *) continue ;; esac\n"
        "    case $n in *[!A-Za-z0-9._+-]*) continue ;; esac\n"
        "    if [ -d \"$r\" ] && [ ! -L \"$r\" ]; then printf '%s\\n' \"$r\"; fi\n"
        "  done\n"
        "}\n"
    )


def sums_function() -> str:
    """sh: define ``release_sums OUT``: one summary line per release dir (releases/NAME,
    one a line on stdin). OUT is a file the lines are also appended to ("" for none).
    Never fails."""
    return (
        "release_sums() {\n"
        f"  ( out=$1; xargs -n {BATCH} sh -c '{BATCH_FIND}' sums | " + _SUMS_AWK + " ) || true\n"
        "}\n"
    )


# sh, run in deploy_path: one line that changes whenever the sums could. "releases/"
# (not "releases") so a releases/ that is a symlink to another volume is looked into.
# "sums-2": sums made before unique counted only the files size counts are stale (issue 13).
FINGERPRINT = (f"{{ echo sums-2; find releases/ releases/*/{RELEASE_META} -maxdepth 1 -printf '%p %i %C@\\n' "
               "2>/dev/null; } | cksum")


def cache_read() -> str:
    """sh: set ``cached=1`` and print a ``usage`` section when the cache is valid.

    Needs ``sec`` (frames prelude) and ``fp0`` (the fingerprint, taken before)."""
    return (
        "cached=\n"
        f"if [ ! -d {q(LOCK)} ] && [ -f {q(CACHE)} ] && IFS= read -r cfp < {q(CACHE)} && [ \"$cfp\" = \"$fp0\" ]; then\n"
        f"  cached=1; sec usage; cat {q(CACHE)} 2>/dev/null || cached=\n"
        "fi\n"
    )


def cache_begin() -> str:
    """sh: start a new cache file (``$tmpc``) when computing is needed and allowed."""
    return (
        "tmpc=\n"
        f"if [ -z \"$cached\" ] && [ ! -d {q(LOCK)} ] && [ -d {q(META)} ] && [ -w {q(META)} ]; then\n"
        f"  tmpc={q(CACHE)}.$$\n"
        "  trap 'rm -f \"$tmpc\"' EXIT\n"
        "  printf '%s\\n' \"$fp0\" > \"$tmpc\" 2>/dev/null || tmpc=\n"
        "fi\n"
    )


def cache_commit() -> str:
    """sh: keep the new cache only if nothing moved while the sums were taken."""
    return (
        "if [ -n \"$tmpc\" ]; then\n"
        f"  if [ ! -d {q(LOCK)} ] && [ \"$({FINGERPRINT})\" = \"$fp0\" ]; then mv -f \"$tmpc\" {q(CACHE)} 2>/dev/null || rm -f \"$tmpc\"\n"
        "  else rm -f \"$tmpc\"; fi\n"
        "fi\n"
    )


COLD_WAIT = 0.4  # seconds a cold listing waits for the sums at most (then: partial, the rest pending)
BUSY_SECONDS = 120  # a usage.cache.* this recent is a job still summing: no second one meanwhile


def cold_sums_start() -> str:
    """sh: a cold listing's sums (no valid cache), bounded: summing means a stat of every
    file (5 x 200,000 files: 20+ s), so when a new cache can be written (``$tmpc``) the sums
    start here in a job writing it, before the release.json framing, so the wait overlaps
    that work (10,000 releases: 0.4 s of the listing). cold_sums_finish waits for the job
    until COLD_WAIT after its start at most. In time: a ``sums`` section and the cache
    committed as before. Not in time: a ``sumspart`` section with the releases summed so
    far (whole lines only: the client drops an unterminated last one) and the job goes on
    alone to the end, then commits the cache itself (same rules: no lock, the fingerprint
    unchanged), so the next listing is exact. Without ``$tmpc`` (a lock held, .capview not
    writable) the sums are taken to the end, as before. While another listing's job is at it
    (a ``usage.cache.*`` younger than BUSY_SECONDS), none is started: every release not in
    the cache is pending. Sets ``cvm`` (what finish does). Needs cache_read/cache_begin's
    variables."""
    # whoever of the two ends second commits: each tries mkdir "$tmpc.own" when done
    # (atomic); the one that finds it made knows the other one is done and gave its part up
    return (
        # milliseconds of the host clock; 0 where date has no %N (then the tick count bounds the wait)
        "cv_ms() { cvt=$(date +%s%N 2>/dev/null); case $cvt in ''|*[!0-9]*) echo 0 ;; *) echo $((cvt / 1000000)) ;; esac; }\n"
        'if [ -n "$cached" ]; then cvm=\n'
        'elif [ -z "$tmpc" ]; then cvm=full\n'
        # another listing's job is still summing (a dashboard polls): do not start a second one
        f"elif [ -n \"$(find {q(META)} -maxdepth 1 -name 'usage.cache.*' ! -path \"$tmpc\" -newermt '-{BUSY_SECONDS} seconds' "
        '2>/dev/null | head -n 1)" ]; then cvm=busy\n'
        "else cvm=job; cvt0=$(cv_ms)\n"
        "  ( trap '' HUP; cv_names | release_sums \"$tmpc\" >/dev/null\n"
        '    if ! mkdir "$tmpc.own" 2>/dev/null; then rmdir "$tmpc.own"\n'
        f"{indent(cache_commit(), '    ')}"
        "    fi ) </dev/null >/dev/null 2>&1 & cvs=$!\n"
        "fi\n"
    )


def cold_sums_finish() -> str:
    """sh: the end of cold_sums_start's work (see there); commits the cache itself."""
    ticks = int(COLD_WAIT / 0.02)
    return (
        'case $cvm in\n'
        'full) sec sums; cv_names | release_sums "" ;;\n'
        "busy) sec sumspart ;;\n"
        "job)\n"
        f'  w=0; while kill -0 "$cvs" 2>/dev/null && [ "$w" -lt {ticks} ] && [ $(($(cv_ms) - cvt0)) -lt {int(COLD_WAIT * 1000)} ]; '
        "do sleep 0.02; w=$((w+1)); done\n"
        '  if mkdir "$tmpc.own" 2>/dev/null; then trap - EXIT; sec sumspart; tail -n +2 "$tmpc" 2>/dev/null || :\n'
        '  else wait "$cvs" 2>/dev/null || :; rmdir "$tmpc.own"; sec sums; tail -n +2 "$tmpc" 2>/dev/null || :\n'
        f"{indent(cache_commit(), '  ')}"
        "  fi ;;\n"
        "esac\n"
    )


def refresh_script(root: str) -> str:
    """sh: recompute the cache now (after a deploy, so the next listing is fast).

    Same rules as a status run: skipped while a lock is held, kept only if nothing
    moved meanwhile. Prints nothing and never fails."""
    body = (
        "export LC_ALL=C; cached=\n"
        + names_function()
        + sums_function()
        + f"fp0=$({FINGERPRINT})\n"
        + cache_begin()
        + '[ -n "$tmpc" ] || exit 0\n'
        'cv_names | release_sums "$tmpc" >/dev/null\n'
        + cache_commit()
    )
    return f"( cd {q(root)} 2>/dev/null && [ -d releases ] || exit 0\n" + indent(body, "  ") + ") >/dev/null 2>&1 || :\n"
