"""The one shell dialect and the one output protocol of every remote script.

Scripts are POSIX ``sh`` (the transport prepends ``set -eu``, XDG_RUNTIME_DIR and a
umask). Everything the engine parses is framed by a per-call random marker
(:class:`Frames`), so nothing a host prints — a build log, a file's content, a file
name with a newline — can forge a frame:

* ``mark KIND ARG...`` prints one frame line ``<M> KIND ARG`` (progress and values);
* ``sec KIND [ARG]`` starts a section whose body (the lines up to the next frame) is
  remote content, e.g. a ``cat`` of release.json; a leading newline keeps the frame at
  the start of a line whatever the content before it ended with.

ARG must be our own words, numbers or validated names (no newline).
"""

from __future__ import annotations

import json
import re
import secrets
import shlex
from dataclasses import dataclass
from textwrap import indent as _indent

q = shlex.quote

# GNU date has %N; elsewhere fall back to whole seconds.
NOW = "$(date +%s.%N 2>/dev/null | sed 's/N$/0/')"


@dataclass(frozen=True)
class Frames:
    marker: str

    @classmethod
    def new(cls) -> "Frames":
        return cls("@@cv-" + secrets.token_hex(8))

    def prelude(self) -> str:
        """sh defining ``$M``, ``mark`` and ``sec`` (see the module doc)."""
        return (f"M='{self.marker}'\n"
                "mark() { printf '%s %s\\n' \"$M\" \"$*\"; }\n"
                "sec() { printf '\\n%s %s\\n' \"$M\" \"$*\"; }\n")

    def parse(self, stdout: str) -> list[tuple[str, str, str]]:
        """(kind, arg, body) per frame; text before the first frame is dropped.

        The body keeps the content's own trailing newline (callers strip it)."""
        return parse_frames(stdout, self.marker)

    def line(self, line: str) -> tuple[str, str] | None:
        """(kind, arg) when ``line`` is a frame line of this marker."""
        if line.startswith(self.marker + " "):
            kind, _, arg = line[len(self.marker) + 1:].partition(" ")
            return kind, arg
        return None


def parse_frames(stdout: str, marker: str) -> list[tuple[str, str, str]]:
    # The frame line's own newline is left to the body (then dropped), so two frame
    # lines in a row are both found.
    pat = re.compile("\n" + re.escape(marker) + r" ([^\n]*)(?=\n|$)")
    parts = pat.split("\n" + stdout)
    out: list[tuple[str, str, str]] = []
    for i in range(1, len(parts) - 1, 2):
        kind, _, arg = parts[i].partition(" ")
        body = parts[i + 1]
        out.append((kind, arg, body[1:] if body.startswith("\n") else body))
    return out


def parse_markers(stdout: str, frames: Frames) -> dict[str, list[str]]:
    """One-line frames (``MARKER NAME VALUE``) as name -> [values], in order."""
    found: dict[str, list[str]] = {}
    for kind, arg, _ in frames.parse(stdout):
        found.setdefault(kind, []).append(arg)
    return found


def kinds(frames: list[tuple[str, str, str]]) -> set[str]:
    return {k for k, _, _ in frames}


def bodies(frames: list[tuple[str, str, str]]) -> dict[str, str]:
    """kind -> body of its last frame."""
    return {k: b for k, _, b in frames}


def json_printf(obj: dict, host: dict[str, str] | None = None) -> str:
    """A ``printf`` printing ``obj`` as one compact JSON line (keys sorted, ASCII only).

    ``host`` maps keys to shell expressions evaluated on the host that yield a JSON
    token (a number, ``null``, or a quoted string of our own words), spliced in place:
    e.g. ``{"downtime": "${downtime:-null}"}``. The literal parts go in as ``%s``
    arguments, so no ``%`` or backslash in a value can reach printf's format."""
    host = host or {}
    doc = json.dumps({**obj, **{k: f"@@{k}@@" for k in host}}, sort_keys=True,
                     separators=(",", ":"), ensure_ascii=True)
    fmt, args = "", []
    for part in re.split(r'"@@([A-Za-z_]+)@@"', doc):
        fmt += "%s"
        args.append(f'"{host[part]}"' if part in host else q(part))
    return f"printf '{fmt}\\n' " + " ".join(args)


def write_json(path: str, obj: dict, host: dict[str, str] | None = None) -> str:
    """Rewrite a JSON file atomically (temp file + rename), ``host`` values spliced in."""
    tmp = f"{q(path)}.tmp.$$"
    return f"{json_printf(obj, host)} > {tmp} && mv -f {tmp} {q(path)}\n"


def append_line(path: str, obj: dict, host: dict[str, str] | None = None) -> str:
    """Append one JSON line (history.jsonl is append-only: one printf, O_APPEND)."""
    return f"{json_printf(obj, host)} >> {q(path)}\n"


def indent(text: str, prefix: str = "  ") -> str:
    return _indent(text, prefix)


def one_line(text: str, limit: int = 300) -> str:
    """The first non-empty line of an error, shortened: for one-line host errors."""
    for line in str(text).splitlines():
        if line.strip():
            line = line.strip()
            return line if len(line) <= limit else line[: limit - 3] + "..."
    return str(text).strip()[:limit] or "unknown error"


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


class Script:
    """A tiny builder so a script reads top to bottom: ``Script(frames).line(...).marker(...)``.

    Every method returns the builder; :meth:`text` gives the script."""

    def __init__(self, frames: Frames | None = None) -> None:
        self._parts: list[str] = [frames.prelude()] if frames else []

    def line(self, *lines: str) -> "Script":
        self._parts += [text.rstrip("\n") + "\n" for text in lines]
        return self

    def raw(self, text: str) -> "Script":
        """Already-built sh (a fragment from another builder), added as is."""
        self._parts.append(text if text.endswith("\n") or not text else text + "\n")
        return self

    def marker(self, kind: str, value: str = "") -> "Script":
        """A frame line; ``value`` is sh (quoted words or ``"$var"``)."""
        return self.line(f"mark {kind}" + (f" {value}" if value else ""))

    def section(self, kind: str, arg: str = "") -> "Script":
        return self.line(f"sec {kind}" + (f" {arg}" if arg else ""))

    def write_json(self, path: str, obj: dict, host: dict[str, str] | None = None) -> "Script":
        return self.raw(write_json(path, obj, host))

    def append_history(self, history: str, record: dict, host: dict[str, str] | None = None) -> "Script":
        return self.raw(append_line(history, record, host))

    def indent(self, text: str, prefix: str = "  ") -> "Script":
        return self.raw(indent(text, prefix))

    def text(self) -> str:
        return "".join(self._parts)
