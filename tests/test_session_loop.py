"""The session loop's framing (capview/remote/ssh_session.py LOOP) run by the real
/bin/sh the hosts have, fed by hand: a link that ends inside a script, its input or a
stream must never run the cut script or hand the script an end of input it did not get,
and a signal that kills the stream's feeder must not look like the stream's end."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import zlib
from pathlib import Path

import pytest

from capview.remote.ssh_session import LOOP


def _loop(tmp_path: Path, path: str | None = None, ready: bytes = b"ready ok gzip\n") -> subprocess.Popen:
    env = dict(os.environ, TMPDIR=str(tmp_path), **({"PATH": path} if path else {}))
    p = subprocess.Popen(["sh", "-c", LOOP, "capview-session", "ready"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True)
    assert p.stdout.readline() == ready
    return p


def _member(data: bytes) -> bytes:
    z = zlib.compressobj(1, zlib.DEFLATED, 31)
    return z.compress(data) + z.flush()


def _script(marker: Path, *, reads: str = "") -> bytes:
    # the first line does the harm: a cut after it would run only that line
    return f"{reads}touch {marker}\n# {'x' * 200}\necho whole\n".encode()


def _children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry))
    return kids


def _wait_for(pred, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


def test_a_script_cut_by_the_link_never_runs(tmp_path: Path):
    marker = tmp_path / "ran"
    body = _script(marker)
    p = _loop(tmp_path)
    p.stdin.write(b"t1 %d 0\n" % len(body) + body[: len(body) // 2])
    p.stdin.close()
    assert p.wait(10) == 98
    assert not marker.exists()


def test_input_cut_by_the_link_never_reaches_the_script(tmp_path: Path):
    marker = tmp_path / "ran"
    body = _script(marker, reads="wc -c > /dev/null; ")
    p = _loop(tmp_path)
    p.stdin.write(b"t1 %d 100\n" % len(body) + body + b"y" * 40)
    p.stdin.close()
    assert p.wait(10) == 98
    assert not marker.exists()


def test_whole_script_and_input_still_run(tmp_path: Path):
    marker = tmp_path / "ran"
    body = _script(marker, reads="wc -c; ")
    p = _loop(tmp_path)
    p.stdin.write(b"t1 %d 7\n" % len(body) + body + b"abcdefg")
    p.stdin.close()
    out = p.stdout.read()
    assert out == b"7\nwhole\nt1 0\n"
    assert p.wait(10) == 0 and marker.exists()


def test_a_stream_cut_inside_a_chunk_or_after_one_ends_the_script_unfinished(tmp_path: Path):
    for n, tail in enumerate((b"5\nhel", b"5\nhello", b"5\nhello\n7x\n")):
        marker = tmp_path / f"ran-{n}"
        body = _script(marker, reads="cat > /dev/null; ")
        p = _loop(tmp_path)
        p.stdin.write(b"t1 %d s\n" % len(body) + body + tail)
        p.stdin.close()
        p.wait(10)
        assert not marker.exists(), tail


def test_a_signal_that_kills_the_feeder_does_not_end_the_scripts_input(tmp_path: Path):
    """What a TERM racing the pipeline's forks did: it spared the script (its subshell
    caught it before resetting its traps) and killed the feeder, whose exit looked to
    the script like the stream's end. The feeder now ignores TERM and HUP."""
    marker = tmp_path / "ran"
    body = _script(marker, reads="cat > /dev/null; ")
    p = _loop(tmp_path)
    p.stdin.write(b"t1 %d s\n" % len(body) + body + b"5\nhello")
    p.stdin.flush()
    kids: list[int] = []

    def feeder_waiting_and_script_reading() -> bool:
        kids[:] = sorted(_children(p.pid), key=lambda k: bool(_children(k)))
        return len(kids) == 2 and not _children(kids[0]) and bool(_children(kids[1]))

    _wait_for(feeder_waiting_and_script_reading)
    feeder = kids[0]  # blocked in the read builtin; the other side runs the script
    for sig in (signal.SIGTERM, signal.SIGHUP):
        os.kill(feeder, sig)
    time.sleep(0.5)
    assert not marker.exists()
    p.stdin.write(b"0\n")
    p.stdin.close()
    assert p.stdout.read().endswith(b"whole\nt1 0\n")
    p.wait(10)
    assert marker.exists()


def test_packed_and_plain_chunks_reach_the_script_as_one_plain_stream(tmp_path: Path):
    """issue 21: a ``<n>z`` chunk is a gzip member the loop inflates on its way; plain and
    packed chunks mix in any order and the script reads exactly the bytes sent."""
    pieces = [os.urandom(3000), b"text " * 4000, os.urandom(10), b"", b"more text " * 999]  # odd: packed
    stream = b"".join(b"%dz\n%s" % (len(_member(x)), _member(x)) if i % 2 else b"%d\n%s" % (len(x), x)
                      for i, x in enumerate(pieces))
    out = tmp_path / "got"
    body = f"cat > {out}\necho whole\n".encode()
    p = _loop(tmp_path)
    p.stdin.write(b"t1 %d s\n" % len(body) + body + stream + b"0\n")
    p.stdin.close()
    assert p.stdout.read().endswith(b"whole\nt1 0\n")
    p.wait(10)
    assert out.read_bytes() == b"".join(pieces)


def test_a_packed_chunk_that_does_not_inflate_ends_the_script_unfinished(tmp_path: Path):
    member = _member(b"hello " * 1000)
    for n, bad in enumerate((member[:-9] + b"\0" * 9, b"not gzip at all")):
        marker = tmp_path / f"ran-{n}"
        body = _script(marker, reads="cat > /dev/null; ")
        p = _loop(tmp_path)
        p.stdin.write(b"t1 %d s\n" % len(body) + body + b"%dz\n" % len(bad) + bad + b"0\n")
        p.stdin.close()
        p.wait(10)
        assert not marker.exists(), bad[:20]


def test_a_host_without_gzip_is_not_offered_packed_chunks(tmp_path: Path):
    """The ready line is what makes the client send packed chunks: without gzip on the
    PATH it says only ``ok`` (the client then inflates pieces itself)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "mktemp", "rm", "head", "wc", "cat", "sleep"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    p = _loop(tmp_path, path=str(bin_dir), ready=b"ready ok\n")
    body = b"cat\n"
    p.stdin.write(b"t1 %d s\n" % len(body) + body + b"5\nhello0\n")
    p.stdin.close()
    assert p.stdout.read() == b"hellot1 0\n"
    p.wait(10)
