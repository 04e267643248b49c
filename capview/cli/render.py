"""Render the engine's event stream for a terminal: JSON lines, plain lines, or a live view.

The engine emits the same events for every front; this module only formats them.
"""

from __future__ import annotations

import json
import sys
import time
from typing import TextIO

from capview.engine import events as ev
from capview.engine.events import PHASES


def _json_default(obj):
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    return str(obj)


class JsonRenderer:
    """One JSON object a line: machine-readable, stable keys."""

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self.out = out

    def __call__(self, event: ev.Event) -> None:
        self.out.write(json.dumps(event.to_dict(), default=_json_default, sort_keys=True) + "\n")
        self.out.flush()

    def close(self) -> None:
        pass


def human_bytes(n: int | float | None) -> str:
    if n is None:
        return "-"
    n = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def inert(text: str) -> str:
    """Remote text made safe for a terminal: no escape sequences or control characters."""
    return "".join(ch if ch.isprintable() or ch == "\t" else f"\\x{ord(ch):02x}" for ch in text)


class PlainRenderer:
    """Timestamped lines: for logs, CI and pipes."""

    def __init__(self, out: TextIO = sys.stdout, *, verbose: bool = False) -> None:
        self.out = out
        self.verbose = verbose
        self._last_progress: dict[str, float] = {}

    def line(self, at: float, host: str | None, text: str) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(at))
        self.out.write(f"{stamp} {host or '-':<12} {inert(text)}\n")
        self.out.flush()

    def __call__(self, e: ev.Event) -> None:
        if isinstance(e, ev.OperationStarted):
            what = f"{e.operation} {e.version or ''}".strip()
            self.line(e.at, None, f"{what} on {e.env}: {', '.join(e.hosts)}" + (" (dry run)" if e.dry_run else ""))
        elif isinstance(e, ev.PhaseStarted):
            if self.verbose:
                self.line(e.at, e.host, f"{e.phase} ...")
        elif isinstance(e, ev.PhaseFinished):
            status = "ok" if e.ok else "FAILED"
            detail = f"  {e.detail}" if e.detail else ""
            self.line(e.at, e.host, f"{e.phase:<8} {status} {e.duration:6.2f}s{detail}")
        elif isinstance(e, ev.LogLine):
            if self.verbose or e.stream == "stderr" or e.phase == "build":
                self.line(e.at, e.host, f"  | {e.line}")
        elif isinstance(e, ev.UploadProgress):
            last = self._last_progress.get(e.host or "", 0.0)
            done = e.files_done == e.files_total
            if done or e.at - last >= 2.0:
                self._last_progress[e.host or ""] = e.at
                if e.files_total and (self.verbose or not done):
                    self.line(e.at, e.host, f"  upload {e.files_done}/{e.files_total} files, "
                                            f"{human_bytes(e.bytes_done)}/{human_bytes(e.bytes_total)}")
        elif isinstance(e, ev.HostWarning):
            self.line(e.at, e.host, f"warning: {e.message}")
        elif isinstance(e, ev.DowntimeMeasured):
            if self.verbose:
                self.line(e.at, e.host, f"downtime {e.seconds:.3f}s")
        elif isinstance(e, ev.DryRunScript):
            self.line(e.at, e.host, f"--- {e.phase} script (dry run, not executed) ---")
            for l in e.script.rstrip("\n").splitlines():
                self.out.write(f"    {inert(l)}\n")
        elif isinstance(e, ev.HostFinished):
            self.line(e.at, e.host, f"{e.outcome.upper()}: {e.message}")
        elif isinstance(e, ev.OperationFinished):
            if len(e.results) > 1 or any(r.outcome == "skipped" for r in e.results):
                self.out.write(summary_table(e.results))
            self.out.flush()

    def close(self) -> None:
        pass


def summary_table(results: tuple[ev.HostFinished, ...]) -> str:
    rows = [("host", "outcome", "version", "time", "trips", "sent", "message")]
    for r in results:
        rows.append((r.host or "-", r.outcome, r.version or "-", f"{r.duration:.1f}s", str(r.round_trips),
                     human_bytes(r.bytes_sent), inert(r.message)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = ["", "summary:"]
    for row in rows:
        lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])
    return "\n".join(lines) + "\n"


