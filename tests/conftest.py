"""Shared pytest setup: the real-host testbed fixtures (see tests/testbed.py).

Fixtures (all need root; see scripts/testbed.sh):

* ``testbed``        session  -- a :class:`testbed.Testbed` (runs ``scripts/testbed.sh up`` once)
* ``host``           function -- one :class:`testbed.TestHost` (user cvdeploy, fresh base dir)
* ``module_host``    module   -- same, shared by the tests of one module
* ``hosts3``         function -- three hosts: three sshd on distinct ports/host keys, same
                                 user, distinct base dirs
* ``nosd_host``      function -- user cvnosd, which has NO systemd --user manager
* ``nopodman_host``  function -- user cvdeploy, but podman does not exist in its sessions

When the testbed is unavailable (not root, packages missing, CAPVIEW_TESTBED_DISABLE=1)
these fixtures skip -- unless ``CAPVIEW_REQUIRE_TESTBED=1``, which turns that into a
failure, and also turns ANY skip of a test marked ``testbed`` into a failure. Tests that
use one of the fixtures above are marked ``testbed`` automatically.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

import testbed as _tb  # noqa: E402  (tests/testbed.py)

# Fixtures whose users are automatically marked ``testbed``. Other conftests may extend
# this set (e.g. ``conftest.TESTBED_FIXTURES.add("deployed_app")``), though fixtures that
# depend on ``testbed``/``host`` are detected anyway (fixturenames is the closure).
TESTBED_FIXTURES = {"testbed", "host", "module_host", "hosts3", "nosd_host", "nopodman_host"}


def require_testbed() -> bool:
    return os.environ.get("CAPVIEW_REQUIRE_TESTBED", "") not in ("", "0")


def skip_or_fail(reason: str) -> None:
    """Skip, or fail when CAPVIEW_REQUIRE_TESTBED=1 (for fixtures in other files too)."""
    if require_testbed():
        pytest.fail(f"testbed required (CAPVIEW_REQUIRE_TESTBED=1) but unavailable: {reason}",
                    pytrace=False)
    pytest.skip(f"testbed unavailable: {reason}")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "testbed: needs the real-host testbed (root, sshd, systemd --user, podman)")
    config.addinivalue_line("markers", "slow: slow test")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & TESTBED_FIXTURES and item.get_closest_marker("testbed") is None:
            item.add_marker(pytest.mark.testbed)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    outcome = yield
    rep = outcome.get_result()
    if (
        rep.skipped
        and require_testbed()
        and item.get_closest_marker("testbed") is not None
        and not hasattr(rep, "wasxfail")
    ):
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        rep.outcome = "failed"
        rep.longrepr = f"skipped test marked 'testbed' under CAPVIEW_REQUIRE_TESTBED=1: {reason}"


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def testbed():
    reason = _tb.testbed_unavailable_reason()
    if reason:
        skip_or_fail(reason)
    tb = _tb.Testbed(run_up=True)
    try:
        yield tb
    finally:
        tb.close()


def _host_fixture(tb: "_tb.Testbed", name: str, **kw):
    h = tb.start_host(name, **kw)
    try:
        yield h
    finally:
        tb.stop_host(h)


@pytest.fixture
def host(testbed):
    yield from _host_fixture(testbed, "tb-1")


@pytest.fixture(scope="module")
def module_host(testbed):
    yield from _host_fixture(testbed, "tb-m")


@pytest.fixture
def hosts3(testbed):
    hs = []
    try:
        for i in range(1, 4):
            hs.append(testbed.start_host(f"tb-{i}"))
        yield hs
    finally:
        for h in hs:
            testbed.stop_host(h)


@pytest.fixture
def nosd_host(testbed):
    yield from _host_fixture(testbed, "tb-nosd", user=_tb.NOSD_USER)


@pytest.fixture
def nopodman_host(testbed):
    yield from _host_fixture(testbed, "tb-nopodman", hide_podman=True)
