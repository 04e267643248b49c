"""A radio button and a checkbox whose state reads without colour.

Textual draws both states with the same glyph in two colours (``▐●▌`` on and off),
which a monochrome terminal, a colour-blind user or a screenshot in grey loses.
Here on and off differ in the glyph: ``(●)`` / ``( )`` and ``[✓]`` / ``[ ]``.
"""

from __future__ import annotations

from textual.widgets import Checkbox, RadioButton


class Radio(RadioButton):
    BUTTON_LEFT = "("
    BUTTON_RIGHT = ")"

    @property
    def _button(self):  # type: ignore[override]
        self.BUTTON_INNER = "●" if self.value else " "
        return super()._button


class Tick(Checkbox):
    BUTTON_LEFT = "["
    BUTTON_RIGHT = "]"

    @property
    def _button(self):  # type: ignore[override]
        self.BUTTON_INNER = "✓" if self.value else " "
        return super()._button
