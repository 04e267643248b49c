"""Host text made inert: the one function every front passes remote strings through.

Anything that came from a host (release names, release.json fields, history lines,
file names and contents, log lines, error messages) may carry terminal escape
sequences: CSI colours, OSC titles, OSC 52 (writes the operator's clipboard), C1
controls (``\\x9b`` is a one-byte CSI on some terminals), bidi overrides that make
text read backwards. :func:`line` and :func:`block` show every such character as a
visible escape (``\\x1b``, ``\\u202e``) so it is printed, never obeyed, and
:func:`clip` bounds what a hostile host can make us print.
"""

from __future__ import annotations

import re
import unicodedata

# C0 (but TAB / LF, handled per mode), DEL, C1; plus Unicode format, surrogate,
# private-use and line/paragraph separators (bidi overrides, zero-width chars).
_C0_C1 = "\x00-\x08\x0b-\x1f\x7f-\x9f"
_LINE_RE = re.compile(f"[{_C0_C1}\x0a\u2028\u2029]")
_BLOCK_RE = re.compile(f"[{_C0_C1}\u2028\u2029]")
_SUSPECT_RE = re.compile(r"[^\x09\x0a\x20-\x7e]")

FIELD_LIMIT = 200  # a table cell from the host (operator, commit, health, ...)


def _esc(ch: str) -> str:
    if ch == "\n":
        return "\\n"
    if ch == "\r":
        return "\\r"
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _unicode_safe(text: str) -> str:
    """Escape the non-ASCII characters that are invisible or reorder text."""
    if not _SUSPECT_RE.search(text):
        return text
    out = []
    for ch in text:
        if ord(ch) > 0x9f and unicodedata.category(ch) in ("Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            out.append(_esc(ch))
        else:
            out.append(ch)
    return "".join(out)


def line(value: object) -> str:
    """One displayable line: every control character, newlines included, becomes visible."""
    text = "" if value is None else str(value)
    return _unicode_safe(_LINE_RE.sub(lambda m: _esc(m.group()), text)).expandtabs(4)


def block(value: object) -> str:
    """Multi-line text (file contents, logs): keeps newlines, escapes everything else."""
    text = "" if value is None else str(value).replace("\r\n", "\n")
    return _unicode_safe(_BLOCK_RE.sub(lambda m: _esc(m.group()), text)).expandtabs(4)


def clip(value: object, limit: int = FIELD_LIMIT) -> str:
    """:func:`line`, cut to ``limit`` characters with an ellipsis (table cells, messages)."""
    text = line(value)
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"
