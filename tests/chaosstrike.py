"""What the chaos test strikes, and when: the seeded plan of one operation, the TCP proxy
that can cut every link, and one CLI run struck at a mark of its own output or of the host.

``chaoskit.py`` draws the plans and checks the host; this module only runs and strikes.
A strike fires at a *mark* (see ``marks_for``) plus a seeded delay. It *landed* when capview
was still running and had not yet reported the host finished; for a cut, when at least one
link was open (if none was, the next one opened is cut); for a closed stdout, when capview
was still running at all (its last writes and its exit code must not change either).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from faultkit import cli_argv

from benchmarks.latency_proxy import LatencyProxy  # noqa: E402  (faultkit puts the repo on sys.path)

HEALTH_TIMEOUT = 4.0  # a broken release costs this much; a healthy one answers in ~0.3 s
OP_TIMEOUT = 120.0  # an operation still running after this is wedged: killed, a violation

# ---------------------------------------------------------------------- the plan

OPS = {  # kind -> weight
    "release-good": 30,
    "release-broken": 14,
    "release-exits": 10,
    "rollback": 14,
    "rollback-to": 18,
    "prune": 10,
}
STRIKES = {"none": 16, "kill": 21, "cut": 21, "hup": 21, "pipe": 21}
MODES = ("json", "plain", "plain-v")
PHASES = ("lock", "setup", "upload", "link", "build", "switch", "health", "cleanup")


@dataclass
class Plan:
    """One operation as drawn from the seed (target-dependent parts are filled in later)."""

    index: int
    op: str
    strike: str
    mode: str
    mark: str = ""  # when to strike (see marks_for)
    delay: float = 0.0
    lines: int = 0  # pipe: lines read before closing stdout
    version: str = ""  # release: the new version; rollback-to: the target
    force: bool = False
    keep: int | None = None  # prune --keep
    target: str | None = None  # plain rollback: the previous live release the host lists (None: none)

    def describe(self) -> str:
        what = self.op + (f" {self.version}" if self.version else "") + (" --force" if self.force else "") + (
            f" --keep {self.keep}" if self.keep is not None else "")
        if self.strike == "none":
            how = "no strike"
        elif self.strike == "pipe":
            how = f"stdout closed after {self.lines} lines"
        else:
            how = f"{self.strike} at {self.mark}+{self.delay:.2f}s"
        return f"{what} [{self.mode}] {how}"


def marks_for(op: str, kind: str | None, mode: str) -> list[str]:
    """The marks an unstruck run of ``op`` shows in ``mode`` (so a drawn strike can land).

    ``start:P`` = PhaseStarted(P) (``--json`` or ``-v``), ``end:P`` = PhaseFinished(P),
    ``health_failed`` = the failed health check, ``reverting`` = the revert's log line or
    warning; on the host (polling readlink): ``flip`` = ``current`` has just changed (the
    service is stopped or starting), ``flipback`` = it has changed back (the revert's switch)."""
    verbose = mode != "plain"
    if op.startswith("release"):
        bad = kind in ("broken", "exits")
        phases = [p for p in PHASES if not (bad and p == "cleanup")]
        marks = [f"start:{p}" for p in phases] if verbose else [f"end:{p}" for p in phases[:-1]]
        marks.append("flip")
        if bad:
            marks += ["health_failed", "reverting", "flipback"] if verbose else ["health_failed", "flipback"]
        return marks
    if op.startswith("rollback"):
        marks = ["start:lock", "start:switch", "start:health", "flip"] if verbose else ["end:lock", "end:switch", "flip"]
        if kind in ("broken", "exits"):
            marks += ["health_failed", "reverting", "flipback"]
        return marks
    return ["started", "start:cleanup"] if verbose else ["started"]


def delay_for(rng: random.Random, mark: str, kind: str | None) -> float:
    if mark == "start:health" and kind in ("broken", "exits"):
        return rng.uniform(0, HEALTH_TIMEOUT)  # anywhere in the failing poll
    if mark in ("flip", "flipback"):
        return rng.uniform(0, 0.05)  # the service is stopped or starting
    if mark == "health_failed" and rng.random() < 0.5:
        return rng.uniform(0, 0.02)  # between the failed check and the revert reaching the host
    if mark in ("reverting", "health_failed"):
        return rng.uniform(0, 0.6)  # inside the revert script
    if mark in ("started", "start:cleanup"):
        return rng.uniform(0, 0.1)  # a prune is over in a few tenths
    return rng.uniform(0, 0.3)


def weighted(rng: random.Random, table: dict[str, int]) -> str:
    names = list(table)
    return rng.choices(names, weights=[table[n] for n in names])[0]


# ---------------------------------------------------------------------- the proxy

class ProxyThread:
    """LatencyProxy (used as it is) on its own event loop in a thread, so the harness can
    drive subprocesses synchronously while the proxy forwards; ``sever()`` from any thread."""

    def __init__(self, target_port: int, one_way: float = 0.002) -> None:
        self.target_port, self.one_way = target_port, one_way
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="chaos-proxy")
        self.proxy: LatencyProxy | None = None

    def __enter__(self) -> "ProxyThread":
        self.thread.start()
        self.proxy = self._call(LatencyProxy(self.target_port, one_way=self.one_way).start())
        return self

    def _call(self, coro, timeout: float = 10):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    @property
    def port(self) -> int:
        assert self.proxy is not None
        return self.proxy.port

    def sever(self) -> int:
        async def cut() -> int:
            return self.proxy.sever()

        return self._call(cut(), 5)

    def __exit__(self, *exc) -> None:
        try:
            if self.proxy is not None:
                self._call(self.proxy.close(), 5)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            if not self.thread.is_alive():
                self.loop.close()


