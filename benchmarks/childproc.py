"""Run a child process and measure its peak memory (the client-RSS scenarios)."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

from benchmarks.hosts import REPO


def _vm_hwm_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                kids = Path(f"/proc/{p}/task/{tid}/children").read_text().split()
                todo.extend(int(k) for k in kids)
        except OSError:
            pass
    return out


def child_rss(argv: list[str]) -> tuple[float, float, str]:
    """Run argv; return (seconds, peak RSS in MB, stdout).

    Peak RSS = the sum over the process tree (e.g. rsync + its ssh) of each process's
    VmHWM, sampled every 20 ms until it exits. Not ``wait4``'s ru_maxrss: for a child
    started by fork/vfork+exec, Linux folds the *parent's* RSS at exec time into the
    child's maxrss, so a child of a 130 MB Python reports >= 130 MB whatever it does.
    VmHWM belongs to the exec'd process's own address space. A child that prints a JSON
    line with ``vm_hwm_kb`` (capview_side does, just before exiting) overrides the sample.
    """
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert p.stdout is not None
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.append(p.stdout.read()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    peak: dict[int, int] = {}
    try:
        while p.poll() is None:
            for pid in _descendants(p.pid):
                peak[pid] = max(peak.get(pid, 0), _vm_hwm_kb(pid))
            time.sleep(0.02)
    except BaseException:  # Ctrl-C / SIGTERM of the harness: the child goes too
        p.terminate()
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        raise
    reader.join(10)
    dt = time.perf_counter() - t0
    out = b"".join(chunks).decode(errors="replace")
    if p.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {p.returncode}: {out[-500:]}")
    kb = sum(peak.values())
    for line in reversed(out.strip().splitlines()):
        try:
            kb = max(kb, int(json.loads(line).get("vm_hwm_kb") or 0))
            break
        except (ValueError, AttributeError):
            continue
    return dt, kb / 1024.0, out

