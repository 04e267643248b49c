"""A long chaos run (issue 15): many seeded, struck capview operations on the real testbed.

    python -m benchmarks.chaos_run --ops 300 [--seed S] [--from N] [--json results.json] [--quiet]

The same harness as ``tests/test_chaos.py`` (``tests/chaoskit.py``), at any size: one
sshd host with a real ``systemd --user`` app, a TCP proxy in front of sshd, a background
SQLite writer; every operation is struck at a random moment (SIGKILL, a cut connection,
SIGHUP, a closed stdout, or nothing) and the invariants are checked after each one. Prints
one line per operation (``--quiet``: only violations), then the summary: operations,
strikes that landed, violations by kind with the strike that caused them. Exit 1 when
there was any violation. Needs root and ``bash scripts/testbed.sh up``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for p in (REPO / "tests", REPO):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import testbed as _tb  # noqa: E402  (tests/testbed.py)
from chaoskit import Chaos, seed_from_env  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.chaos_run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--ops", type=int, default=300, help="operations to run (default 300)")
    ap.add_argument("--seed", type=int, default=None,
                    help="seed (default: CAPVIEW_CHAOS_SEED, else a random one, printed)")
    ap.add_argument("--from", dest="start", type=int, default=1, metavar="N",
                    help="start at operation N (the earlier ones are drawn, not run): replays N alone")
    ap.add_argument("--json", metavar="FILE", help="also write the tally as JSON")
    ap.add_argument("--quiet", action="store_true", help="print only violations and the summary")
    args = ap.parse_args(argv)
    seed = args.seed if args.seed is not None else seed_from_env()

    def log(line: str) -> None:
        if not args.quiet or "VIOLATION" in line or line.startswith(("    ", "chaos seed")):
            print(line, flush=True)

    tb = _tb.Testbed(run_up=True)
    try:
        host = tb.start_host("chaos")
        with tempfile.TemporaryDirectory(prefix="capview-chaos-") as root:
            with Chaos(host, Path(root), seed, log=log) as chaos:
                tally = chaos.run(args.ops, args.start)
    finally:
        tb.close()
    print(tally.summary())
    for v in tally.violations:
        print(v.line(seed))
    if args.json:
        doc = {
            "seed": seed, "operations": tally.ops, "seconds": round(tally.seconds, 1),
            "operation_kinds": dict(tally.op_kinds), "strikes_fired": dict(tally.strikes),
            "strikes_landed": dict(tally.landed), "printed_commands_run": tally.commands,
            "repairs": tally.repairs, "rows_acknowledged": tally.rows_acked, "rows_lost": tally.rows_lost,
            "violations_by_kind": dict(tally.by_kind()),
            "violations": [dataclasses.asdict(v) for v in tally.violations],
        }
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    return 1 if tally.violations else 0


if __name__ == "__main__":
    sys.exit(main())