# ---------------------------------------------------------------------- one struck CLI run

PLAIN = re.compile(r"^\d\d:\d\d:\d\d (\S+)\s+(.*)$")
OUTCOMES = ("OK", "FAILED", "ROLLED_BACK", "CANCELLED", "SKIPPED")


def marks_of_line(line: str, json_mode: bool) -> tuple[list[str], str | None]:
    """(marks, HostFinished message or None) for one line of capview's stdout."""
    marks: list[str] = []
    if json_mode:
        try:
            e = json.loads(line)
        except ValueError:
            return marks, None
        kind = e.get("event")
        if kind == "OperationStarted":
            marks.append("started")
        elif kind == "PhaseStarted":
            marks.append(f"start:{e.get('phase')}")
        elif kind == "PhaseFinished":
            marks.append(f"end:{e.get('phase')}")
            if e.get("phase") == "health" and not e.get("ok"):
                marks.append("health_failed")
        elif kind == "LogLine" and "reverting" in str(e.get("line")):
            marks.append("reverting")
        elif kind in ("HostWarning", "Warning") and "switching back" in str(e.get("message")):
            marks.append("reverting")
        elif kind == "HostFinished":
            marks.append("finished")
            return marks, f"{str(e.get('outcome')).upper()}: {e.get('message')}"
        return marks, None
    m = PLAIN.match(line)
    if not m:
        return marks, None
    host, text = m.groups()
    if host == "-":
        marks.append("started")
    elif text.endswith(" ...") and text[:-4] in PHASES:
        marks.append(f"start:{text[:-4]}")
    elif text.split(" ", 1)[0] in PHASES and re.match(r"^\w+\s+(ok|FAILED)\s", text):
        phase, status = text.split()[:2]
        marks.append(f"end:{phase}")
        if phase == "health" and status == "FAILED":
            marks.append("health_failed")
    elif "capturing service logs and reverting" in text or "switching back" in text:
        marks.append("reverting")
    elif text.split(":", 1)[0] in OUTCOMES:
        marks.append("finished")
        return marks, text
    return marks, None


@dataclass
class RunOutcome:
    argv: list[str]
    rc: int | None
    stdout: list[str]
    stderr: str
    marks: dict[str, float]
    message: str | None  # the HostFinished line/message, if seen
    struck: bool = False  # the strike fired at all
    landed: bool = False  # ... while capview was running and had not reported the host finished
    struck_at: float | None = None
    wedged: bool = False
    seconds: float = 0.0

    def text(self) -> str:
        return "\n".join(self.stdout) + "\n" + self.stderr

    def tail(self, n: int = 6) -> str:
        """The last lines of stdout (JSON events shortened) and stderr, on one line."""
        lines = [short_event(l) for l in self.stdout if l.strip()][-n:]
        lines += [l for l in self.stderr.splitlines() if l.strip()][-n:]
        return " | ".join(l[:240] for l in lines)


def short_event(line: str) -> str:
    try:
        e = json.loads(line)
    except ValueError:
        return line
    if not isinstance(e, dict):
        return line
    what = e.get("message") or e.get("line") or e.get("detail") or e.get("outcome") or ""
    return f"{e.get('event')}{':' + e['phase'] if e.get('phase') else ''} {what}".strip()


