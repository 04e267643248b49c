"""issue 21's 200,000-file redeploy: what the deploy decides from the tree's size (units;
the speed itself is measured in benchmarks/, never timed here)."""

from __future__ import annotations

from capview.engine.deploy import BIG_LISTING, usage_wait


def test_the_usage_refresh_is_waited_on_only_while_it_can_end():
    assert usage_wait(0) is None and usage_wait(BIG_LISTING) is None  # small: to its end
    assert usage_wait(BIG_LISTING + 1) == usage_wait(2 * BIG_LISTING) == 1.0
    assert usage_wait(200_000 * 5) == 0.0  # it takes seconds: left to finish on the host
