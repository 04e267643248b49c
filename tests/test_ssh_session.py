"""The long-lived remote sh (capview/remote/ssh_session.py) against real OpenSSH: one
session channel runs many scripts, each as its own process, and nothing a script
prints or does can desynchronise the framing or outlive a cancel. No mocks."""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
from pathlib import Path

import pytest

from capview.remote import ssh_session
from capview.remote.ssh import SshTransport
from test_ssh_transport import _started, _user_procs, hostcfg
from testbed import TestHost

pytestmark = pytest.mark.testbed


@pytest.fixture(autouse=True)
def _no_agent(monkeypatch):
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)


def _sessions(h: TestHost) -> int:
    return h.sshd_log().count("Starting session:")


async def _settled_sessions(h: TestHost, before: int) -> int:
    await asyncio.sleep(0.3)  # sshd writes its log line from the connection's child
    return _sessions(h) - before


async def test_many_scripts_one_session_each_its_own_process(host: TestHost, tmp_path: Path):
    hc = hostcfg(host, tmp_path)
    before = _sessions(host)
    async with SshTransport() as t:
        pids = set()
        for i in range(8):
            r = await t.run(hc, f"echo $$; echo err{i} >&2; exit {i}")
            assert (r.exit_status, r.stderr) == (i, f"err{i}")
            pids.add(r.stdout)
        assert len(pids) == 8, "every script must be a process of its own ($$ differs)"
        # bytes on stdin, a last line without a newline, set -e, a trap and exit inside
        r = await t.run(hc, "wc -c; printf tail", stdin=b"x" * 1000)
        assert (r.exit_status, r.stdout) == (0, "1000\ntail")
        r = await t.run(hc, "trap 'echo bye' EXIT; false; echo not reached")
        assert (r.exit_status, r.stdout) == (1, "bye")
        r = await t.run(hc, "cat")  # no stdin: EOF at once, never the session's own stdin
        assert (r.exit_status, r.stdout) == (0, "")
        assert t.sessions_opened == 1 and t.connects == 1
    assert await _settled_sessions(host, before) == 1


async def test_hostile_output_cannot_forge_an_end(host: TestHost, tmp_path: Path):
    # lines that look like the loop's own (a tag-like hex word and a status, the ready
    # word, NULs, no trailing newline, a huge line): the next script still runs alone
    hc = hostcfg(host, tmp_path)
    fake = secrets.token_hex(12)
    async with SshTransport() as t:
        r = await t.run(hc, f"printf '{fake} 0\\n{fake} 0\\n' >&2; printf '{fake} 0\\n\\000\\033[2J'; "
                            "head -c 300000 /dev/zero | tr '\\0' a; exit 5")
        assert r.exit_status == 5
        assert r.stdout.startswith(f"{fake} 0\n\x00\x1b[2J") and len(r.stdout) == len(fake) + 8 + 300000
        assert r.stderr == f"{fake} 0\n{fake} 0"
        r = await t.run(hc, "echo next")
        assert (r.exit_status, r.stdout, r.stderr) == (0, "next", "")
        assert t.sessions_opened == 1


async def test_concurrent_runs_get_sessions_of_their_own(host: TestHost, tmp_path: Path):
    hc = hostcfg(host, tmp_path)
    async with SshTransport(max_channels_per_host=3) as t:
        rs = await asyncio.gather(*(t.run(hc, f"sleep 0.2; echo {i}") for i in range(9)))
        assert [r.stdout for r in rs] == [str(i) for i in range(9)]
        assert t.sessions_opened == 3  # reused by the later runs, never more than the cap
        async def stream():
            yield b"abc"
        r = await t.run(hc, "wc -c", stdin=stream())  # streams run in a session too
        assert r.stdout.strip() == "3" and t.sessions_opened == 3


async def test_stream_in_chunks_and_a_script_that_stops_reading(host: TestHost, tmp_path: Path):
    hc = hostcfg(host, tmp_path)
    sent = 0

    async def endless(total: int):
        nonlocal sent
        piece = os.urandom(256 * 1024)
        while sent < total:
            sent += len(piece)
            yield piece

    async with SshTransport() as t:
        data = os.urandom(3 * 1024 * 1024 + 17)  # not a multiple of any chunk

        async def src():
            for i in range(0, len(data), 100_000):
                yield data[i:i + 100_000]
        r = await t.run(hc, "sha256sum | cut -d' ' -f1", stdin=src())
        assert r.stdout == hashlib.sha256(data).hexdigest()
        # the script reads 10 bytes of an endless stream and exits: the rest is never sent,
        # and the session's framing is intact for the next script
        r = await asyncio.wait_for(t.run(hc, "head -c 10 | wc -c; exit 6", stdin=endless(1 << 40)), 60)
        assert (r.exit_status, r.stdout.strip()) == (6, "10")
        assert sent < 64 * 1024 * 1024
        r = await t.run(hc, "cat | wc -c", stdin=b"xyz")
        assert r.stdout.strip() == "3" and t.sessions_opened == 1


async def test_cancel_ends_the_session_and_its_script(host: TestHost, tmp_path: Path):
    token = f"41.{secrets.randbelow(10**6):06d}"
    marker = host.base / f"marker-{token}"
    hc = hostcfg(host, tmp_path)
    async with SshTransport() as t:
        assert (await t.run(hc, "echo warm")).ok  # the script below runs in that session
        task, _ = await _started(t, hc, f"sleep {token}; touch {marker}")
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(1.0)
        assert _user_procs(host, f"sleep {token}") == ""
        assert not marker.exists()
        assert (await t.run(hc, "echo after")).stdout == "after"
        assert t.sessions_opened == 2 and t.connects == 1


