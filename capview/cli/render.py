"""Render the engine's event stream for a terminal: JSON lines, plain lines, or a live view.

The engine emits the same events for every front; this module only formats them.
Every string that came from a host goes through :mod:`capview.inert` (escape
sequences are shown, never obeyed; cells are clipped) and every size or duration
through :mod:`capview.units`, so the CLI prints what the dashboard prints.
"""

from __future__ import annotations

import json
import sys
import time
from typing import TextIO

from capview import inert, units
from capview.engine import events as ev
from capview.engine.events import PHASES

LOG_LIMIT = 2000  # one log line from the host, as printed (a 10 MB line is cut, marked "…")
MESSAGE_LIMIT = 400  # a host's final message in the summary


def _json_default(obj):
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    return str(obj)


def json_line(doc: dict) -> str:
    """One JSON document on one line (plain bytes and seconds; ensure_ascii keeps it one line)."""
    return json.dumps(doc, default=_json_default, sort_keys=True) + "\n"


class JsonRenderer:
    """One JSON object a line: machine-readable, stable keys."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def __call__(self, event: ev.Event) -> None:
        self.out.write(json_line(event.to_dict()))
        self.out.flush()

    def close(self) -> None:
        pass


class PlainRenderer:
    """Timestamped lines: for logs, CI and pipes. Ends with the summary table."""

    def __init__(self, out: TextIO, *, verbose: bool = False) -> None:
        self.out = out
        self.verbose = verbose
        self._last_progress: dict[str, float] = {}
        self._failed_phase: dict[str, tuple[str, str]] = {}  # host -> (phase, detail) already printed

    def line(self, at: float, host: str | None, text: str) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(at))
        self.out.write(f"{stamp} {inert.clip(host or '-', 40):<12} {text}\n")
        self.out.flush()

    def __call__(self, e: ev.Event) -> None:
        if isinstance(e, ev.OperationStarted):
            what = f"{e.operation} {inert.clip(e.version or '')}".strip()
            hosts = ", ".join(inert.clip(h, 40) for h in e.hosts)
            self.line(e.at, None, f"{what} on {inert.clip(e.env)}: {hosts}" + (" (dry run)" if e.dry_run else ""))
        elif isinstance(e, ev.PhaseStarted):
            if self.verbose:
                self.line(e.at, e.host, f"{e.phase} ...")
        elif isinstance(e, ev.PhaseFinished):
            status = "ok" if e.ok else "FAILED"
            detail = f"  {inert.clip(e.detail, LOG_LIMIT)}" if e.detail else ""
            if not e.ok:
                self._failed_phase[e.host or ""] = (e.phase, e.detail)
            self.line(e.at, e.host, f"{e.phase:<8} {status:<6} {units.duration(e.duration):>6}{detail}")
        elif isinstance(e, ev.LogLine):
            if self.verbose or e.stream == "stderr" or e.phase == "build":
                self.line(e.at, e.host, f"  | {inert.clip(e.line, LOG_LIMIT)}")
        elif isinstance(e, ev.UploadProgress):
            last = self._last_progress.get(e.host or "", 0.0)
            done = e.files_done == e.files_total
            if done or e.at - last >= 2.0:
                self._last_progress[e.host or ""] = e.at
                if e.files_total and (self.verbose or not done):
                    self.line(e.at, e.host, f"  upload {e.files_done}/{units.plural(e.files_total, 'file')}, "
                                            f"{units.size(e.bytes_done)}/{units.size(e.bytes_total)}")
        elif isinstance(e, ev.HostWarning):
            self.line(e.at, e.host, f"warning: {inert.clip(e.message, LOG_LIMIT)}")
        elif isinstance(e, ev.DowntimeMeasured):
            if self.verbose:
                self.line(e.at, e.host, f"downtime {e.seconds:.3f}s")
        elif isinstance(e, ev.DryRunScript):
            self.line(e.at, e.host, f"--- {e.phase} script (dry run, not executed) ---")
            for script_line in e.script.rstrip("\n").splitlines():
                self.out.write(f"    {inert.line(script_line)}\n")
        elif isinstance(e, ev.HostFinished):
            self.line(e.at, e.host, host_outcome(e, self._failed_phase.get(e.host or "")))
        elif isinstance(e, ev.OperationFinished):
            self.out.write(summary_table(e.results))
            self.out.flush()

    def close(self) -> None:
        pass


def host_outcome(e: ev.HostFinished, failed_phase: tuple[str, str] | None = None) -> str:
    """``OK: v2 is live``; a failure whose reason its phase line already printed says
    where instead of printing the same reason again (the summary repeats it once)."""
    if e.outcome != "ok" and failed_phase and failed_phase[1] == e.message:
        return f"{e.outcome.upper()} at {failed_phase[0]} (reason above)"
    return f"{e.outcome.upper()}: {inert.clip(e.message, LOG_LIMIT)}"


def summary_table(results: tuple[ev.HostFinished, ...]) -> str:
    """The end-of-run table. Round trips and bytes sent appear when the operation counted them."""
    if not results:
        return "\nsummary: no hosts\n"
    counted = any(r.round_trips or r.bytes_sent for r in results)
    head = ("host", "outcome", "version", "time") + (("trips", "sent") if counted else ()) + ("message",)
    rows = [head]
    for r in results:
        cells = (inert.clip(r.host or "-", 40), r.outcome, inert.clip(r.version or "-", 64), units.duration(r.duration))
        if counted:
            cells += (str(r.round_trips), units.size(r.bytes_sent))
        rows.append(cells + (inert.clip(r.message, MESSAGE_LIMIT),))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head) - 1)]
    ok = sum(r.outcome == "ok" for r in results)
    lines = ["", f"summary: {ok} of {units.plural(len(results), 'host')} ok"]
    for row in rows:
        lines.append(("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1]).rstrip())
    return "\n".join(lines) + "\n"


class LiveRenderer:
    """On a TTY: a per-host phase table with an upload bar, redrawn in place (rich)."""

    def __init__(self, out: TextIO, *, verbose: bool = False) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(file=out)
        self.verbose = verbose
        self.hosts: dict[str, dict] = {}
        self.title = ""
        self.live = Live(console=self.console, refresh_per_second=8, transient=False)
        self.started = False

    def _row(self, host: str) -> dict:
        return self.hosts.setdefault(host, {"phases": {}, "upload": None, "outcome": None, "message": "", "downtime": None})

    def __call__(self, e: ev.Event) -> None:
        if isinstance(e, ev.OperationStarted):
            self.title = f"{e.operation} {inert.clip(e.version or '')} -> {inert.clip(e.env)}" + (
                " (dry run)" if e.dry_run else "")
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
        PlainRenderer(buf, verbose=self.verbose)(e)
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
            cells = [Text(inert.clip(host, 40))]
            for p in PHASES:
                st = row["phases"].get(p)
                if st is None:
                    cells.append(Text("·", style="dim"))
                    continue
                sym, style = marks[st[0]]
                label = sym if st[0] == "running" else f"{sym} {units.duration(st[1])}"
                if p == "upload" and st[0] == "running" and row["upload"] is not None:
                    label = upload_bar(row["upload"])
                cells.append(Text(label, style=style))
            cells.append(Text(inert.clip(row["message"] or "", MESSAGE_LIMIT),
                              style="red" if row["outcome"] not in (None, "ok") else ""))
            table.add_row(*cells)
        return table

    def close(self) -> None:
        if self.started:
            self.live.stop()


def upload_bar(u: ev.UploadProgress, width: int = 10) -> str:
    """``▰▰▰▱▱▱ 42% 12/40 3.1 MiB``: bytes decide the bar, files and bytes are shown."""
    frac = (u.bytes_done / u.bytes_total) if u.bytes_total else (u.files_done / u.files_total if u.files_total else 1.0)
    filled = int(round(frac * width))
    return f"{'▰' * filled}{'▱' * (width - filled)} {frac:4.0%} {u.files_done}/{u.files_total} {units.size(u.bytes_done)}"


def make_renderer(*, json_mode: bool, verbose: bool, out: TextIO | None = None):
    out = sys.stdout if out is None else out  # looked up now: main() guards sys.stdout
    if json_mode:
        return JsonRenderer(out)
    if out.isatty():
        return LiveRenderer(out, verbose=verbose)
    return PlainRenderer(out, verbose=verbose)
