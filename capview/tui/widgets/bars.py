"""A bar chart of deploy duration and downtime per release, newest first.

One row per release: its version (``✗`` when it failed or was rolled back), a bar for
how long the deploy took (``took``: its recorded phases and the switch, slowest host) and a bar for
its downtime (stop begun to start returned, longest host), each with its value, so
a user sees at a glance whether deploys are getting slower or switches longer. Bars
are eighth-blocks scaled to the largest value shown; it reads without colour.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.widget import Widget

from capview.tui.text import clean_line, duration

EIGHTHS = " ▏▎▍▌▋▊▉█"


@dataclass(frozen=True)
class Point:
    version: str
    took: float | None  # seconds
    downtime: float | None
    ok: bool = True


def bar(value: float | None, top: float, width: int) -> str:
    if value is None or top <= 0 or width <= 0:
        return ""
    cells = max(0.0, min(1.0, value / top)) * width
    full = int(cells)
    rest = int(round((cells - full) * 8))
    if rest == 8:
        full, rest = full + 1, 0
    out = "█" * full + (EIGHTHS[rest] if rest and full < width else "")
    return out or ("▏" if value > 0 else "")


def _seconds(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 else None


def took(rec: dict) -> float | None:
    """How long an operation took on its host: the sum of its recorded phases (lock ... build)
    and the switch. The switch runs on the host and records no phase of its own (the
    transaction writes history before the client times it), so its part is the record's
    ``unavailable`` window (stop begun -> first healthy answer), else its ``downtime``."""
    phases = rec.get("phases")
    if not isinstance(phases, dict) or not phases:
        return None
    total = sum(v for v in map(_seconds, phases.values()) if v)
    if "switch" not in phases:
        total += _seconds(rec.get("unavailable")) or _seconds(rec.get("downtime")) or 0.0
    return total


def points_from(records: list[dict]) -> list[Point]:
    """One point per released version (oldest first): the slowest host's phases and downtime."""
    by_version: dict[str, dict] = {}
    for rec in records:
        if rec.get("op") != "release" or not rec.get("version"):
            continue
        spent = took(rec)
        down = _seconds(rec.get("downtime"))
        cur = by_version.setdefault(str(rec["version"]), {"took": None, "down": None, "ok": True,
                                                          "at": rec.get("at") or 0})
        if spent is not None:
            cur["took"] = max(cur["took"] or 0.0, spent)
        if down is not None:
            cur["down"] = max(cur["down"] or 0.0, down)
        cur["ok"] = cur["ok"] and rec.get("outcome") == "ok"
    ordered = sorted(by_version.items(), key=lambda kv: kv[1]["at"] if isinstance(kv[1]["at"], (int, float)) else 0)
    return [Point(v, d["took"], d["down"], d["ok"]) for v, d in ordered]


class ReleasePlot(Widget):
    DEFAULT_CSS = """
    ReleasePlot { height: auto; max-height: 12; padding: 0 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.points: list[Point] = []
        self.rows_shown = 10

    def set_points(self, points: list[Point], rows: int = 10) -> None:
        self.points = points
        self.rows_shown = rows
        self.refresh(layout=True)

    def get_content_height(self, container, viewport, width: int) -> int:
        return min(len(self.points), self.rows_shown) + 1 if self.points else 1

    def render(self) -> Text:
        pts = list(reversed(self.points))[: self.rows_shown]  # newest first
        if not pts:
            return Text("no deploys recorded yet", style="dim")
        width = max(20, self.size.width - 2)
        name_w = min(20, max(len(clean_line(p.version)) + (0 if p.ok else 2) for p in pts) + 1)
        value_w = 7
        room = max(4, width - name_w - 2 * (value_w + 2) - 2)
        took_w, down_w = room * 3 // 5, room - room * 3 // 5
        top_took = max((p.took or 0.0) for p in pts)
        top_down = max((p.downtime or 0.0) for p in pts)
        t = Text(no_wrap=True, overflow="crop")
        t.append(f"{'release':<{name_w}}", style="bold")
        t.append(f"{'deploy duration':<{took_w + value_w + 2}}", style="bold")
        t.append("downtime", style="bold")
        for p in pts:
            t.append("\n")
            name = clean_line(p.version)[: name_w - 1] if p.ok else clean_line(p.version)[: name_w - 3] + " ✗"
            t.append(f"{name:<{name_w}}", style="" if p.ok else "red")
            t.append(f"{bar(p.took, top_took, took_w):<{took_w}}", style="cyan")
            t.append(f" {duration(p.took):>{value_w}} ", style="")
            t.append(f"{bar(p.downtime, top_down, down_w):<{down_w}}", style="magenta")
            t.append(f" {duration(p.downtime):>{value_w}}")
        return t