class StruckRun:
    """``python -m capview ARGS`` in ``cwd``, with one strike delivered at the plan's mark."""

    def __init__(self, args: list[str], cwd: Path, plan: Plan, *, proxy: ProxyThread | None,
                 current_link: Path, timeout: float = OP_TIMEOUT) -> None:
        self.argv = cli_argv(*args)
        self.cwd, self.plan, self.proxy, self.current_link, self.timeout = cwd, plan, proxy, current_link, timeout
        self.json_mode = plan.mode == "json"
        self.cond = threading.Condition()
        self.marks: dict[str, float] = {}
        self.lines: list[str] = []
        self.message: str | None = None
        self.stderr_chunks: list[bytes] = []
        self.done = False
        self.struck = self.landed = False
        self.struck_at: float | None = None
        self.t0 = 0.0

    # the strike ------------------------------------------------------------
    def _alive_unfinished(self) -> bool:
        return self.proc.poll() is None and "finished" not in self.marks

    def _fire(self) -> None:
        kind = self.plan.strike
        with self.cond:
            if self.proc.poll() is not None or self.done:
                return
            self.struck, self.struck_at = True, time.monotonic() - self.t0
            unfinished = self._alive_unfinished()
            if kind in STRIKE_SIGNALS:
                self.proc.send_signal(STRIKE_SIGNALS[kind])
                self.landed = unfinished
            elif kind == "cut":
                assert self.proxy is not None
                self.landed = self.proxy.sever() > 0 and unfinished
        if kind == "cut" and not self.landed:
            # no link open at that instant (capview was connecting): cut the next one
            while not self.done and self._alive_unfinished() and not self.landed:
                time.sleep(0.005)
                self.landed = self.proxy.sever() > 0 and self._alive_unfinished()

    def _striker(self) -> None:
        p = self.plan
        flips = {"flip": 1, "flipback": 2}.get(p.mark, 0)
        if flips:
            self._wait_flips(flips)
        else:
            with self.cond:
                self.cond.wait_for(lambda: p.mark in self.marks or self.done, self.timeout)
                if p.mark not in self.marks:
                    return
        if self.done:
            return
        time.sleep(p.delay)
        self._fire()

    def _wait_flips(self, n: int) -> None:
        """Poll the host until ``current`` has changed ``n`` times since the run began."""
        seen = self.start_link
        deadline = time.monotonic() + self.timeout
        while n and not self.done and time.monotonic() < deadline:
            now = readlink(self.current_link)
            if now != seen:
                seen, n = now, n - 1
                continue
            time.sleep(0.001)

    # the output --------------------------------------------------------------
    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            marks, message = marks_of_line(line, self.json_mode)
            with self.cond:
                self.lines.append(line)
                now = time.monotonic() - self.t0
                for m in marks:
                    self.marks.setdefault(m, now)
                if message is not None:
                    self.message = message
                self.cond.notify_all()
                if self.plan.strike == "pipe" and len(self.lines) >= self.plan.lines:
                    # like `| head -n N`: the reader goes away, capview's next write fails --
                    # which matters up to its exit (the summary, the exit code), not only
                    # until the host is reported finished
                    self.struck, self.struck_at = True, now
                    self.landed = self.proc.poll() is None
                    break
        self.proc.stdout.close()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for chunk in iter(lambda: self.proc.stderr.read1(65536), b""):
            self.stderr_chunks.append(chunk)

    def run(self) -> RunOutcome:
        self.t0 = time.monotonic()
        self.start_link = readlink(self.current_link)
        self.proc = subprocess.Popen(self.argv, cwd=self.cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, start_new_session=True)
        threads = [threading.Thread(target=self._read_stdout, daemon=True),
                   threading.Thread(target=self._read_stderr, daemon=True)]
        if self.plan.strike in ("kill", "hup", "cut"):
            threads.append(threading.Thread(target=self._striker, daemon=True))
        for t in threads:
            t.start()
        wedged = False
        try:
            self.proc.wait(self.timeout)
        except subprocess.TimeoutExpired:
            wedged = True
            kill_group(self.proc)
        with self.cond:
            self.done = True
            self.cond.notify_all()
        for t in threads:
            t.join(10)
        return RunOutcome(self.argv, self.proc.returncode, self.lines, b"".join(self.stderr_chunks).decode(
            "utf-8", "replace"), dict(self.marks), self.message, self.struck, self.landed, self.struck_at, wedged,
            time.monotonic() - self.t0)


STRIKE_SIGNALS = {"kill": signal.SIGKILL, "hup": signal.SIGHUP}


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL a capview we started (it leads its own session) and everything it spawned."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        pass


def readlink(p: Path) -> str | None:
    try:
        return os.readlink(p)
    except OSError:
        return None


SUGGESTED = re.compile(r"capview (?:unlock|rollback|release|deploy|prune|init|pin|unpin)\b[^()\"\n;,]*")


def suggested_command(text: str) -> str | None:
    """The first ``capview ...`` command capview printed (in a message or a hint)."""
    m = SUGGESTED.search(text.replace('\\"', '"'))
    return m.group(0).strip().rstrip(".") if m else None
