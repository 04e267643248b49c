"""A footer that drops low-priority keys when the terminal is narrow, never Help or Quit.

Textual's Footer shows every binding in order and cuts what does not fit, so at 80
columns ``? Help`` and ``q Quit`` (listed last) were the first to go. Here each screen
ranks its actions (``FOOTER_KEEP``: most important first); the keys that fit are
shown in their binding order, and the rest are left to the help screen and the
command palette (ctrl+p).
"""

from __future__ import annotations

from textual.binding import Binding
from textual.widgets import Footer

ALWAYS = ("app.help", "help", "app.quit_safely", "quit_safely", "back", "back_running")  # ranked before anything else
PALETTE_WIDTH = {False: 13, True: 11}  # "▏^p palette " docked right (compact: no right padding)


COMPACT_BELOW = 100  # columns: narrower terminals get Textual's compact footer (less padding)


def key_width(key_display: str, description: str, compact: bool = False) -> int:
    """What one FooterKey takes: ' key desc ' with padding, or 'key desc ' compact."""
    return len(key_display) + len(description) + (2 if compact else 3)


def fit(keys: list[tuple[str, int]], rank: list[str], width: int) -> set[str]:
    """Actions (by their footer width) that fit in ``width``: ALWAYS first, then ``rank``, then the rest."""
    order = sorted(range(len(keys)), key=lambda i: _rank(keys[i][0], rank))
    shown, used = set(), 0
    for i in order:
        action, w = keys[i]
        if used + w <= width or _rank(action, rank) < len(ALWAYS):
            shown.add(action)
            used += w
    return shown


def _rank(action: str, rank: list[str]) -> int:
    if action in ALWAYS:
        return ALWAYS.index(action)
    if action in rank:
        return len(ALWAYS) + rank.index(action)
    return len(ALWAYS) + len(rank)


class CapviewFooter(Footer):
    """Footer(...) whose keys are ranked by the screen's ``FOOTER_KEEP``; recomposes on resize."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self._width = 0

    def compose(self):
        width = self.size.width or self.app.size.width
        self.set_reactive(Footer.compact, width < COMPACT_BELOW)
        self.set_class(width < COMPACT_BELOW, "-compact")
        items = list(super().compose())
        keys = []
        for w in items:
            action = getattr(w, "action", None)
            if action is not None and "-command-palette" not in w.classes:
                keys.append((action, key_width(w.key_display, w.description, self.compact)))
        budget = width - PALETTE_WIDTH[self.compact]
        shown = fit(keys, list(getattr(self.screen, "FOOTER_KEEP", ())), budget)
        for w in items:
            action = getattr(w, "action", None)
            if action is None or "-command-palette" in w.classes or action in shown:
                yield w

    def on_resize(self) -> None:
        if self.size.width != self._width:
            self._width = self.size.width
            self.call_after_refresh(self.recompose)


def sync_bindings(screen) -> None:
    """``refresh_bindings()`` only when what the screen's ``check_action`` answers has changed:
    every refresh recomposes the footer, which a 0.1 s progress tick must not do."""
    state = tuple(screen.check_action(b.action, ()) for b in screen.BINDINGS if isinstance(b, Binding))
    if state != getattr(screen, "_binding_state", None):
        screen._binding_state = state
        screen.refresh_bindings()