class LiveRenderer:
    """On a TTY: a per-host phase table with an upload bar, redrawn in place (rich)."""

    def __init__(self, out: TextIO = sys.stdout, *, verbose: bool = False) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(file=out)
        self.plain = PlainRenderer(out, verbose=verbose)
        self.hosts: dict[str, dict] = {}
        self.title = ""
        self.live = Live(console=self.console, refresh_per_second=8, transient=False)
        self.started = False

    def _row(self, host: str) -> dict:
        return self.hosts.setdefault(host, {"phases": {}, "upload": None, "outcome": None, "message": "", "downtime": None})

    def __call__(self, e: ev.Event) -> None:
        if isinstance(e, ev.OperationStarted):
            self.title = f"{e.operation} {e.version or ''} -> {e.env}" + (" (dry run)" if e.dry_run else "")
            for h in e.hosts:
                self._row(h)
            self.live.start()
            self.started = True
        elif isinstance(e, ev.PhaseStarted) and e.host:
            self._row(e.host)["phases"][e.phase] = ("running", 0.0, "")
        elif isinstance(e, ev.PhaseFinished) and e.host:
            self._row(e.host)["phases"][e.phase] = ("ok" if e.ok else "failed", e.duration, e.detail)
        elif isinstance(e, ev.UploadProgress) and e.host:
            self._row(e.host)["upload"] = e
        elif isinstance(e, ev.DowntimeMeasured) and e.host:
            self._row(e.host)["downtime"] = e.seconds
        elif isinstance(e, ev.HostFinished) and e.host:
            row = self._row(e.host)
            row["outcome"], row["message"] = e.outcome, e.message
        elif isinstance(e, (ev.HostWarning, ev.DryRunScript)) or (isinstance(e, ev.LogLine) and e.stream == "stderr"):
            self.console.print(self._plain_text(e), markup=False, highlight=False, end="")
        elif isinstance(e, ev.OperationFinished):
            self.live.update(self.render())
            self.live.stop()
            self.started = False
            self.console.print(summary_table(e.results), markup=False, highlight=False, end="")
            return
        if self.started:
            self.live.update(self.render())

    def _plain_text(self, e: ev.Event) -> str:
        import io

        buf = io.StringIO()
        PlainRenderer(buf)(e)
        return buf.getvalue()

    def render(self):
        from rich.table import Table
        from rich.text import Text

        table = Table(title=self.title, expand=False)
        table.add_column("host")
        for p in PHASES:
            table.add_column(p)
        table.add_column("result")
        marks = {"running": ("…", "yellow"), "ok": ("✓", "green"), "failed": ("✗", "red")}
        for host, row in self.hosts.items():
            cells = [Text(host)]
            for p in PHASES:
                st = row["phases"].get(p)
                if st is None:
                    cells.append(Text("·", style="dim"))
                    continue
                sym, style = marks[st[0]]
                label = sym if st[0] == "running" else f"{sym} {st[1]:.1f}s"
                if p == "upload" and st[0] == "running" and row["upload"] is not None:
                    label = upload_bar(row["upload"])
                cells.append(Text(label, style=style))
            cells.append(Text(inert(row["message"] or ""), style="red" if row["outcome"] not in (None, "ok") else ""))
            table.add_row(*cells)
        return table

    def close(self) -> None:
        if self.started:
            self.live.stop()


def upload_bar(u: ev.UploadProgress, width: int = 10) -> str:
    """``▰▰▰▱▱▱ 42% 12/40 3.1 MB``: bytes decide the bar, files and bytes are shown."""
    frac = (u.bytes_done / u.bytes_total) if u.bytes_total else (u.files_done / u.files_total if u.files_total else 1.0)
    filled = int(round(frac * width))
    return f"{'▰' * filled}{'▱' * (width - filled)} {frac:4.0%} {u.files_done}/{u.files_total} {human_bytes(u.bytes_done)}"


def make_renderer(*, json_mode: bool, verbose: bool, out: TextIO = sys.stdout):
    if json_mode:
        return JsonRenderer(out)
    if out.isatty():
        return LiveRenderer(out, verbose=verbose)
    return PlainRenderer(out, verbose=verbose)
