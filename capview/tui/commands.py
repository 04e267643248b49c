"""The command palette (ctrl+p): every action of the screen it was opened on, plus the App's."""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Iterable

from rich.text import Text
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider


class CapviewCommands(Provider):
    def _commands(self) -> list[tuple[str, str, Callable[[], Any]]]:
        screen = self.screen
        out: list[tuple[str, str, Callable[[], Any]]] = []
        seen: set[str] = set()
        sources: list[tuple[Any, Iterable[Any]]] = [(screen, getattr(screen, "BINDINGS", ())),
                                                     (self.app, getattr(self.app, "BINDINGS", ()))]
        for target, bindings in sources:
            for b in bindings:
                if not isinstance(b, Binding) or not b.description or b.action in seen:
                    continue
                if target is screen and screen.check_action(b.action, ()) is False:
                    continue  # not applicable here (the footer hides it too)
                seen.add(b.action)
                key = self.app.get_key_display(b)
                help_text = getattr(target, "COMMAND_HELP", {}).get(b.action, "")
                out.append((f"{b.description}  [{key}]", help_text, partial(target.run_action, b.action)))
        return out

    async def discover(self) -> Hits:
        for title, help_text, callback in self._commands():
            yield DiscoveryHit(Text(title), callback, text=title, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, callback in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, text=title, help=help_text)
