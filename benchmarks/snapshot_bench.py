"""Issue 18: what a SQLite snapshot adds to the switch window (the app is stopped).

    .venv/bin/python -m benchmarks.snapshot_bench [--runs 5] [--sizes 10,100]

For each size, a WAL-mode database of that many MB (rows of 1 KB blobs) with ~4 MB of
recent writes still in its -wal (SQLite's default autocheckpoint leaves up to ~4 MB),
as an app leaves it when stopped. Timed, medians of ``--runs``, by the host script
capview runs (engine/snapshots.py, through ``sh`` as on a host):

* take: WAL checkpoint + ``cp --reflink=auto`` into shared/.snapshots/ - the added downtime;
* ``.backup``: SQLite's online backup, the fallback when the WAL does not empty;
* describe: user_version, schema hash, row counts, integrity_check (after the start,
  outside the window).

Writes benchmarks/results/snapshots.md.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from capview.engine.layout import HostPaths
from capview.engine.snapshots import describe_script, take_script

DB = "data/app.db"
OUT = Path(__file__).parent / "results" / "snapshots.md"


def make_db(dp: Path, mb: int) -> Path:
    db = dp / "shared" / DB
    db.parent.mkdir(parents=True, exist_ok=True)
    if db.exists():
        db.unlink()
    c = sqlite3.connect(db, isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("CREATE TABLE hits (id INTEGER PRIMARY KEY, at REAL, body BLOB)")
    c.execute("BEGIN")
    c.executemany("INSERT INTO hits (at, body) VALUES (?, randomblob(1000))", ((i,) for i in range(mb * 1000)))
    c.execute("COMMIT")
    c.close()
    # ~4 MB of recent writes left in the -wal by an app that did not close cleanly
    # (a clean close checkpoints it; this is the slower case for the take)
    subprocess.run(["python3", "-c", "import os, sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
                    "c.execute('PRAGMA wal_autocheckpoint=0'); c.execute('BEGIN'); "
                    "c.executemany('INSERT INTO hits (at, body) VALUES (?, randomblob(1000))', ((i,) for i in range(4000))); "
                    "c.execute('COMMIT'); os._exit(0)", str(db)], check=True)
    return db


def sh(script: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(["sh", "-euc", script], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def measure(mb: int, runs: int) -> dict:
    take, backup, describe, size = [], [], [], 0
    with tempfile.TemporaryDirectory(prefix="cv-snapbench-") as tmp:
        dp = Path(tmp)
        paths = HostPaths(str(dp))
        for i in range(runs):
            db = make_db(dp, mb)
            size = db.stat().st_size + (dp / "shared" / f"{DB}-wal").stat().st_size
            take.append(sh(take_script(paths, (DB,), "v1")))
            describe.append(sh(describe_script(paths, (DB,), "v1", taken_at=0.0, serving="v1", reason="bench")))
            make_db(dp, mb)
            t0 = time.perf_counter()
            subprocess.run(["sqlite3", str(db), f".backup '{dp}/backup.db'"], check=True)
            backup.append(time.perf_counter() - t0)
            os.unlink(dp / "backup.db")
    return {"mb": mb, "bytes": size, "take": statistics.median(take), "backup": statistics.median(backup),
            "describe": statistics.median(describe), "runs": runs}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--sizes", default="10,100")
    args = ap.parse_args()
    rows = [measure(int(s), args.runs) for s in args.sizes.split(",")]
    fs = subprocess.run(["stat", "-f", "-c", "%T", tempfile.gettempdir()], capture_output=True, text=True).stdout.strip()
    lines = ["# SQLite snapshot cost (issue 18)", "",
             f"`python -m benchmarks.snapshot_bench --runs {args.runs}`; {os.cpu_count()} cores, "
             f"{tempfile.gettempdir()} on {fs}, load {os.getloadavg()[0]:.2f}; medians.", "",
             "| database (+ ~4 MB in its -wal) | take: added downtime | target | `.backup` fallback | describe (after start) |",
             "|---|---:|---|---:|---:|"]
    for r in rows:
        ok = "✓" if r["take"] <= 0.5 else "✗"
        lines.append(f"| {r['mb']} MB ({r['bytes'] / 2**20:.1f} MiB on disk) | {r['take']:.3f} s | ≤ 0.5 s {ok} | "
                     f"{r['backup']:.3f} s | {r['describe']:.3f} s |")
    text = "\n".join(lines) + "\n"
    OUT.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
