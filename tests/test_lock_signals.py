"""The lock is never left without its owner.json when the script taking it is signalled
(found by the chaos test: a prune struck by SIGHUP at its start left ``.capview/lock``
with no owner.json, which nobody could name or release without --force).

The host's ``mv`` is slowed (a shim on PATH) so the TERM lands between the lock's mkdir
and owner.json's rename, every run: without the shield in scripts/lock.take the lock
stays empty.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from capview.engine.layout import HostPaths
from capview.engine.scripts import cleanup, lock
from capview.engine.scripts.shell import Frames

TOKEN = "0123456789abcdef"
OWNER = {"operation": "prune", "operator": "t@ci", "pid": 1, "started": 1.0, "heartbeat": 1.0,
         "machine": "ci", "token": TOKEN, "version": None}


def slow_mv(tmp_path: Path) -> dict[str, str]:
    """PATH with an ``mv`` that waits 1 s first (the owner.json write ends with an mv)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    real = subprocess.run(["sh", "-c", "command -v mv"], capture_output=True, text=True).stdout.strip()
    (bin_dir / "mv").write_text(f"#!/bin/sh\nsleep 1\nexec {real} \"$@\"\n")
    (bin_dir / "mv").chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def struck(script: str, paths: HostPaths, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run ``script``; SIGTERM its whole process group (as a session ending kills what it
    ran) the moment the lock directory appears."""
    p = subprocess.Popen(["sh", "-c", script], cwd=paths.root, env=env, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 10
    while not os.path.isdir(paths.lock):
        assert time.monotonic() < deadline and p.poll() is None, "the lock was never taken"
        time.sleep(0.005)
    os.killpg(p.pid, signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


@pytest.fixture
def paths(tmp_path) -> HostPaths:
    dp = tmp_path / "app"
    (dp / "releases").mkdir(parents=True)
    return HostPaths(str(dp))


def test_a_lock_taken_while_signalled_always_names_its_owner(paths, tmp_path):
    frames = Frames.new()
    res = struck(frames.prelude() + lock.acquire(paths, OWNER, frames) + "sleep 5\n", paths, slow_mv(tmp_path))
    assert res.returncode != 0  # the TERM ended the script (after the take)
    owner = json.loads(Path(paths.owner_json).read_text())
    assert owner["token"] == TOKEN and owner["host_heartbeat"] > 0


def test_a_prune_signalled_while_taking_the_lock_releases_it(paths, tmp_path):
    frames = Frames.new()
    script = cleanup.prune_script(paths, frames, lock=lock.acquire(paths, OWNER, frames),
                                  unlock=lock.release(paths, TOKEN))
    res = struck(frames.prelude() + script, paths, slow_mv(tmp_path))
    assert res.returncode == 130, res.stderr  # its INT/TERM/HUP trap, then the EXIT trap's unlock
    assert not os.path.exists(paths.lock), os.listdir(paths.lock)


def test_a_prune_whose_output_is_gone_releases_the_lock(paths, tmp_path):
    """A cut connection closes the script's stdout: its next write raises SIGPIPE, which
    must end it through the EXIT trap (the unlock), not silently with the lock held."""
    frames = Frames.new()
    script = cleanup.prune_script(paths, frames, lock=lock.acquire(paths, OWNER, frames),
                                  unlock=lock.release(paths, TOKEN))
    r, w = os.pipe()
    p = subprocess.Popen(["sh", "-c", frames.prelude() + script], cwd=paths.root, env=slow_mv(tmp_path),
                         stdin=subprocess.DEVNULL, stdout=w, stderr=subprocess.DEVNULL)
    os.close(w)
    os.close(r)  # nobody reads: the first frame after the take (mark locked) gets SIGPIPE
    assert p.wait(timeout=30) == 141
    assert not os.path.exists(paths.lock), os.listdir(paths.lock)
