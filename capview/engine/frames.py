"""Nonce-framed multi-part output for scripts that print untrusted remote content.

``script.sections`` frames with a fixed ``@@cv`` prefix, which is fine for our own
output; scripts that ``cat`` files or print link targets from the host use a
per-call random marker instead, so no file content (or a name with a newline)
can forge a section boundary.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass


@dataclass(frozen=True)
class Frames:
    marker: str

    @classmethod
    def new(cls) -> "Frames":
        return cls("@@cv-" + secrets.token_hex(8))

    def prelude(self) -> str:
        """Shell lines defining ``sec KIND [ARG]``; ARG must be a validated, newline-free word."""
        return f"M='{self.marker}'\nsec() {{ printf '\\n%s %s\\n' \"$M\" \"$*\"; }}\n"

    def parse(self, stdout: str) -> list[tuple[str, str, str]]:
        """(kind, arg, body) per section; text before the first marker is dropped.

        The body keeps the content's own trailing newline (callers strip it)."""
        pat = re.compile("\n" + re.escape(self.marker) + r" ([^\n]*)(?:\n|$)")
        parts = pat.split("\n" + stdout)
        out: list[tuple[str, str, str]] = []
        for i in range(1, len(parts) - 1, 2):
            kind, _, arg = parts[i].partition(" ")
            out.append((kind, arg, parts[i + 1]))
        return out


def one_line(text: str, limit: int = 300) -> str:
    """The first non-empty line of an error, shortened: for one-line host errors."""
    for line in str(text).splitlines():
        if line.strip():
            line = line.strip()
            return line if len(line) <= limit else line[: limit - 3] + "..."
    return str(text).strip()[:limit] or "unknown error"
