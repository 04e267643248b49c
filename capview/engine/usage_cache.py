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

from capview.engine.layout import is_version
from capview.engine.usage import Summary

CACHE = ".capview/usage.cache"

# sh, run in deploy_path: one line that changes whenever the sums could.
FINGERPRINT = "find releases releases/*/.capview -maxdepth 1 -printf '%p %i %C@\\n' 2>/dev/null | cksum"


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


def cache_tee() -> str:
    """sh filter: pass one summary line through, and append it to ``$tmpc`` as ``$n LINE``."""
    return "{ IFS= read -r line || line=; printf '%s\\n' \"$line\"; [ -z \"$tmpc\" ] || printf '%s %s\\n' \"$n\" \"$line\" >> \"$tmpc\" 2>/dev/null || :; }"


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
    out: dict[str, Summary] = {}
    for line in body.splitlines()[1:]:
        parts = line.split()
        if len(parts) == 5 and is_version(parts[0]) and all(p.isdigit() for p in parts[1:]):
            out[parts[0]] = Summary(*(int(p) for p in parts[1:]))
    return out
