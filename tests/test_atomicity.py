"""``current`` is only ever replaced by one rename(2): a reader never sees it missing, and
never a mix of two releases.

A separate reader process resolves ``current`` in a tight loop while the engine (in this
process, over real SSH) switches between two releases 500 times (``rollback --to`` v1,
v2, v1, ...). Each iteration the reader

* opens ``current`` as a directory (``os.open(O_DIRECTORY)``) and reads ``VERSION`` and
  ``stamp.txt`` through that one dir fd (``openat``): both must name the same release --
  a release's files are never modified in place, so one resolution sees one release;
* opens ``current/VERSION`` by path (a fresh resolution of the link): it must never fail.

The service manager is ``none`` and there is no health URL, so the run measures the
switch itself (3 round trips per rollback), not systemd.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from capview.config import ServiceConfig
from capview.engine.context import Context
from capview.engine.deploy import release
from capview.engine.rollback import rollback
from capview.remote.ssh import SshTransport
from faultkit import verify_release
from realhost import make_source, new_app

pytestmark = [pytest.mark.testbed, pytest.mark.slow]

SWITCHES = int(os.environ.get("CAPVIEW_ATOMICITY_SWITCHES", "500"))

READER = r"""
import json, os, sys, time
dp, stop = sys.argv[1], sys.argv[2]
cur = os.path.join(dp, "current")
reads = errors = mixed = 0
seen, samples = {}, []
def read_at(fd, name):
    f = os.open(name, os.O_RDONLY, dir_fd=fd)
    try:
        return os.read(f, 4096).decode().strip()
    finally:
        os.close(f)
while not os.path.exists(stop):
    for _ in range(50):
        try:
            d = os.open(cur, os.O_RDONLY | os.O_DIRECTORY)
            try:
                a, b = read_at(d, "VERSION"), read_at(d, "stamp.txt")
            finally:
                os.close(d)
            with open(cur + "/VERSION") as f:
                c = f.read().strip()
            reads += 1
            seen[a] = seen.get(a, 0) + 1
            if a != b:
                mixed += 1
                samples.append([a, b])
        except OSError as exc:
            errors += 1
            samples.append(repr(exc))
print(json.dumps({"reads": reads, "errors": errors, "mixed": mixed, "seen": seen, "samples": samples[:10]}))
"""


async def test_reader_never_sees_a_missing_or_mixed_current_during_500_switches(host, tmp_path):
    app = new_app(host, build=False)
    over = dict(service=ServiceConfig(manager="none"), health=None)
    sources = {}
    async with SshTransport() as t:
        ctx = Context(transport=t, operator="tester@ci")
        for v in ("v1", "v2"):
            sources[v] = make_source(tmp_path, v, extra={"stamp.txt": v + "\n"})
            assert (await release(ctx, app.env(sources[v], **over), v)).ok
        env = app.env(sources["v2"], **over)
        stop = tmp_path / "stop"
        reader = subprocess.Popen([sys.executable, "-c", READER, app.deploy_path, str(stop)],
                                  stdout=subprocess.PIPE, text=True)
        try:
            t0 = time.monotonic()
            for i in range(SWITCHES):
                target = "v1" if i % 2 == 0 else "v2"
                r = await rollback(ctx, env, to=target)
                assert r.ok, r
            took = time.monotonic() - t0
        finally:
            stop.touch()
            out, _ = reader.communicate(timeout=60)
    got = json.loads(out)
    print(f"{SWITCHES} switches in {took:.1f}s ({took / SWITCHES * 1000:.0f} ms each); reader: {got}")
    assert got["errors"] == 0, got["samples"]
    assert got["mixed"] == 0, got["samples"]
    # the reader really watched the switches happen
    assert got["reads"] > SWITCHES and min(got["seen"].get("v1", 0), got["seen"].get("v2", 0)) > SWITCHES // 10, got
    dp = Path(app.deploy_path)
    assert os.readlink(dp / "current") == ("releases/v2" if SWITCHES % 2 == 0 else "releases/v1")
    assert not list(dp.glob("current.tmp*"))
    for v, src in sources.items():  # 500 switches changed nothing inside the releases
        verify_release(dp / "releases" / v, src)
