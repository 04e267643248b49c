"""The benchmarks' result model: one Metric per row, markdown tables per scenario, the
machine description, and the issue-21 targets table (``targets_table``).

Metrics are keyed by (scenario, RTT, what). ``Report.load`` reads a previous
``latest.json`` back, so ``python -m benchmarks.run --update --only X`` re-measures the
rows of X (e.g. a noisy one) and keeps every other row of the last run.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import statistics
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from benchmarks.hosts import REPO

KB = 1024
MB = 1024 * 1024

@dataclass
class Metric:
    """One row: a quantity measured for capview and (optionally) for a baseline."""

    scenario: str
    rtt: int
    what: str
    unit: str  # "s" | "B" | "count" | "MB"
    target: str  # human-readable target
    check: Callable[[float | None, float | None], bool | None] | None = None
    capview: list[float] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)
    baseline_name: str = ""
    note: str = ""
    stored_met: bool | None = None  # met? of a row read back from latest.json (no check)

    def med(self, xs: list[float]) -> float | None:
        return statistics.median(xs) if xs else None

    @property
    def cap_med(self) -> float | None:
        return self.med(self.capview)

    @property
    def base_med(self) -> float | None:
        return self.med(self.baseline)

    @property
    def ratio(self) -> float | None:
        c, b = self.cap_med, self.base_med
        return c / b if c is not None and b else None

    @property
    def met(self) -> bool | None:
        if self.check is None:
            return self.stored_met
        if self.cap_med is None:
            return None
        return self.check(self.cap_med, self.ratio)

    def to_json(self) -> dict:
        return {
            "scenario": self.scenario, "rtt_ms": self.rtt, "what": self.what, "unit": self.unit,
            "target": self.target, "capview": self.capview, "baseline": self.baseline,
            "baseline_name": self.baseline_name, "capview_median": self.cap_med,
            "baseline_median": self.base_med, "ratio": self.ratio, "met": self.met, "note": self.note,
        }


def fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "—"
    if unit == "s":
        return f"{v:.2f} s"
    if unit == "B":
        return f"{v / KB:,.0f} KB" if v < 10 * MB else f"{v / MB:,.1f} MB"
    if unit == "MB":
        return f"{v:.0f} MB"
    if unit == "count":
        return f"{v:g}"
    return f"{v:g}"


class Report:
    def __init__(self, scenarios: tuple[str, ...] = ()) -> None:
        self.scenarios = scenarios  # table order
        self.metrics: list[Metric] = []
        self.titles: dict[str, str] = {}
        self.notes: dict[str, list[str]] = {}
        self.errors: list[str] = []
        self.info: dict[str, Any] = {}

    def metric(self, scenario: str, rtt: int, what: str, unit: str, target: str,
               check: Callable | None = None, baseline_name: str = "") -> Metric:
        for m in self.metrics:
            if (m.scenario, m.rtt, m.what) == (scenario, rtt, what):
                return m
        m = Metric(scenario, rtt, what, unit, target, check, baseline_name=baseline_name)
        self.metrics.append(m)
        return m

    def note(self, scenario: str, text: str) -> None:
        self.notes.setdefault(scenario, []).append(text)

    def tables(self) -> str:
        out = []
        order = list(self.scenarios) + sorted({m.scenario for m in self.metrics} - set(self.scenarios))
        for sc in order:
            rows = [m for m in self.metrics if m.scenario == sc]
            if not rows and sc not in self.notes:
                continue
            out.append(f"### {self.titles.get(sc, sc)}\n")
            out.append("| scenario | RTT | capview median | baseline median | ratio | target | met? |")
            out.append("|---|---:|---:|---:|---:|---|:---:|")
            for m in rows:
                met = {True: "yes", False: "**NO**", None: "—"}[m.met]
                base = fmt(m.base_med, m.unit) + (f" ({m.baseline_name})" if m.baseline_name else "")
                ratio = f"{m.ratio:.2f}x" if m.ratio is not None else "—"
                n = max(len(m.capview), len(m.baseline))
                what = m.what + (f" (n={n})" if n and n != self.info.get("runs") else "")
                out.append(f"| {what} | {m.rtt} ms | {fmt(m.cap_med, m.unit)} | {base} | {ratio} "
                           f"| {m.target} | {met} |")
            for line in self.notes.get(sc, []):
                out.append(f"\n* {line}")
            out.append("")
        if self.errors:
            out.append("### errors\n")
            out += [f"* {e}" for e in self.errors]
        return "\n".join(out)

    def get(self, scenario: str, rtt: int, what: str) -> Metric | None:
        for m in self.metrics:
            if (m.scenario, m.rtt, m.what) == (scenario, rtt, what):
                return m
        return None

    def drop_scenarios(self, scenarios: set[str]) -> None:
        """Forget the rows (and notes, errors) of ``scenarios``: they are measured again."""
        self.metrics = [m for m in self.metrics if m.scenario not in scenarios]
        for sc in scenarios:
            self.notes.pop(sc, None)
        self.errors = [e for e in self.errors if e.split(" ", 1)[0] not in scenarios]

    def to_json(self) -> dict:
        return {"info": self.info, "metrics": [m.to_json() for m in self.metrics],
                "errors": self.errors, "notes": self.notes, "titles": self.titles}

    @classmethod
    def load(cls, data: dict, scenarios: tuple[str, ...]) -> "Report":
        rep = cls(scenarios)
        rep.info = dict(data.get("info") or {})
        rep.notes = {k: list(v) for k, v in (data.get("notes") or {}).items()}
        rep.errors = list(data.get("errors") or [])
        rep.titles = dict(data.get("titles") or {})
        for d in data.get("metrics") or []:
            rep.metrics.append(Metric(d["scenario"], d["rtt_ms"], d["what"], d["unit"], d["target"],
                                      None, list(d["capview"]), list(d["baseline"]),
                                      d.get("baseline_name", ""), d.get("note", ""), d.get("met")))
        return rep


# ------------------------------------------------------------------ helpers
def ratio_le(limit: float, min_rtt: int = 100, rtt: int = 0) -> Callable:
    """Target on the ratio, applied only at RTT >= min_rtt (issue 7: 'at 100 ms unless said')."""
    def check(cap: float | None, ratio: float | None) -> bool | None:
        if rtt < min_rtt or ratio is None:
            return None
        return ratio <= limit
    return check


def value_le(limit: float, min_rtt: int = 0, rtt: int = 0) -> Callable:
    def check(cap: float | None, ratio: float | None) -> bool | None:
        if rtt < min_rtt or cap is None:
            return None
        return cap <= limit
    return check


def machine_info() -> dict[str, Any]:
    def cmd(argv: list[str]) -> str:
        try:
            cp = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (cp.stdout or cp.stderr).strip().splitlines()[0]
        except Exception:
            return "?"

    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.0f} GB"
    except (OSError, ValueError, IndexError):
        pass
    try:
        import asyncssh
        asyncssh_v = asyncssh.__version__
    except ImportError:
        asyncssh_v = "?"
    try:
        load = Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        load = ["?"]
    return {
        "load_at_start": " ".join(load),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu, "cores": os.cpu_count(), "memory": mem,
        "kernel": platform.release(), "os": cmd(["sh", "-c", ". /etc/os-release; echo $PRETTY_NAME"]),
        "python": platform.python_version(), "asyncssh": asyncssh_v,
        "openssh": cmd(["ssh", "-V"]), "rsync": cmd(["rsync", "--version"]),
        "commit": cmd(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]),
        "git": cmd(["git", "--version"]),
    }


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"
