"""The host-side cache of per-release size summaries (``.capview/usage.cache``).

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

from capview.engine.layout import is_version
from capview.engine.script import q
from capview.engine.usage import Summary, parse_sums, sums_function

CACHE = ".capview/usage.cache"

# sh, run in deploy_path: one line that changes whenever the sums could.
# "sums-2": sums made before unique counted only the files size counts are stale (issue 13).
FINGERPRINT = "{ echo sums-2; find releases releases/*/.capview -maxdepth 1 -printf '%p %i %C@\\n' 2>/dev/null; } | cksum"


def cache_read() -> str:
    """sh: set ``cached=1`` and print a ``usage`` section when the cache is valid.

    Needs ``sec`` (frames prelude) and ``fp0`` (the fingerprint, taken before)."""
    return (
        "cached=\n"
        f"if [ ! -d .capview/lock ] && [ -f {CACHE} ] && IFS= read -r cfp < {CACHE} && [ \"$cfp\" = \"$fp0\" ]; then\n"
        f"  cached=1; sec usage; cat {CACHE} 2>/dev/null || cached=\n"
        "fi\n"
    )


def cache_begin() -> str:
    """sh: start a new cache file (``$tmpc``) when computing is needed and allowed."""
    return (
        "tmpc=\n"
        "if [ -z \"$cached\" ] && [ ! -d .capview/lock ] && [ -d .capview ] && [ -w .capview ]; then\n"
        f"  tmpc={CACHE}.$$\n"
        "  trap 'rm -f \"$tmpc\"' EXIT\n"
        "  printf '%s\\n' \"$fp0\" > \"$tmpc\" 2>/dev/null || tmpc=\n"
        "fi\n"
    )


def cache_commit() -> str:
    """sh: keep the new cache only if nothing moved while the sums were taken."""
    return (
        "if [ -n \"$tmpc\" ]; then\n"
        f"  if [ ! -d .capview/lock ] && [ \"$({FINGERPRINT})\" = \"$fp0\" ]; then mv -f \"$tmpc\" {CACHE} 2>/dev/null || rm -f \"$tmpc\"\n"
        "  else rm -f \"$tmpc\"; fi\n"
        "fi\n"
    )


def parse_cache(body: str) -> dict[str, Summary]:
    """The ``usage`` section: skip the fingerprint line; bad lines are ignored."""
    return parse_sums(body.partition("\n")[2], is_version)


def refresh_script(root: str) -> str:
    """sh: recompute the cache now (after a deploy, so the next listing is fast).

    Same rules as a status run: skipped while a lock is held, kept only if nothing
    moved meanwhile. Prints nothing and never fails."""
    body = (
        "export LC_ALL=C; cached=\n"
        + sums_function()
        + f"fp0=$({FINGERPRINT})\n"
        + cache_begin()
        + '[ -n "$tmpc" ] || exit 0\n'
        "set --\n"
        "for r in releases/*; do\n"
        "  n=${r#releases/}\n"
        "  case $n in [A-Za-z0-9]*) ;; *) continue ;; esac\n"
        "  case $n in *[!A-Za-z0-9._+-]*) continue ;; esac\n"
        '  [ -d "$r" ] && [ ! -L "$r" ] && set -- "$@" "$r"\n'
        "done\n"
        'release_sums "$tmpc" "$@" >/dev/null\n'
        + cache_commit()
    )
    return f"( cd {q(root)} 2>/dev/null && [ -d releases ] || exit 0\n" + indent(body, "  ") + ") >/dev/null 2>&1 || :\n"
