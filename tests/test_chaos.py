"""The chaos test of issue 15: seeded random deploy / rollback / prune operations on the
real testbed, each struck at a random moment (SIGKILL, a cut connection, SIGHUP, a closed
stdout, or nothing), with every invariant checked after every operation.

The harness is ``tests/chaoskit.py`` (what is struck when, and what is checked). CI runs
60 operations; ``CAPVIEW_CHAOS_OPS=N`` and ``CAPVIEW_CHAOS_SEED=S`` change the size and
replay a run: the seed is printed first and in every failure message.
``CAPVIEW_CHAOS_FROM=N CAPVIEW_CHAOS_OPS=N`` replays operation N alone (the same op,
strike, moment and delay, on a fresh host). A long run: ``python -m benchmarks.chaos_run --ops 300``.
"""

from __future__ import annotations

import pytest

from chaoskit import Chaos, ops_from_env, seed_from_env, start_from_env

pytestmark = [pytest.mark.testbed, pytest.mark.slow]


@pytest.mark.timeout(900)
def test_chaos(host, tmp_path):
    seed, ops, start = seed_from_env(), ops_from_env(60), start_from_env()
    print(f"\nchaos seed {seed} (replay with CAPVIEW_CHAOS_SEED={seed} CAPVIEW_CHAOS_OPS={ops})")
    with Chaos(host, tmp_path, seed) as chaos:
        tally = chaos.run(ops, start)
    print(tally.summary())
    assert tally.ops == ops - start + 1
    if tally.ops >= 20:  # a replay of one operation may be its unstruck control
        assert sum(tally.landed.values()) > 0, f"[seed {seed}] no strike landed: the harness is not striking"
    assert not tally.violations, tally.failure_message()
