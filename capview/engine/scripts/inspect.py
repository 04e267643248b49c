"""The release inspector's scripts: one directory level, a text file, the logs, two
manifests. Every path is resolved on the host with ``cd -P`` and must stay inside the
release, so a symlink such as ``data -> ../../shared/data`` is shown but never
entered or read through (shared/ holds secrets). Needs the frames prelude.
"""

from __future__ import annotations

from capview.engine.layout import BUILD_LOG, HEALTH_LOG, HostPaths
from capview.engine.scripts.shell import q

LOG_LIMIT = 256_000
LOGS = {"build": BUILD_LOG, "health": HEALTH_LOG}


def resolve(dp: str, version: str, rel: str, want_dir: bool) -> str:
    """sh: check the release, resolve the directory (of ``rel``) physically, refuse an escape.
    Leaves ``$real`` = that directory and ``$name`` = the file's name (file mode)."""
    release = HostPaths(dp).release(version)
    d, _, name = rel.rpartition("/") if not want_dir else (rel, "", "")
    target = f"{release}/{d}" if d else release
    return (
        f"rel={q(release)}\n"
        'if [ -L "$rel" ] || [ ! -d "$rel" ]; then sec missing; exit 0; fi\n'
        'root=$(cd -P "$rel" && pwd -P)\n'
        f"t={q(target)}\n"
        'if [ ! -d "$t" ]; then sec notfound; exit 0; fi\n'
        'real=$(cd -P "$t" && pwd -P)\n'
        'case $real in "$root"|"$root"/*) ;; *) sec escapes; exit 0 ;; esac\n'
        f"name={q(name)}\n"
    )


def list_dir(dp: str, version: str, rel: str) -> str:
    return resolve(dp, version, rel, True) + (
        "sec list\ncd \"$real\"\nfind . -mindepth 1 -maxdepth 1 -printf '%y\\0%s\\0%m\\0%P\\0%l\\0'\nsec end\n"
    )


def _text_file(limit: int) -> str:
    """sh: ``$f`` must be a regular text file; its size and first ``limit`` bytes."""
    return (
        'if [ -L "$f" ] || [ ! -f "$f" ]; then sec notfile; exit 0; fi\n'
        # a NUL byte in the first 8 KiB means binary
        'if [ "$(head -c 8192 "$f" | tr -d \'\\000\' | wc -c)" -ne "$(head -c 8192 "$f" | wc -c)" ]; then sec binary; exit 0; fi\n'
        'sec size\nwc -c < "$f"\n'
        f'sec text\nhead -c {int(limit)} "$f"\n'
    )


def read_text(dp: str, version: str, rel: str, limit: int) -> str:
    return resolve(dp, version, rel, False) + 'f="$real/$name"\n' + _text_file(limit) + "sec end\n"


def read_pair(dp: str, a: str, b: str, rel: str, limit: int) -> str:
    """One file of release ``a`` (section ``side 0``) and of ``b`` (``side 1``), each side in
    a subshell so its ``exit`` ends only that side; ``absent`` where the file does not exist."""
    return "".join(
        f"( sec side {index}\n"
        + resolve(dp, version, rel, False)
        + 'f="$real/$name"\n'
        'if [ ! -e "$f" ] && [ ! -L "$f" ]; then sec absent; exit 0; fi\n'
        + _text_file(limit)
        + ")\n"
        for index, version in enumerate((a, b))
    ) + "sec end\n"


def release_logs(dp: str, version: str) -> str:
    """The build and health logs (tails), when they are plain files."""
    rel = HostPaths(dp).release(version)
    return "".join(
        f"if [ -f {q(rel + '/' + path)} ] && [ ! -L {q(rel + '/' + path)} ]; then "
        f"sec {n}; tail -c {LOG_LIMIT} {q(rel + '/' + path)}; fi\n"
        for n, path in LOGS.items()
    ) + "sec end\n"


def manifests(dp: str, a: str, b: str) -> str:
    paths = HostPaths(dp)
    out = ""
    for i, v in enumerate((a, b)):
        m = paths.manifest(v)
        out += f"if [ -f {q(m)} ]; then sec m{i}; cat {q(m)}; fi\n"
    return out + "sec end\n"
