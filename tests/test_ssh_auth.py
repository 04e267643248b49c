"""Login in one request (capview/remote/ssh_auth.py, issue 21) against a real OpenSSH
server: which userauth requests capview sends, and that every way in still works.

Counts, not times: each request below is one round trip on a real link."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import sys

import asyncssh
import pytest
from asyncssh.constants import MSG_SERVICE_ACCEPT

from capview.config import HostConfig, Settings, SshOptions
from capview.errors import HostUnreachable
from capview.remote import ssh_auth
from capview.remote.ssh import SshTransport
from faultkit import known_hosts_for
from testbed import TestHost

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.latency_proxy import LatencyProxy  # noqa: E402

pytestmark = pytest.mark.testbed


@pytest.fixture
def requests(monkeypatch) -> list[tuple[str, str]]:
    """Every userauth request a client sends: (method, "signed" | "query" | "-"); with
    ``accepted`` (below), the service acceptance's arrival too: ("accept", "-")."""
    seen: list[tuple[str, str]] = []
    original = asyncssh.connection.SSHClientConnection.send_userauth_request

    async def recording(self, method, *args, key=None, trivial=True):
        kind = "-" if method != b"publickey" else ("signed" if key is not None else "query")
        seen.append((method.decode(), kind))
        return await original(self, method, *args, key=key, trivial=trivial)

    monkeypatch.setattr(asyncssh.connection.SSHClientConnection, "send_userauth_request", recording)
    handlers = asyncssh.connection.SSHConnection._packet_handlers
    accept = handlers[MSG_SERVICE_ACCEPT]

    def accepted(self, *a):
        seen.append(("accept", "-"))
        return accept(self, *a)

    monkeypatch.setitem(handlers, MSG_SERVICE_ACCEPT, accepted)
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    monkeypatch.delenv("CAPVIEW_SSH_STOCK_AUTH", raising=False)
    return seen


def _host(h: TestHost, tmp_path: Path, config: str = "", **ssh_kw) -> HostConfig:
    cfg = tmp_path / "ssh_config"
    cfg.write_text(config)
    ssh_kw.setdefault("known_hosts", str(h.known_hosts))
    ssh_kw.setdefault("connect_timeout", 10.0)
    return HostConfig(name=h.name, host=h.host, port=h.port, user=h.user, settings=Settings(
        app="t", deploy_path=str(h.base), source=tmp_path, ssh=SshOptions(config_file=str(cfg), **ssh_kw)))


def _keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


async def _whoami(hc: HostConfig) -> str:
    async with SshTransport() as t:
        return (await t.run(hc, "id -un")).stdout.strip()


def test_the_short_flow_is_installed():
    assert ssh_auth.installed()  # an asyncssh whose internals moved would fall back silently


async def test_an_identity_file_logs_in_with_one_signed_request(host: TestHost, tmp_path: Path, requests):
    assert await _whoami(_host(host, tmp_path, identity_file=str(host.identity_file))) == host.user
    assert [r for r in requests if r[0] != "accept"] == [("publickey", "signed")]  # no "none", no query


async def test_the_stock_flow_stays_available(host: TestHost, tmp_path: Path, requests, monkeypatch):
    monkeypatch.setenv("CAPVIEW_SSH_STOCK_AUTH", "1")
    assert await _whoami(_host(host, tmp_path, identity_file=str(host.identity_file))) == host.user
    assert requests == [("accept", "-"), ("none", "-"), ("publickey", "query"), ("publickey", "signed")]


async def test_a_refused_key_then_the_right_one(host: TestHost, tmp_path: Path, requests):
    other = _keygen(tmp_path / "other_key")
    config = (f"Host *\n    IdentityFile {other}\n    IdentityFile {host.identity_file}\n"
              "    IdentitiesOnly yes\n")
    assert await _whoami(_host(host, tmp_path, config)) == host.user
    assert [r for r in requests if r[0] != "accept"] == [("publickey", "signed"), ("publickey", "signed")]
    assert host.sshd_log().count("Accepted publickey for") >= 1


async def test_only_refused_keys_is_still_permission_denied(host: TestHost, tmp_path: Path, requests):
    other = _keygen(tmp_path / "other_key")
    with pytest.raises(HostUnreachable, match=f"permission denied for user {host.user}"):
        await _whoami(_host(host, tmp_path, identity_file=str(other)))
    sent = [r for r in requests if r[0] != "accept"]
    assert sent[0] == ("publickey", "signed") and ("none", "-") not in sent


async def test_an_agent_key_is_asked_about_before_it_signs(host: TestHost, tmp_path: Path, requests, monkeypatch):
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if sock.exists():
                break
            await asyncio.sleep(0.05)
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        subprocess.run(["ssh-add", "-q", str(host.identity_file)], env=env, check=True, capture_output=True)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        # no identity file: the key is the agent's (an agent key may need the user to sign)
        assert await _whoami(_host(host, tmp_path)) == host.user
    finally:
        agent.terminate()
        agent.wait(timeout=10)
    assert ("none", "-") not in requests
    assert [r for r in requests if r[0] == "publickey"][-2:] == [("publickey", "query"), ("publickey", "signed")]


@pytest.mark.parametrize("stock", [False, True])
async def test_the_login_goes_behind_the_service_request_not_after_its_answer(
        host: TestHost, tmp_path: Path, requests, monkeypatch, stock: bool):
    """Through a link with 0.2 s RTT, the order is certain: the signed request leaves before
    the service acceptance can arrive (one round trip saved); the stock flow waits for it."""
    if stock:
        monkeypatch.setenv("CAPVIEW_SSH_STOCK_AUTH", "1")
    async with LatencyProxy(host.port, one_way=0.1) as proxy:
        hc = _host(host, tmp_path, identity_file=str(host.identity_file),
                   known_hosts=str(known_hosts_for(host, proxy.port, tmp_path / "kh")))
        hc = HostConfig(name=hc.name, host=hc.host, port=proxy.port, user=hc.user, settings=hc.settings)
        assert await _whoami(hc) == host.user
    signed = requests.index(("publickey", "signed"))
    assert (requests.index(("accept", "-")) < signed) == stock
