"""The small operations' scripts: init, pin/unpin, history, and the history append
they (and unlock) share. Each prints nonce frames and ends with ``end``/a verdict."""

from __future__ import annotations

import json

from capview.config import HostConfig
from capview.engine.layout import LAYOUT_NAMES, HostPaths
from capview.engine.manifest import safe_relpath
from capview.engine.scripts.shell import Frames, q
from capview.engine.scripts.status import HISTORY_LINE_BYTES
from capview.engine.scripts.links import refuse_symlinked_parents
from capview.errors import UsageError


def append_record(paths: HostPaths, record: dict) -> str:
    """sh lines appending ``record`` as one JSON line (single printf, O_APPEND).

    ensure_ascii keeps it one line whatever the values contain."""
    line = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return f"mkdir -p {q(paths.meta)}\nprintf '%s\\n' {q(line)} >> {q(paths.history)}\n"


def init_script(host: HostConfig, frames: Frames, record: dict) -> str:
    s = host.settings
    p = HostPaths(s.deploy_path)
    for rel in (*s.shared.dirs, *s.shared.files):
        if not safe_relpath(rel):
            raise UsageError(f"shared path {rel!r} must be relative and stay inside shared/")
    known = "|".join(sorted(LAYOUT_NAMES))
    lines = [
        frames.prelude(),
        "note() { sec \"$1\"; printf '%s\\n' \"$2\"; }",
        "mkd() { if [ -d \"$1\" ]; then note exists \"$2\"; else mkdir -p -- \"$1\"; note created \"$2\"; fi; }",
        # shared files start empty and private (secrets go there)
        "mkf() { if [ -e \"$1\" ] || [ -L \"$1\" ]; then note exists \"$2\"; else mkdir -p -- \"$(dirname -- \"$1\")\"; "
        "(umask 077; : > \"$1\"); chmod 600 \"$1\"; note created \"$2\"; fi; }",
        f"dp={q(p.root)}",
        # Creating releases/ next to an old in-place app would make a mixed layout.
        'if [ -d "$dp" ] && [ ! -d "$dp/releases" ]; then',
        '  for n in "$dp"/* "$dp"/.[!.]* "$dp"/..?*; do',
        '    [ -e "$n" ] || [ -L "$n" ] || continue',
        f'    case ${{n##*/}} in {known}) ;; *) sec legacy; exit 0 ;; esac',
        "  done",
        "fi",
        # issue 13: shared paths are never created through a symlinked parent inside shared/
        "refuse() { sec refused; printf '%s\\n' \"$1\"; exit 0; }",
        'if [ -d "$dp/shared" ]; then cd "$dp/shared"',
        *(line for path in (*s.shared.dirs, *s.shared.files)
          for line in refuse_symlinked_parents(p.shared, path, create=False, fail="refuse")),
        "cd /; fi",
        'mkd "$dp" "$dp"',
    ]
    lines += [f"mkd {q(path)} {q(path)}" for path in (p.releases, p.shared, p.meta)]
    lines += [f"mkd {q(p.shared + '/' + d)} {q(p.shared + '/' + d)}" for d in s.shared.dirs]
    lines += [f"mkf {q(p.shared + '/' + f)} {q(p.shared + '/' + f)}" for f in s.shared.files]
    lines.append(append_record(p, record).rstrip("\n"))
    lines.append("sec end")
    return "\n".join(lines) + "\n"


def pin_script(dp: str, version: str, pin: bool, frames: Frames, record: dict) -> str:
    p = HostPaths(dp)
    rel = p.release(version)
    marker = p.pinned(version)
    change = (f"mkdir -p {q(p.release_meta(version))}\n: > {q(marker)}\n" if pin else f"rm -f {q(marker)}\n")
    already = f"[ -e {q(marker)} ]" if pin else f"[ ! -e {q(marker)} ]"
    return (
        frames.prelude()
        + f"if [ -L {q(rel)} ] || [ ! -d {q(rel)} ]; then sec missing; exit 0; fi\n"
        + f"if {already}; then sec already; exit 0; fi\n"
        + change
        + append_record(p, record)
        + "sec changed\n"
    )


def history_script(dp: str, frames: Frames, limit: int | None) -> str:
    path = HostPaths(dp).history
    read = (f"tail -n {int(limit)} {q(path)}" if limit else f"cat {q(path)}") + f" | cut -b 1-{HISTORY_LINE_BYTES}"
    return frames.prelude() + f"sec history\nif [ -f {q(path)} ]; then {read}; fi\nsec end\n"
