"""SshTransport against real OpenSSH servers (tests/testbed.py): no mocks."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
import subprocess
import time
from pathlib import Path

import pytest

from capview.config import HostConfig, Settings, SshOptions
from capview.errors import HostUnreachable
from capview.remote.ssh import MAX_SCRIPT_BYTES, SshTransport
from testbed import TestHost, Testbed, rotate_host_key

pytestmark = pytest.mark.testbed


@pytest.fixture(autouse=True)
def _no_agent(monkeypatch):
    # the developer's ssh-agent must not decide whether a test can log in
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)


def _empty_config(tmp_path: Path) -> Path:
    p = tmp_path / "ssh_config_empty"
    p.touch()
    return p


def hostcfg(h: TestHost, tmp_path: Path, *, host: str | None = None, port: int | None | str = "h",
            user: str | None | str = "h", **ssh_kw) -> HostConfig:
    ssh_kw.setdefault("known_hosts", str(h.known_hosts))
    ssh_kw.setdefault("identity_file", str(h.identity_file))
    ssh_kw.setdefault("config_file", str(_empty_config(tmp_path)))
    ssh_kw.setdefault("connect_timeout", 10.0)
    return HostConfig(
        name=h.name,
        host=host or h.host,
        port=h.port if port == "h" else port,  # type: ignore[arg-type]
        user=h.user if user == "h" else user,  # type: ignore[arg-type]
        settings=Settings(app="t", deploy_path=str(h.base), source=tmp_path, ssh=SshOptions(**ssh_kw)),
    )


def _fingerprint(pub: Path) -> str:
    out = subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True, check=True).stdout
    return out.split()[1]  # "256 SHA256:... comment (ED25519)"


def _accepted_logins(h: TestHost) -> int:
    return h.sshd_log().count("Accepted publickey for")


def _user_procs(h: TestHost, needle: str) -> str:
    cp = subprocess.run(["pgrep", "-a", "-u", h.user, "-f", needle], capture_output=True, text=True)
    return cp.stdout.strip()


# --------------------------------------------------------------------------- basics

async def test_run_returns_stdout_stderr_and_status(host: TestHost, tmp_path: Path):
    async with SshTransport() as t:
        r = await t.run(hostcfg(host, tmp_path), "echo one; echo two; echo oops >&2; id -un; exit 3")
        assert (r.exit_status, r.stdout, r.stderr) == (3, f"one\ntwo\n{host.user}", "oops")
        assert not r.ok
        ok = await t.run(hostcfg(host, tmp_path), "printf 'no newline'")
        assert (ok.exit_status, ok.stdout, ok.stderr) == (0, "no newline", "")
        # set -eu is in force (preamble): a failing command stops the script
        r2 = await t.run(hostcfg(host, tmp_path), "false; echo not reached")
        assert (r2.exit_status, r2.stdout) == (1, "")
        # non-UTF-8 output is replaced, not fatal
        r3 = await t.run(hostcfg(host, tmp_path), r"printf 'caf\351\n'")
        assert r3.stdout == "caf\ufffd"
        assert t.round_trips == 4


async def test_xdg_runtime_dir_set_when_unset(host: TestHost, tmp_path: Path):
    async with SshTransport() as t:
        r = await t.run(hostcfg(host, tmp_path), 'echo "$XDG_RUNTIME_DIR"')
        assert r.stdout == f"/run/user/{host.uid}"
        # and systemctl --user reaches the user manager through it
        r = await t.run(hostcfg(host, tmp_path), "systemctl --user is-system-running || true")
        assert r.stdout.strip() in ("running", "degraded")


async def test_lines_stream_while_script_runs(host: TestHost, tmp_path: Path):
    seen: list[tuple[float, str, str]] = []
    async with SshTransport() as t:
        t0 = time.monotonic()
        r = await t.run(
            hostcfg(host, tmp_path),
            "echo first; echo e1 >&2; sleep 1; echo second; echo e2 >&2",
            on_line=lambda stream, line: seen.append((time.monotonic() - t0, stream, line)),
        )
        end = time.monotonic() - t0
    assert r.ok
    assert [(s, l) for _, s, l in seen if s == "stdout"] == [("stdout", "first"), ("stdout", "second")]
    assert [(s, l) for _, s, l in seen if s == "stderr"] == [("stderr", "e1"), ("stderr", "e2")]
    first_at = seen[0][0]
    assert first_at < end - 0.7, f"first line arrived at {first_at:.2f}s, script ended at {end:.2f}s"
    assert r.stdout == "first\nsecond" and r.stderr == "e1\ne2"  # the pid marker never shows


async def test_script_size_limit():
    with pytest.raises(ValueError, match="stdin"):
        SshTransport.build_command("x" * (MAX_SCRIPT_BYTES + 1))
    SshTransport.build_command("echo " + "x" * (MAX_SCRIPT_BYTES - 1000))


async def test_oversized_script_is_refused_before_connecting(host: TestHost, tmp_path: Path):
    async with SshTransport() as t:
        with pytest.raises(ValueError):
            await t.run(hostcfg(host, tmp_path), "echo " + "x" * 200_000)
        assert t.connects == 0 and t.round_trips == 0


# --------------------------------------------------------------------------- stdin

async def test_20mb_binary_stdin_arrives_byte_identical(host: TestHost, tmp_path: Path):
    data = os.urandom(20 * 1024 * 1024)
    dest = host.base / "blob.bin"
    async with SshTransport() as t:
        t0 = time.monotonic()
        r = await t.run(hostcfg(host, tmp_path), f"cat > {dest}; sha256sum < {dest}", stdin=data)
        elapsed = time.monotonic() - t0
        assert r.ok, r.stderr
        assert r.stdout.split()[0] == hashlib.sha256(data).hexdigest()
        assert t.bytes_sent == len(data)
        print(f"20 MB over stdin: {elapsed:.2f}s")

        # an async iterable of chunks (what a tar stream looks like), with odd sizes
        async def chunks():
            for i in range(0, 3_000_001, 99_991):
                yield data[i:i + 99_991]
        expected = b"".join([data[i:i + 99_991] for i in range(0, 3_000_001, 99_991)])
        r = await t.run(hostcfg(host, tmp_path), f"cat > {dest}; sha256sum < {dest}; wc -c < {dest}",
                        stdin=chunks())
        assert r.stdout.split("\n")[0].split()[0] == hashlib.sha256(expected).hexdigest()
        assert int(r.stdout.split("\n")[1]) == len(expected)
        assert t.bytes_sent == len(data) + len(expected)


async def test_script_that_stops_reading_stdin_does_not_hang(host: TestHost, tmp_path: Path):
    async with SshTransport() as t:
        r = await asyncio.wait_for(
            t.run(hostcfg(host, tmp_path), "head -c 10 >/dev/null; echo done; exit 4", stdin=os.urandom(20 << 20)),
            60,
        )
        assert (r.exit_status, r.stdout) == (4, "done")
        # no stdin: the script sees EOF, not a hang
        r = await asyncio.wait_for(t.run(hostcfg(host, tmp_path), "wc -c"), 30)
        assert r.stdout.strip() == "0"


async def test_failing_stdin_source_kills_remote_and_raises(host: TestHost, tmp_path: Path):
    token = secrets.token_hex(4)
    marker = host.base / f"after-{token}"

    async def broken():
        yield b"some bytes\n"
        raise RuntimeError("local tar failed")

    async with SshTransport() as t:
        with pytest.raises(RuntimeError, match="local tar failed"):
            await t.run(hostcfg(host, tmp_path), f"cat >/dev/null; touch {marker}", stdin=broken())
        await asyncio.sleep(0.5)
        assert not marker.exists()
        assert (await t.run(hostcfg(host, tmp_path), "echo still-usable")).stdout == "still-usable"


# --------------------------------------------------------------------------- pooling

async def test_one_connection_reused_across_calls(host: TestHost, tmp_path: Path):
    before = _accepted_logins(host)
    hc = hostcfg(host, tmp_path)
    async with SshTransport() as t:
        conns = set()
        t0 = time.monotonic()
        for _ in range(10):
            r = await t.run(hc, "true")
            assert r.ok
            conns.add(id(await t.connection(hc)))
        elapsed = time.monotonic() - t0
        assert t.connects == 1 and len(conns) == 1 and t.round_trips == 10
        print(f"10 sequential `true` runs (incl. the one connect): {elapsed * 1000:.0f} ms")
        t1 = time.monotonic()
        for _ in range(10):
            await t.run(hc, "true")
        print(f"10 sequential `true` runs on the reused connection: {(time.monotonic() - t1) * 1000:.0f} ms")
    await asyncio.sleep(0.2)
    assert _accepted_logins(host) - before == 1, "sshd saw more than one login"


async def test_concurrent_first_calls_share_one_connect(host: TestHost, tmp_path: Path):
    before = _accepted_logins(host)
    hc = hostcfg(host, tmp_path)
    async with SshTransport() as t:
        rs = await asyncio.gather(*(t.run(hc, f"echo {i}") for i in range(10)))
        assert [r.stdout for r in rs] == [str(i) for i in range(10)]
        assert t.connects == 1
    await asyncio.sleep(0.2)
    assert _accepted_logins(host) - before == 1


async def test_30_concurrent_runs_on_one_host(host: TestHost, tmp_path: Path):
    hc = hostcfg(host, tmp_path)
    active = 0
    peak = 0

    def on_line(stream: str, line: str) -> None:
        nonlocal active, peak
        if line == "start":
            active += 1
            peak = max(peak, active)
        elif line.startswith("end"):
            active -= 1

    async with SshTransport(max_channels_per_host=8) as t:
        t0 = time.monotonic()
        rs = await asyncio.gather(*(t.run(hc, f"echo start; sleep 0.3; echo end {i}", on_line=on_line)
                                    for i in range(30)))
        elapsed = time.monotonic() - t0
        assert all(r.ok for r in rs), [r.stderr for r in rs if not r.ok]
        assert sorted(r.stdout for r in rs) == sorted(f"start\nend {i}" for i in range(30))
        assert t.connects == 1
        assert 1 < peak <= 8, peak
        print(f"30 concurrent runs of sleep 0.3 with 8 channels: {elapsed:.2f}s (peak {peak})")


async def test_channel_cap_respects_a_strict_server(testbed: Testbed, tmp_path: Path):
    # An sshd with MaxSessions 3 refuses a 4th channel: the cap keeps us under it.
    h = testbed.start_host("tb-maxsess", extra_sshd_config="MaxSessions 3")
    try:
        hc = hostcfg(h, tmp_path)
        async with SshTransport(max_channels_per_host=3) as t:
            rs = await asyncio.gather(*(t.run(hc, "sleep 0.2; echo ok") for i in range(12)))
            assert [r.stdout for r in rs] == ["ok"] * 12
    finally:
        testbed.stop_host(h)


async def test_dropped_connection_is_replaced(host: TestHost, tmp_path: Path):
    hc = hostcfg(host, tmp_path)
    async with SshTransport() as t:
        assert (await t.run(hc, "echo hi")).stdout == "hi"
        # kill this connection's sshd process (the nearest sshd above the script: its
        # parent with a channel per script, the session loop's parent otherwise): it dies
        kill_sshd = ('p=$PPID; while [ "$(cat /proc/$p/comm)" != sshd ]; do '
                     "p=$(awk '{print $4}' /proc/$p/stat); done; kill -9 $p; sleep 5")
        with pytest.raises(HostUnreachable, match="connection lost"):
            await asyncio.wait_for(t.run(hc, "echo before; " + kill_sshd), 30)
        r = await t.run(hc, "echo again")
        assert r.stdout == "again" and t.connects == 2


# --------------------------------------------------------------------------- host keys / errors

async def test_unknown_host_key_names_fingerprint_and_fix(host: TestHost, tmp_path: Path):
    kh = tmp_path / "known_hosts_empty"
    kh.write_text("")
    async with SshTransport() as t:
        with pytest.raises(HostUnreachable) as ei:
            await t.run(hostcfg(host, tmp_path, known_hosts=str(kh)), "true")
    msg = str(ei.value)
    assert "\n" not in msg
    assert f"127.0.0.1:{host.port}" in msg
    assert _fingerprint(host.dir / "host_ed25519.pub") in msg
    assert f"ssh-keyscan -p {host.port} 127.0.0.1 >> {kh}" in msg
    assert kh.read_text() == "", "the key must not be learned"
    # the hint works: run it, and the connection goes through
    subprocess.run(f"ssh-keyscan -p {host.port} 127.0.0.1 >> {kh}", shell=True, check=True, capture_output=True)
    async with SshTransport() as t:
        assert (await t.run(hostcfg(host, tmp_path, known_hosts=str(kh)), "echo ok")).stdout == "ok"


async def test_missing_known_hosts_file_is_an_unknown_key(host: TestHost, tmp_path: Path):
    async with SshTransport() as t:
        with pytest.raises(HostUnreachable, match="unknown host key .*SHA256:"):
            await t.run(hostcfg(host, tmp_path, known_hosts=str(tmp_path / "nope")), "true")


async def test_changed_host_key_is_refused(host: TestHost, tmp_path: Path):
    hc = hostcfg(host, tmp_path)
    async with SshTransport() as t:
        assert (await t.run(hc, "echo ok")).stdout == "ok"
    rotate_host_key(host)
    new_fp = _fingerprint(host.dir / "host_ed25519.pub")
    async with SshTransport() as t:
        with pytest.raises(HostUnreachable) as ei:
            await t.run(hc, "true")
    msg = str(ei.value)
    assert "\n" not in msg
    assert "changed" in msg and new_fp in msg
    assert f"-R '[127.0.0.1]:{host.port}'" in msg and "ssh-keygen" in msg


async def test_closed_port_is_connection_refused(testbed: Testbed, tmp_path: Path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    hc = HostConfig(name="x", host="127.0.0.1", port=port, user="cvdeploy",
                    settings=Settings(app="t", deploy_path="/tmp/x", source=tmp_path,
                                      ssh=SshOptions(config_file=str(_empty_config(tmp_path)))))
    async with SshTransport() as t:
        with pytest.raises(HostUnreachable) as ei:
            await t.run(hc, "true")
    assert str(ei.value) == f"127.0.0.1:{port}: connection refused — is sshd running / is the port right?"
    assert ei.value.exit_code == 4


async def test_silent_server_times_out(tmp_path: Path):
    # accepts TCP but never says a word (a filtered / overloaded host)
    async def mute(reader, writer):
        await asyncio.sleep(30)

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    hc = HostConfig(name="x", host="127.0.0.1", port=port, user="nobody",
                    settings=Settings(app="t", deploy_path="/tmp/x", source=tmp_path,
                                      ssh=SshOptions(connect_timeout=1.0,
                                                     config_file=str(_empty_config(tmp_path)))))
    try:
        async with SshTransport() as t:
            t0 = time.monotonic()
            with pytest.raises(HostUnreachable, match=rf"127.0.0.1:{port}: connection timed out after 1s"):
                await t.run(hc, "true")
            assert time.monotonic() - t0 < 5
    finally:
        server.close()


async def test_wrong_key_is_permission_denied(host: TestHost, tmp_path: Path):
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    async with SshTransport() as t:
        with pytest.raises(HostUnreachable) as ei:
            await t.run(hostcfg(host, tmp_path, identity_file=str(other)), "true")
    assert str(ei.value) == (f"127.0.0.1:{host.port}: permission denied for user {host.user} "
                             "— check identity_file / ssh-agent")


async def test_unresolvable_host(tmp_path: Path):
    hc = HostConfig(name="x", host="no-such-host.invalid", port=22, user="u",
                    settings=Settings(app="t", deploy_path="/tmp/x", source=tmp_path,
                                      ssh=SshOptions(connect_timeout=5,
                                                     config_file=str(_empty_config(tmp_path)))))
    async with SshTransport() as t:
        with pytest.raises(HostUnreachable, match="no-such-host.invalid: (cannot resolve host name|connection timed out)"):
            await t.run(hc, "true")


# --------------------------------------------------------------------------- ssh config

async def test_ssh_config_alias(host: TestHost, tmp_path: Path):
    cfg = tmp_path / "ssh_config"
    cfg.write_text(host.ssh_config("myapp"))
    hc = HostConfig(name="web", host="myapp", settings=Settings(
        app="t", deploy_path=str(host.base), source=tmp_path, ssh=SshOptions(config_file=str(cfg))))
    async with SshTransport() as t:
        r = await t.run(hc, "id -un; echo $SSH_CONNECTION")
        user, conn = r.stdout.split("\n")
        assert user == host.user and conn.split()[2:] == ["127.0.0.1", str(host.port)]
    # host key problems name the real address, and the alias
    kh = tmp_path / "kh_empty"
    kh.write_text("")
    cfg.write_text(host.ssh_config("myapp").replace(str(host.known_hosts), str(kh)))
    async with SshTransport() as t:
        with pytest.raises(HostUnreachable, match=rf"myapp \(127.0.0.1:{host.port}\): unknown host key"):
            await t.run(hc, "true")


async def test_ssh_config_proxyjump(testbed: Testbed, host: TestHost, tmp_path: Path):
    jump = testbed.start_host("tb-jump")
    try:
        cfg = tmp_path / "ssh_config"
        cfg.write_text(
            jump.ssh_config("jumpbox")
            + f"Host app\n"
              f"    HostName 127.0.0.1\n"
              f"    Port {host.port}\n"
              f"    User {host.user}\n"
              f"    IdentityFile {host.identity_file}\n"
              f"    UserKnownHostsFile {host.known_hosts}\n"
              f"    ProxyJump jumpbox\n"
        )
        hc = HostConfig(name="web", host="app", settings=Settings(
            app="t", deploy_path=str(host.base), source=tmp_path, ssh=SshOptions(config_file=str(cfg))))
        jump_before = _accepted_logins(jump)
        async with SshTransport() as t:
            r = await t.run(hc, "id -un; echo $SSH_CONNECTION")
            assert r.stdout.split("\n")[0] == host.user
            assert r.stdout.split("\n")[1].split()[2:] == ["127.0.0.1", str(host.port)]
        await asyncio.sleep(0.2)
        assert _accepted_logins(jump) == jump_before + 1, "the jump host was not used"
        # the jump host's key is checked too, and the error says it was the jump
        kh = tmp_path / "kh_empty"
        kh.write_text("")
        good = cfg.read_text()
        cfg.write_text(good.replace(f"UserKnownHostsFile {jump.known_hosts}", f"UserKnownHostsFile {kh}"))
        async with SshTransport() as t:
            with pytest.raises(HostUnreachable, match="ProxyJump jumpbox"):
                await t.run(hc, "true")
        cfg.write_text(good)
        # and a dead jump host makes the target unreachable (so ProxyJump really is honoured)
        testbed.stop_host(jump)
        async with SshTransport() as t:
            with pytest.raises(HostUnreachable, match="connection refused"):
                await t.run(hc, "true")
    finally:
        testbed.stop_host(jump)


def _alias_config(host: TestHost, tmp_path: Path, **over: str) -> Path:
    """An ssh_config for alias 'app' with its options replaced by ``over`` (value '' drops one)."""
    opts = {"HostName": host.host, "Port": str(host.port), "User": host.user,
            "IdentityFile": str(host.identity_file), "IdentitiesOnly": "yes",
            "UserKnownHostsFile": str(host.known_hosts), "GlobalKnownHostsFile": "/dev/null",
            "StrictHostKeyChecking": "yes", "BatchMode": "yes"}
    opts.update(over)
    cfg = tmp_path / "ssh_config"
    cfg.write_text("Host app\n" + "".join(f"    {k} {v}\n" for k, v in opts.items() if v))
    return cfg


def _alias_host(host: TestHost, tmp_path: Path, cfg: Path, known_hosts: str | None = None) -> HostConfig:
    return HostConfig(name="web", host="app", settings=Settings(
        app="t", deploy_path=str(host.base), source=tmp_path,
        ssh=SshOptions(config_file=str(cfg), known_hosts=known_hosts)))


async def test_ssh_config_known_hosts_files_are_followed(host: TestHost, tmp_path: Path):
    """Without ssh.known_hosts in deploy.yaml, ssh_config's UserKnownHostsFile and
    GlobalKnownHostsFile vouch for the key, as they do for ssh(1) (issue 20)."""
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    # the key only in the "global" file
    cfg = _alias_config(host, tmp_path, UserKnownHostsFile=str(empty), GlobalKnownHostsFile=str(host.known_hosts))
    async with SshTransport() as t:
        assert (await t.run(_alias_host(host, tmp_path, cfg), "echo global")).stdout == "global"
    # the key in the second of two user files
    cfg = _alias_config(host, tmp_path, UserKnownHostsFile=f"{empty} {host.known_hosts}")
    async with SshTransport() as t:
        assert (await t.run(_alias_host(host, tmp_path, cfg), "echo second")).stdout == "second"
    # %d (the local home) is expanded like ssh(1) does
    rel = os.path.relpath(host.known_hosts, os.path.expanduser("~"))
    if not rel.startswith(".."):
        cfg = _alias_config(host, tmp_path, UserKnownHostsFile=f"%d/{rel}")
        async with SshTransport() as t:
            assert (await t.run(_alias_host(host, tmp_path, cfg), "echo tokens")).stdout == "tokens"
    # an explicit deploy.yaml known_hosts replaces ssh_config's files
    cfg = _alias_config(host, tmp_path)
    async with SshTransport() as t:
        with pytest.raises(HostUnreachable, match="unknown host key"):
            await t.run(_alias_host(host, tmp_path, cfg, known_hosts=str(empty)), "true")


@pytest.mark.parametrize("strict", ["no", "accept-new", "off"])
async def test_strict_host_key_checking_is_never_weaker_than_yes(host: TestHost, tmp_path: Path, strict: str):
    """StrictHostKeyChecking no / accept-new in ssh_config (with UserKnownHostsFile /dev/null,
    the classic way to turn checking off): capview still refuses the unknown key and learns nothing."""
    kh = tmp_path / "kh"
    kh.write_text("")
    for files in ({"UserKnownHostsFile": "/dev/null"}, {"UserKnownHostsFile": str(kh)}):
        cfg = _alias_config(host, tmp_path, StrictHostKeyChecking=strict, **files)
        before = _accepted_logins(host)
        async with SshTransport() as t:
            with pytest.raises(HostUnreachable, match="unknown host key"):
                await t.run(_alias_host(host, tmp_path, cfg), "touch should-not-exist")
        assert _accepted_logins(host) == before, "a session was opened with an unverified key"
        assert kh.read_text() == "", "the key was learned"


# --------------------------------------------------------------------------- cancellation

async def _started(t: SshTransport, hc: HostConfig, script: str, **kw) -> tuple[asyncio.Task, asyncio.Event]:
    started = asyncio.Event()

    def on_line(stream: str, line: str) -> None:
        if line == "started":
            started.set()

    task = asyncio.create_task(t.run(hc, "echo started; " + script, on_line=on_line, **kw))
    await asyncio.wait_for(started.wait(), 20)
    return task, started


async def test_cancel_kills_the_remote_process(host: TestHost, tmp_path: Path):
    token = f"30.{secrets.randbelow(10**6):06d}"
    marker = host.base / f"marker-{token}"
    hc = hostcfg(host, tmp_path)
    async with SshTransport() as t:
        task, _ = await _started(t, hc, f"sleep {token}; touch {marker}")
        await asyncio.sleep(0.3)
        assert _user_procs(host, f"sleep {token}"), "the remote sleep should be running"
        t0 = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        cancel_took = time.monotonic() - t0
        await asyncio.sleep(1.0)
        assert _user_procs(host, f"sleep {token}") == "", "remote sleep survived the cancel"
        assert not marker.exists()
        print(f"cancel -> remote process gone: {cancel_took * 1000:.0f} ms")
        # the connection is still good for the next call
        assert (await t.run(hc, "echo after")).stdout == "after"
        assert t.connects == 1


async def test_timeout_kills_the_remote_process(host: TestHost, tmp_path: Path):
    token = f"31.{secrets.randbelow(10**6):06d}"
    marker = host.base / f"marker-{token}"
    async with SshTransport() as t:
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            await t.run(hostcfg(host, tmp_path), f"sleep {token}; touch {marker}", timeout=1.0)
        assert time.monotonic() - t0 < 4
        await asyncio.sleep(1.0)
        assert _user_procs(host, f"sleep {token}") == ""
        assert not marker.exists()


async def test_cancel_kills_a_script_that_ignores_term(host: TestHost, tmp_path: Path):
    # trap '' TERM: the channel signal cannot stop it; the pgid fallback (KILL) must
    token = f"32.{secrets.randbelow(10**6):06d}"
    marker = host.base / f"marker-{token}"
    hc = hostcfg(host, tmp_path)
    async with SshTransport() as t:
        task, _ = await _started(t, hc, f"trap '' TERM; sleep {token}; touch {marker}")
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(1.0)
        assert _user_procs(host, f"sleep {token}") == ""
        assert not marker.exists()


async def test_cancel_without_channel_signals_uses_pgid_kill(host: TestHost, tmp_path: Path, monkeypatch):
    # Simulate a server that ignores "signal" channel requests (OpenSSH < 7.9, Dropbear):
    # the fallback kills the session's process group over a second channel.
    import asyncssh

    monkeypatch.setattr(asyncssh.SSHClientProcess, "send_signal", lambda self, sig: None)
    token = f"34.{secrets.randbelow(10**6):06d}"
    marker = host.base / f"marker-{token}"
    hc = hostcfg(host, tmp_path)
    async with SshTransport() as t:
        task, _ = await _started(t, hc, f"sleep {token} & sleep {token}; touch {marker}")
        await asyncio.sleep(0.3)
        assert len(_user_procs(host, f"^sleep {token}").splitlines()) == 2
        t0 = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - t0 < 5
        await asyncio.sleep(1.0)
        assert _user_procs(host, f"sleep {token}") == ""
        assert not marker.exists()


async def test_cancel_kills_background_children_too(host: TestHost, tmp_path: Path):
    token = f"33.{secrets.randbelow(10**6):06d}"
    hc = hostcfg(host, tmp_path)
    async with SshTransport() as t:
        task, _ = await _started(t, hc, f"sleep {token} & sleep {token} & wait")
        await asyncio.sleep(0.3)
        assert len(_user_procs(host, f"^sleep {token}").splitlines()) == 2
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(1.0)
        assert _user_procs(host, f"sleep {token}") == ""


# --------------------------------------------------------------------------- misc

async def test_close_closes_connections(host: TestHost, tmp_path: Path):
    hc = hostcfg(host, tmp_path)
    t = SshTransport()
    await t.run(hc, "true")
    conn = await t.connection(hc)
    await t.close()
    assert conn.is_closed()
    with pytest.raises(RuntimeError):
        await t.run(hc, "true")


def test_asyncssh_logging_is_quiet():
    if not os.environ.get("CAPVIEW_SSH_DEBUG"):
        assert logging.getLogger("asyncssh").getEffectiveLevel() >= logging.WARNING


async def test_script_text_never_logged(host: TestHost, tmp_path: Path, caplog):
    import asyncssh

    asyncssh.set_log_level(logging.DEBUG)
    try:
        caplog.set_level(logging.DEBUG)
        async with SshTransport() as t:
            await t.run(hostcfg(host, tmp_path), "echo SECRET_TOKEN_xyz >/dev/null")
        assert "SECRET_TOKEN_xyz" not in caplog.text
    finally:
        asyncssh.set_log_level(logging.WARNING)
