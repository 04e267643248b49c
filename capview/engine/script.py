"""Small builders for the POSIX sh scripts the engine sends (one per phase).

Remote output that the engine parses is framed with ``@@cv`` marker lines so
that log lines from builds or services can never be mistaken for data.
"""

from __future__ import annotations

import json
import re
import shlex

MARK = "@@cv"

q = shlex.quote


def write_file(path: str, text: str, mode: str | None = None) -> str:
    """Write ``text`` to ``path`` atomically (temp file + rename): never in place."""
    tmp = f"{path}.tmp.$$"
    chmod = f" && chmod {mode} {q(tmp)}" if mode else ""
    return f"printf '%s\\n' {q(text)} > {q(tmp)}{chmod} && mv -f {q(tmp)} {q(path)}\n"


def write_json(path: str, obj: dict) -> str:
    return write_file(path, json.dumps(obj, sort_keys=True, separators=(",", ":")))


def append_line(path: str, obj: dict, host_numbers: dict[str, str] | None = None) -> str:
    """Append one JSON line (history.jsonl is append-only).

    ``host_numbers`` maps keys to shell expressions evaluated on the host (e.g.
    ``{"unavailable": "$unavail"}``); their values are spliced in as JSON numbers.
    """
    doc = dict(obj)
    for key in host_numbers or {}:
        doc[key] = f"@@{key}@@"
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    if not host_numbers:
        return f"printf '%s\\n' {q(text)} >> {q(path)}\n"
    fmt, args = [], []
    for part in re.split(r'"@@([A-Za-z_]+)@@"', text):
        if part in (host_numbers or {}):
            fmt.append("%s")
            args.append(f'"{host_numbers[part]}"')
        else:
            fmt.append(part.replace("%", "%%").replace("\\", "\\\\"))
    return f"printf {q(''.join(fmt) + chr(92) + 'n')} {' '.join(args)} >> {q(path)}\n"


def marker(name: str, value: str = "") -> str:
    """A shell line printing a marker the engine parses: ``@@cv name value``."""
    return f"printf '%s %s %s\\n' {MARK} {q(name)} \"{value}\"\n"


def parse_markers(stdout: str) -> dict[str, list[str]]:
    """Collect ``@@cv name value`` lines into name -> [values]."""
    found: dict[str, list[str]] = {}
    for line in stdout.splitlines():
        if line.startswith(MARK + " "):
            _, _, rest = line.partition(" ")
            name, _, value = rest.partition(" ")
            found.setdefault(name, []).append(value)
    return found


def sections(stdout: str) -> list[tuple[str, str, list[str]]]:
    """Split output framed by ``@@cv section <kind> <arg>`` lines into (kind, arg, lines)."""
    out: list[tuple[str, str, list[str]]] = []
    for line in stdout.splitlines():
        if line.startswith(f"{MARK} section "):
            parts = line.split(" ", 3)
            out.append((parts[2], parts[3] if len(parts) > 3 else "", []))
        elif out:
            out[-1][2].append(line)
    return out