async def test_session_dir_is_private_and_removed(host: TestHost, tmp_path: Path):
    hc = hostcfg(host, tmp_path)
    async with SshTransport() as t:
        r = await t.run(hc, 'd=$(dirname "$0"); stat -c %a "$d"; echo "$d"')
        mode, d = r.stdout.splitlines()
        assert mode == "700" and "capview-sh." in d
    await asyncio.sleep(0.5)
    assert not os.path.exists(d), "the session's dir must go with the session"


async def test_a_host_that_refuses_the_loop_gets_a_channel_per_script(host: TestHost, tmp_path: Path,
                                                                       monkeypatch):
    # as on a host whose `head -c` reads past its count (BusyBox): the probe fails
    monkeypatch.setattr(ssh_session, "LOOP", ssh_session.LOOP.replace(
        '!= b ]', '!= never ]'))
    hc = hostcfg(host, tmp_path)
    before = _sessions(host)
    async def stream():
        yield b"first "
        yield b"stream"

    async with SshTransport() as t:
        # the refusal comes before any of the stream was taken: all of it reaches the channel
        r = await t.run(hc, "cat", stdin=stream())
        assert (r.exit_status, r.stdout) == (0, "first stream")
        for i in range(3):
            r = await t.run(hc, f"echo {i}; exit {i}")
            assert (r.exit_status, r.stdout) == (i, str(i))
        assert t.sessions_opened == 1  # tried once, then never again for this host
    assert await _settled_sessions(host, before) == 1 + 4


# ------------------------------------------- the first script rides on the exec (issue 21)

HOSTILE = "printf '%s|' \"it's\" '$HOME' '\\\\n' '`x`' 'é'; echo; cat; echo \"$0\"; exit 4\n\n"


async def test_the_first_script_rides_on_the_exec_and_reads_no_stdin(host: TestHost, tmp_path: Path):
    """A session's first script without stdin goes with the exec (no exchange sent on the
    channel): shown by closing the channel's stdin before asking for its answer."""
    hc = hostcfg(host, tmp_path)
    async with SshTransport() as t:
        conn = await t.connection(hc)
        sess = await ssh_session.Session.open(conn, "", first=HOSTILE)
        assert sess.running_first
        sess.proc.stdin.write_eof()  # nothing more can be sent: the answer must already be coming
        got: list[tuple[str, bytes]] = []
        status = await asyncio.wait_for(sess.exchange(HOSTILE, None, lambda n, raw: got.append((n, raw)),
                                                      lambda n: None), 20)
        out = [raw.decode() for n, raw in got if n == "stdout"]
        assert status == 4 and out[0] == "it's|$HOME|\\\\n|`x`|é|"
        assert out[1].endswith("/s") and "capview-sh." in out[1]  # run as a file of the session's dir
        assert not sess.running_first
        sess.close()


async def test_first_script_through_the_transport_then_the_session_goes_on(host: TestHost, tmp_path: Path):
    hc = hostcfg(host, tmp_path)
    before = _sessions(host)
    async with SshTransport() as t:
        r = await t.run(hc, HOSTILE)
        assert (r.exit_status, r.stdout.splitlines()[0]) == (4, "it's|$HOME|\\\\n|`x`|é|")
        r = await t.run(hc, "cat", stdin=b"then stdin")  # the same session, an ordinary exchange
        assert (r.exit_status, r.stdout) == (0, "then stdin")
        big = "echo " + "x" * (ssh_session.FIRST_MAX + 10) + " >/dev/null; echo big\n"
        async with SshTransport() as t2:  # too big to ride on the exec: an ordinary exchange
            assert (await t2.run(hc, big)).stdout == "big"
            assert t2.sessions_opened == 1
        assert t.sessions_opened == 1 and t.connects == 1
    assert await _settled_sessions(host, before) == 2


async def test_a_refusing_host_runs_the_first_script_once(host: TestHost, tmp_path: Path, monkeypatch):
    """The loop refuses before it runs the exec's script: the channel per script runs it, once."""
    monkeypatch.setattr(ssh_session, "LOOP", ssh_session.LOOP.replace('!= b ]', '!= never ]'))
    hc = hostcfg(host, tmp_path)
    log = host.base / f"once-{secrets.token_hex(4)}"
    async with SshTransport() as t:
        for n in (1, 2):
            r = await t.run(hc, f"echo x >> {log}; wc -l < {log}")
            assert (r.exit_status, r.stdout.strip()) == (0, str(n))
        assert t.sessions_opened == 1


async def test_cancel_ends_the_first_script_sent_with_the_exec(host: TestHost, tmp_path: Path):
    token = f"43.{secrets.randbelow(10**6):06d}"
    marker = host.base / f"marker-{token}"
    hc = hostcfg(host, tmp_path)
    async with SshTransport() as t:
        task, _ = await _started(t, hc, f"sleep {token}; touch {marker}")  # the session's first script
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(1.0)
        assert _user_procs(host, f"sleep {token}") == ""
        assert not marker.exists()
        assert (await t.run(hc, "echo after")).stdout == "after"
